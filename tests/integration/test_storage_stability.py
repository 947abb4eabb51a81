"""The storage verdict does not flip: two runs of the row on both real targets agree.

The row that used to flip: with QEMU's default disk cache the VM's O_DIRECT reads
came from the host's page cache, so one run said "does not hold" and the next
"not measurable". With cache=none for the measured VM and intervals over the
rounds, two consecutive runs must never contradict each other: no figure decided one way in
one run and the other way in the next, and no verdict "holds" in one and "does not hold" in
the other. (With three rounds an interval is the range of three ratios, so one noisy round
may leave a figure undecided that the other run decided: that is the interval being honest,
not a flip.) A row that decides nothing would agree with itself forever, so at least one
figure (write or read, container/VM) must be decided in each run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.comparison import rows, stats
from pytest_vmcontainer.comparison.report import load_report
from pytest_vmcontainer.comparison.results import DOES_NOT_HOLD, HOLDS
from tests.integration.conftest import ROOT

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.exclusive]  # it times rows
FIGURES = ("write, container/VM", "read, container/VM")


def _storage_verdict(pytester: pytest.Pytester, reports: Path) -> dict[str, Any]:
    result = pytester.runpytest_subprocess(
        str(ROOT / "suites" / "test_comparison.py"), "-c", str(ROOT / "pyproject.toml"),
        "--rootdir", str(ROOT), "-p", "no:cacheprovider", "--target=both", "-k", "storage",
        f"--vmc-report={reports}", "--vmc-rounds=3", "--vmc-warmup=1", timeout=2400)
    result.assert_outcomes(passed=2)
    found = {row["id"]: row for row in load_report(reports / "comparison.json")["rows"]}
    storage = found["storage"]
    assert storage["figures"]["vm"]["disk_cache"] == "none"
    assert storage["figures"]["vm"]["working_set_mib"] >= 256
    assert "volume_write_mb_s" in storage["figures"]["container"]
    # What the figures decide, whether or not another job kept the host busy meanwhile (a
    # busy host withdraws the answer: tests/integration/test_noisy_neighbour.py).
    quiet = {kind: {k: v for k, v in figures.items() if k != "host_load"}
             for kind, figures in storage["figures"].items()}
    decided = rows.decide(rows.BY_ID["storage"], quiet, storage["figures"]["vm"]["mode"])
    verdict: dict[str, Any] = storage["verdict"]
    assert verdict["status"] == decided.status or "host was busy" in verdict["reason"], verdict
    return {"status": decided.status, "reason": decided.reason, "evidence": decided.evidence}


def _sides(verdict: dict[str, Any]) -> dict[str, str]:
    """Each figure's decision against the row's margin, from the intervals the verdict kept."""
    sides = {}
    for figure in FIGURES:
        interval = stats.Interval(**verdict["evidence"][figure])
        assert interval.known, (figure, interval)  # measured, with enough rounds
        sides[figure] = stats.against(interval, rows.MARGIN).side
    return sides


def test_two_runs_of_the_storage_row_give_the_same_verdict(
        pytester: pytest.Pytester, tmp_path: Path, docker_client: Any, shipped_vm: None,
        leak_check: None) -> None:
    first = _storage_verdict(pytester, tmp_path / "first")
    second = _storage_verdict(pytester, tmp_path / "second")
    assert "page cache" not in first["reason"], first  # the cache mode was accepted
    answers = {first["status"], second["status"]}
    assert answers != {HOLDS, DOES_NOT_HOLD}, (first["reason"], second["reason"])
    first_sides, second_sides = _sides(first), _sides(second)
    for run, sides in (("first", first_sides), ("second", second_sides)):
        assert set(sides.values()) != {stats.UNDECIDED}, f"the {run} run decided no figure"
    contradicted = [figure for figure in FIGURES
                    if stats.UNDECIDED not in (first_sides[figure], second_sides[figure])
                    and first_sides[figure] != second_sides[figure]]
    assert contradicted == [], (first["reason"], second["reason"])
