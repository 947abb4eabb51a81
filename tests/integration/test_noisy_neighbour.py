"""A noisy neighbour: a CPU hog beside a real comparison row, as another CI job on a shared
machine. The row's figures say how busy the host was, and a verdict decided on such a host is
withdrawn ("not measurable here", with the load), so noise never turns into an answer that a
quiet host would contradict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.comparison import rows
from pytest_vmcontainer.comparison.report import load_report
from pytest_vmcontainer.comparison.results import DOES_NOT_HOLD, HOLDS, NOT_MEASURABLE
from tests.integration.conftest import ROOT

# Not ``exclusive``: another test's load beside the hog only adds to what the row must see
# (at least the hog's core) and withdraw its answer for, so it shares the engines.
pytestmark = [pytest.mark.vm, pytest.mark.slow]
HOG_SECONDS = 300  # bounded in time: it ends by itself if this test is killed
HOG = f"import time\nend = time.monotonic() + {HOG_SECONDS}\nwhile time.monotonic() < end: pass"


def test_a_cpu_hog_beside_the_performance_row_is_seen_and_decides_nothing(
        pytester: pytest.Pytester, tmp_path: Path, docker_client: Any, shipped_vm: None,
        leak_check: None) -> None:
    reports = tmp_path / "report"
    hog = subprocess.Popen([sys.executable, "-c", HOG], stdin=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        result = pytester.runpytest_subprocess(
            str(ROOT / "suites" / "test_comparison.py"), "-c", str(ROOT / "pyproject.toml"),
            "--rootdir", str(ROOT), "-p", "no:cacheprovider", "--target=both",
            "-k", "performance", f"--vmc-report={reports}", "--vmc-rounds=3",
            "--vmc-warmup=0", timeout=900)
    finally:
        hog.kill()  # by its id
        hog.wait()
    result.assert_outcomes(passed=2)
    saved = {row["id"]: row for row in load_report(reports / "comparison.json")["rows"]}
    performance = saved["performance"]
    for kind in ("vm", "container"):
        load = performance["figures"][kind]["host_load"]
        assert load["busy"] and load["foreign_cores"] >= 0.5, (kind, load)  # about one core
    verdict = performance["verdict"]
    assert verdict["status"] == NOT_MEASURABLE, verdict
    # What the same figures would have said on a quiet host: if that is an answer, the
    # busy host is the reason it was withdrawn.
    quiet = {kind: {k: v for k, v in figures.items() if k != "host_load"}
             for kind, figures in performance["figures"].items()}
    unwatched = rows.decide(rows.BY_ID["performance"], quiet, saved["performance"]["figures"]
                            ["vm"]["mode"])
    if unwatched.status in (HOLDS, DOES_NOT_HOLD):
        assert "the host was busy while it was measured" in verdict["reason"], verdict
