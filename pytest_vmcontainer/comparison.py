"""Runs a row's probe on a target, keeps the figures, and turns them into the report.

The suite's tests call ``Comparison.measure(row_id, target, ...)``; timings go
through pytest-benchmark's pedantic mode when the test has the ``benchmark``
fixture, and every figure is also recorded with ``record_property`` and in the
benchmark's ``extra_info`` (so saved benchmark JSON carries it).
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psutil

from pytest_vmcontainer import probes, table
from pytest_vmcontainer.harness import Harness
from pytest_vmcontainer.results import ComparisonReport, Figures
from pytest_vmcontainer.targets.base import Target


def benchmark_timer(benchmark: Any, default_rounds: int, default_warmup: int) -> probes.Timer:
    """A Timer that runs through ``benchmark.pedantic`` (one call per test, as it requires)."""

    def timer(work: Callable[[], object], setup: Callable[[], object] | None = None,
              rounds: int | None = None, warmup: int | None = None) -> list[float]:
        rounds = rounds or default_rounds
        warmup = default_warmup if warmup is None else warmup
        durations: list[float] = []

        def timed() -> None:
            started = time.perf_counter()
            work()
            durations.append(time.perf_counter() - started)

        def untimed_setup() -> None:
            if setup is not None:
                setup()

        benchmark.pedantic(timed, setup=untimed_setup, rounds=rounds, warmup_rounds=warmup,
                           iterations=1)
        # With --benchmark-disable pedantic runs the work once, without warm-up rounds.
        return durations[warmup:] if len(durations) > warmup else durations

    return timer


def _record(figures: Figures, row_id: str, record_property: Callable[[str, Any], None] | None,
            benchmark: Any) -> None:
    for key, value in figures.items():
        if record_property is not None:
            record_property(f"{row_id}.{key}", value)
        if benchmark is not None:
            benchmark.extra_info[key] = value


class Comparison:
    """Figures per row and target for one run."""

    def __init__(self, harness: Harness, settings: probes.MeasureSettings) -> None:
        self.harness = harness
        self.settings = settings
        self.figures: dict[str, dict[str, Figures]] = {}

    def measure(self, row_id: str, target: Target, *, benchmark: Any = None,
                record_property: Callable[[str, Any], None] | None = None,
                **probe_arguments: Any) -> Figures:
        row = table.BY_ID[row_id]
        timer = (benchmark_timer(benchmark, self.settings.rounds, self.settings.warmup)
                 if benchmark is not None else
                 probes.plain_timer(self.settings.rounds, self.settings.warmup))
        context = probes.ProbeContext(self.harness, self.settings, timer)
        figures, host = probes.PROBES[row.probe](context, target, **probe_arguments)
        figures["mode"] = target.mode
        seen = self.figures.setdefault(row_id, {})
        seen.setdefault(target.kind, {}).update(figures)
        if host is not None:
            seen.setdefault("host", {}).update(host)
        _record(figures, row_id, record_property, benchmark)
        return figures

    def report(self, settings_shown: dict[str, Any]) -> ComparisonReport:
        accel = self.harness.accel
        vm_measured = any("vm" in by_target for by_target in self.figures.values())
        rows = []
        for row in table.ROWS:
            result = row.result()
            result.figures = self.figures.get(row.id, {})
            result.verdict = table.decide(row, result.figures,
                                          accel.mode if accel and vm_measured else None)
            rows.append(result)
        return ComparisonReport(
            generated_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            host=host_facts(self.harness, vm_measured),
            vm_mode=accel.mode if accel and vm_measured else None,
            vm_mode_reason=accel.reason if accel and vm_measured else "",
            settings=settings_shown, rows=rows)


def _version(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return "not installed"
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def host_facts(harness: Harness, with_vm_tools: bool) -> Figures:
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu_model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                              if line.startswith("model name")), "unknown")
    except OSError:
        pass
    facts: Figures = {
        "kernel_release": platform.release(), "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(), "memory_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
    }
    docker_client = harness.docker_client
    if docker_client is not None:
        facts["docker_engine"] = docker_client.version().get("Version", "unknown")
    if with_vm_tools:
        facts["qemu"] = _version(["qemu-system-x86_64", "--version"])
        facts["libvirt"] = _version(["libvirtd", "--version"])
        facts["vagrant"] = _version(["vagrant", "--version"])
    return facts
