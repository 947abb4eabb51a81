"""Runs a row's probe on a target, keeps the figures, and turns them into the report.

The suite's tests call ``comparison.measure(row_id, target, ...)`` (``TestMeasurer``);
timings go through pytest-benchmark's pedantic mode when the test has the ``benchmark``
fixture, and every figure is also a property of the test's report and in the
benchmark's ``extra_info`` (so saved benchmark JSON carries it).
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from pytest_vmcontainer.comparison import probes, rows
from pytest_vmcontainer.comparison.results import (
    NOT_MEASURABLE,
    ComparisonReport,
    Figures,
    UserBenchmark,
    Verdict,
)
from pytest_vmcontainer.errors import UsageError
from pytest_vmcontainer.host import cpuload
from pytest_vmcontainer.runtime import procs
from pytest_vmcontainer.runtime.timing import Timer, plain_timer
from pytest_vmcontainer.targets import capabilities
from pytest_vmcontainer.targets.base import Target


def benchmark_timer(benchmark: Any, default_rounds: int, default_warmup: int) -> Timer:
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

    def __init__(self, instances: probes.Instances, settings: probes.MeasureSettings,
                 extra_rows: Sequence[rows.Row] = (), kinds: Sequence[str] = ()) -> None:
        self.instances = instances
        self.settings = settings
        self.kinds = tuple(kinds)  # the selected targets: a probe may measure them together
        self.memo: dict[str, Any] = {}  # what probes keep between the tests of a run
        self.rows = rows.ROWS + tuple(extra_rows)
        self.by_id = {row.id: row for row in self.rows}
        self.figures: dict[str, dict[str, Figures]] = {}
        self.vm_mode: str | None = None
        self.vm_mode_reason = ""
        self.container_measured = False
        self.unmet: dict[str, list[str]] = {}  # row id -> why a target could not measure it

    def lacks(self, row_id: str, target: Target) -> str | None:
        """One line naming the capabilities the row needs that ``target``'s backend lacks
        (None: it has them all); the row is not measured there, and the report says why."""
        reason = capabilities.lacks(target, self.by_id[row_id].needs,
                                    f"the comparison row '{row_id}'")
        if reason is not None and reason not in self.unmet.setdefault(row_id, []):
            self.unmet[row_id].append(reason)
        return reason

    def measure(self, row_id: str, target: Target, *, benchmark: Any = None,
                benchmark_on_demand: Callable[[], Any] | None = None,
                record_property: Callable[[str, Any], None] | None = None,
                **probe_arguments: Any) -> Figures:
        """Run the row's probe on ``target`` and keep its figures.

        ``benchmark`` is pytest-benchmark's fixture; ``benchmark_on_demand`` returns it
        and is called only if the probe times something (a test whose rounds another
        test timed, interleaved, then leaves the fixture unrequested and unwarned).
        """
        row = self.by_id[row_id]
        unmet = self.lacks(row_id, target)
        if unmet is not None:  # before the probe: no instance made, no export attempted
            raise UsageError(unmet, "use a backend that provides it, or deselect the row")
        fixture = [benchmark]

        def timer(work: Callable[[], object], setup: Callable[[], object] | None = None,
                  rounds: int | None = None, warmup: int | None = None) -> list[float]:
            if fixture[0] is None and benchmark_on_demand is not None:
                fixture[0] = benchmark_on_demand()
            chosen = (benchmark_timer(fixture[0], self.settings.rounds, self.settings.warmup)
                      if fixture[0] is not None else
                      plain_timer(self.settings.rounds, self.settings.warmup))
            return chosen(work, setup, rounds, warmup)

        context = probes.ProbeContext(self.instances, self.settings, timer, self.kinds,
                                      self.memo)
        probe = row.probe if callable(row.probe) else probes.PROBES[row.probe]
        with cpuload.Window() as window:  # what else ran on the host meanwhile
            figures, host = probe(context, target, **probe_arguments)
        load = window.load.as_dict() if window.load else None
        for other, other_figures in context.others:
            other_figures["host_load"] = load
            self._keep(row_id, other, other_figures)
        figures["host_load"] = load
        self._keep(row_id, target, figures)
        if host is not None:
            self.figures[row_id].setdefault("host", {}).update(host)
        _record(figures, row_id, record_property, fixture[0])
        return figures

    def _keep(self, row_id: str, target: Target, figures: Figures) -> None:
        figures["mode"] = target.mode
        if target.kind == "vm":
            self.vm_mode, self.vm_mode_reason = target.mode, target.mode_reason
        else:
            self.container_measured = True
        kept = self.figures.setdefault(row_id, {}).setdefault(target.kind, {})
        busiest = max((kept.get("host_load"), figures.get("host_load")),
                      key=lambda load: load["foreign_cores"] if load else -1.0)
        kept.update(figures)
        kept["host_load"] = busiest  # a row measured in several windows: the busiest

    def report(self, settings_shown: dict[str, Any],
               user_benchmarks: Sequence[UserBenchmark] = ()) -> ComparisonReport:
        """Every row with its verdict (no rows when none was measured and the report is only
        for a team's own benchmarks)."""
        results = []
        for row in self.rows if self.figures else ():
            result = row.result()
            result.figures = self.figures.get(row.id, {})
            unmet = self.unmet.get(row.id)
            result.verdict = (Verdict(NOT_MEASURABLE, "; ".join(unmet)) if unmet else
                              rows.decide(row, result.figures, self.vm_mode))
            results.append(result)
        vm_mode = self.vm_mode or next(
            (b.figures["vm"].get("mode") for b in user_benchmarks if "vm" in b.figures), None)
        return ComparisonReport(
            generated_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            host=host_facts(with_vm_tools=vm_mode is not None,
                            with_docker=self.container_measured or bool(user_benchmarks)),
            vm_mode=vm_mode, vm_mode_reason=self.vm_mode_reason,
            settings=settings_shown, rows=results, user_benchmarks=list(user_benchmarks))


class TestMeasurer:
    """The ``comparison`` fixture: the run's ``Comparison``, measuring for one test.

    Each figure goes into that test's report (``user_properties``), which ``--junitxml``
    writes as properties, with no ``record_property`` (unsupported by pytest's default
    xunit2 family, which warns for every call).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, comparison: Comparison, properties: list[tuple[str, object]]) -> None:
        self.run = comparison  # the figures of every test of the run
        self._properties = properties

    def measure(self, row_id: str, target: Target, **arguments: Any) -> Figures:
        """``Comparison.measure`` for this test (see there); skipped, with the one-line
        reason, where the target's backend lacks a capability the row needs."""
        unmet = self.run.lacks(row_id, target)
        if unmet is not None:
            pytest.skip(unmet)
        arguments.setdefault("record_property",
                             lambda name, value: self._properties.append((name, value)))
        return self.run.measure(row_id, target, **arguments)


def _version(command: list[str]) -> str:
    line = procs.version_line(command)
    return "not installed" if line is None else line or "unknown"


def host_facts(with_vm_tools: bool, with_docker: bool) -> Figures:
    import psutil

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
    if with_docker:
        facts["docker_engine"] = _docker_engine_version()
    if with_vm_tools:
        facts["qemu"] = _version(["qemu-system-x86_64", "--version"])
        facts["libvirt"] = _version(["libvirtd", "--version"])
        facts["vagrant"] = _version(["vagrant", "--version"])
    return facts


def _docker_engine_version() -> str:
    from pytest_vmcontainer.host import engine

    try:
        client = engine.client(timeout=10)
        try:
            return str(client.version().get("Version", "unknown"))
        finally:
            client.close()
    except Exception:
        return "unknown"
