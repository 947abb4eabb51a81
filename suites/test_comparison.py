"""The classic VM-vs-container table, row by row, measured on both targets on this host.

Each test measures one row on the current target through the row's probe (see
``pytest_vmcontainer.comparison.rows`` for the claims, units, probes and verdict rules).
The verdicts need both targets, so they are given at the end of the run, in the
terminal table and, with ``--vmc-report=DIR``, in JSON, Markdown and HTML.
A claim that does not hold is a finding, not a test failure: a test fails only
when its measurement could not be taken.

The order below is deliberate: in-place measurements first, then the export (which
halts and restarts the VM), then storage, density and boots, which start new instances
from that export (the first instance made from an export is not timed, so the boots need
no warm-up round after storage and density). Resource usage comes last: it measures a VM
that booted (a restored QEMU maps the guest's memory lazily), and the warm boots have just
booted the run's VM, so it need not halt and start it again.
"""

from __future__ import annotations

import math

import pytest


def _positive(figures: dict, *keys: str) -> None:
    for key in keys:
        value = figures[key]
        assert isinstance(value, int | float) and math.isfinite(value) and value > 0, (key, value)


def test_size(target, comparison):
    figures = comparison.measure("size", target)
    _positive(figures, "footprint_bytes")


def test_isolation(target, comparison):
    figures = comparison.measure("isolation", target)
    assert figures["boot_id"] and figures["kernel_release"] and figures["pid1"]
    assert figures["visible_processes"] > 0


def test_os_support(target, comparison):
    figures = comparison.measure("os_support", target)
    assert figures["kernel_release"] and figures["host_kernel_release"]


def test_security(target, comparison):
    figures = comparison.measure("security", target)
    assert figures["seccomp"] in ("disabled", "strict", "filter")
    assert 80 in figures["listening_ports"]


def test_performance(target, comparison, request):
    # The first of [vm] and [container] times the rounds of every selected target,
    # interleaved; the second reuses them, so it asks for no benchmark fixture.
    figures = comparison.measure(
        "performance", target,
        benchmark_on_demand=lambda: request.getfixturevalue("benchmark"))
    _positive(figures, "seconds", "ratio_to_native")


def test_networking(target, comparison, benchmark):
    figures = comparison.measure("networking", target, benchmark=benchmark)
    _positive(figures, "rps", "p50_ms")
    assert figures["errors"] == 0


def test_portability(target, comparison, benchmark):
    figures = comparison.measure("portability", target, benchmark=benchmark)
    _positive(figures, "export_bytes", "export_seconds")


def test_storage(target, comparison, benchmark):
    figures = comparison.measure("storage", target, benchmark=benchmark)
    _positive(figures, "write_mb_s", "read_mb_s", "sync_write_iops")
    assert figures["working_set_mib"] >= 256 and "O_DIRECT" in figures["method"]
    if target.kind == "container":
        _positive(figures, "volume_write_mb_s", "volume_read_mb_s", "volume_sync_write_iops")
    else:
        assert figures["disk_cache"] == "none"


def test_density(target, comparison, benchmark):
    figures = comparison.measure("density", target, benchmark=benchmark)
    _positive(figures, "per_instance_bytes", "extrapolated_instances")
    assert figures["started"] >= 1


@pytest.mark.parametrize("phase", ["cold", "warm"])
def test_boot_time(target, phase, comparison, benchmark):
    figures = comparison.measure("boot_time", target, benchmark=benchmark, phase=phase)
    _positive(figures, f"{phase}_s")


def test_resource_usage(target, comparison):
    figures = comparison.measure("resource_usage", target)
    _positive(figures, "idle_memory_bytes")
    assert figures["idle_cpu_percent"] >= 0
