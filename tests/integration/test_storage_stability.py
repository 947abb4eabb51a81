"""The storage verdict does not flip: two runs of the row on both real targets agree.

The row that used to flip: with QEMU's default disk cache the VM's O_DIRECT reads
came from the host's page cache, so one run said "does not hold" and the next
"not measurable". With cache=none for the measured VM and intervals over the
rounds, two consecutive runs must give the same verdict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.comparison.report import load_report
from tests.integration.conftest import ROOT


def _storage_verdict(pytester: pytest.Pytester, reports: Path) -> dict[str, Any]:
    result = pytester.runpytest_subprocess(
        str(ROOT / "suites" / "test_comparison.py"), "-c", str(ROOT / "pyproject.toml"),
        "--rootdir", str(ROOT), "-p", "no:cacheprovider", "--target=both", "-k", "storage",
        f"--vmc-report={reports}", "--vmc-rounds=3", "--vmc-warmup=1", timeout=2400)
    result.assert_outcomes(passed=2)
    rows = {row["id"]: row for row in load_report(reports / "comparison.json")["rows"]}
    storage = rows["storage"]
    assert storage["figures"]["vm"]["disk_cache"] == "none"
    assert storage["figures"]["vm"]["working_set_mib"] >= 256
    assert "volume_write_mb_s" in storage["figures"]["container"]
    verdict: dict[str, Any] = storage["verdict"]
    return verdict


def test_two_runs_of_the_storage_row_give_the_same_verdict(
        pytester: pytest.Pytester, tmp_path: Path, docker_client: Any, bases: None,
        leak_check: None) -> None:
    first = _storage_verdict(pytester, tmp_path / "first")
    second = _storage_verdict(pytester, tmp_path / "second")
    assert "page cache" not in first["reason"], first  # the cache mode was accepted
    assert first["status"] == second["status"], (first["reason"], second["reason"])
