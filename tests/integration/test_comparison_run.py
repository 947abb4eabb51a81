"""The comparison suite on both real targets, with the smallest rounds."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.comparison import rows as table
from pytest_vmcontainer.comparison.report import load_report
from tests.integration.conftest import ROOT

SMALLEST = ("--vmc-rounds=1", "--vmc-warmup=0", "--vmc-boot-rounds=1", "--vmc-density-vms=1",
            "--vmc-density-containers=2", "--vmc-http-requests=200", "--vmc-http-seconds=5")


def test_every_row_measured_on_both_targets_and_reported(
        pytester: pytest.Pytester, tmp_path: Path, docker_client: Any, bases: None,
        leak_check: None) -> None:
    reports, benchmarks = tmp_path / "report", tmp_path / "benchmarks.json"
    result = pytester.runpytest_subprocess(
        str(ROOT / "suites" / "test_comparison.py"), "-c", str(ROOT / "pyproject.toml"),
        "--rootdir", str(ROOT), "-p", "no:cacheprovider", "--target=both",
        f"--vmc-report={reports}", f"--benchmark-json={benchmarks}", *SMALLEST, timeout=2400)
    result.assert_outcomes(passed=24)
    result.stdout.fnmatch_lines(["*VM vs container, measured on this host*",
                                 "VM figures: TCG*" if "TCG" in result.stdout.str()
                                 else "VM figures: KVM*",
                                 "Boot Time*", "report: *comparison.json*"])

    saved = load_report(reports / "comparison.json")
    assert saved["vm_mode"] in ("kvm", "tcg")
    by_id = {row["id"]: row for row in saved["rows"]}
    assert list(by_id) == [row.id for row in table.ROWS]
    for row in table.ROWS:
        figures = by_id[row.id]["figures"]
        for kind in ("vm", "container"):
            assert figures[kind].get(row.headline) is not None, (row.id, kind, figures)
        assert figures["vm"]["mode"] == saved["vm_mode"]
        assert by_id[row.id]["verdict"]["status"] in ("holds", "does not hold",
                                                      "not measurable here")
        assert "no vm" not in by_id[row.id]["verdict"]["reason"]

    markdown = (reports / "comparison.md").read_text()
    assert all(row.aspect in markdown for row in table.ROWS)
    parser = HTMLParser()
    parser.feed((reports / "comparison.html").read_text())
    parser.close()
    assert (reports / "comparison.html").read_text().count("<svg") == 5

    # Saved pytest-benchmark JSON carries the figures, so runs compare with --benchmark-compare.
    saved_benchmarks = json.loads(benchmarks.read_text())["benchmarks"]
    names = {b["name"] for b in saved_benchmarks}
    assert {"test_boot_time[vm-cold]", "test_boot_time[container-cold]"} <= names
    boot = next(b for b in saved_benchmarks if b["name"] == "test_boot_time[vm-cold]")
    assert boot["extra_info"]["cold_s"] > 0 and boot["extra_info"]["mode"] in ("kvm", "tcg")
