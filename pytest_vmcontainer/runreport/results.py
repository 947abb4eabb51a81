"""What one pytest run has found so far, kept apart from how it runs (settings, harness).

Held by the run's state (``runstate.RunState.results``), filled while tests run by
the plugin, the fixtures and ``scanrun``; at the end ``runend`` makes the run's
``RunReport`` from it, once, and writes it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_vmcontainer.comparison.userbench import UserBenchmarks
from pytest_vmcontainer.parity import ParityStore

if TYPE_CHECKING:
    from pytest_vmcontainer.comparison.measure import Comparison
    from pytest_vmcontainer.runreport.model import RunReport
    from pytest_vmcontainer.runtime.background import Job
    from pytest_vmcontainer.scan.model import ScanResult


@dataclass
class RunResults:
    """The run's parity, comparison and scan, and the report made of them."""

    parity: ParityStore = field(default_factory=ParityStore)  # live: what parity.check compares
    matrix: ParityStore = field(default_factory=ParityStore)  # assembled from test reports
    order: dict[str, int] = field(default_factory=dict)  # nodeid -> position in the collection
    comparison: Comparison | None = None  # made on first use (RunState.get_comparison)
    user_benchmarks: UserBenchmarks = field(default_factory=UserBenchmarks)
    scan_job: Job[ScanResult] | None = None  # the parity scan, where targets are owned
    scan: ScanResult | None = None  # its result (see scanrun)
    final: RunReport | None = None  # made once, at the end of the run
    report_paths: dict[str, Path] = field(default_factory=dict)  # what --vmc-report wrote

    def note_collection(self, nodeids: Iterable[str]) -> None:
        """The collection's order (the first one seen, from this process or an xdist worker)."""
        if not self.order:
            self.order = {nodeid: index for index, nodeid in enumerate(nodeids)}

    def take_report(self, report: pytest.TestReport) -> None:
        """One phase's report into the matrix: in a plain run and on the xdist controller alike."""
        self.matrix.add_report(report.user_properties, report.when or "", report.outcome,
                               rank=self.order.get(report.nodeid, math.inf))
