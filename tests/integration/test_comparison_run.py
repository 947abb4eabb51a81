"""The comparison suite on both real targets, with the smallest rounds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import html5lib
import pytest

from pytest_vmcontainer.comparison import rows as table
from pytest_vmcontainer.comparison.report import load_report
from pytest_vmcontainer.host import accel
from pytest_vmcontainer.host import bases as images
from tests.integration.conftest import ROOT

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.exclusive]  # it times rows

SMALLEST = ("--vmc-rounds=1", "--vmc-warmup=0", "--vmc-boot-rounds=1", "--vmc-density-vms=1",
            "--vmc-density-containers=2", "--vmc-http-requests=200", "--vmc-http-seconds=5")


def test_every_row_measured_on_both_targets_and_reported(
        pytester: pytest.Pytester, tmp_path: Path, docker_client: Any, shipped_vm: None,
        leak_check: None) -> None:
    # What this host runs VMs with, probed here, not read from the output under test.
    mode = accel.detect(accel.probe_kernel(images.box_kernel())).mode.upper()
    reports, benchmarks = tmp_path / "report", tmp_path / "benchmarks.json"
    result = pytester.runpytest_subprocess(
        str(ROOT / "suites" / "test_comparison.py"), "-c", str(ROOT / "pyproject.toml"),
        "--rootdir", str(ROOT), "-p", "no:cacheprovider", "--target=both",
        f"--vmc-report={reports}", f"--benchmark-json={benchmarks}", *SMALLEST, timeout=2400)
    result.assert_outcomes(passed=24)
    result.stdout.fnmatch_lines(["*VM vs container, measured on this host*",
                                 f"VM figures: {mode}*",
                                 "Boot Time*", "report: *comparison.json*"])

    saved = load_report(reports / "comparison.json")
    assert saved["vm_mode"] == mode.lower()
    by_id = {row["id"]: row for row in saved["rows"]}
    assert list(by_id) == [row.id for row in table.ROWS]
    for row in table.ROWS:
        figures = by_id[row.id]["figures"]
        for kind in ("vm", "container"):
            assert figures[kind].get(row.headline) is not None, (row.id, kind, figures)
            assert figures[kind]["host_load"]["window_s"] > 0, (row.id, kind)  # watched
        assert figures["vm"]["mode"] == saved["vm_mode"]
        assert by_id[row.id]["verdict"]["status"] in ("holds", "does not hold",
                                                      "not measurable here")
        assert "no vm" not in by_id[row.id]["verdict"]["reason"]

    markdown = (reports / "comparison.md").read_text()
    assert all(f"## {row.aspect}" in markdown for row in table.ROWS)
    # A parser that raises on malformed markup, then the elements that carry the results.
    page = (reports / "comparison.html").read_text()
    document = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(page)
    assert len(list(document.iter("{http://www.w3.org/2000/svg}svg"))) == 5
    headings = [h.text for h in document.iter("h3")]
    assert all(row.aspect in headings for row in table.ROWS), headings
    # Each row of the table: its aspect in the first cell, and a cell with its verdict.
    verdict_of = {}
    for tr in document.iter("tr"):
        cells = tr.findall("td")
        classes = [c.get("class") or "" for c in cells]
        if cells and any(name.startswith("verdict-") for name in classes):
            verdict_of["".join(cells[0].itertext())] = classes
    assert [row.aspect for row in table.ROWS if row.aspect not in verdict_of] == [], verdict_of

    # Saved pytest-benchmark JSON carries the figures, so runs compare with --benchmark-compare.
    saved_benchmarks = json.loads(benchmarks.read_text())["benchmarks"]
    names = {b["name"] for b in saved_benchmarks}
    assert {"test_boot_time[vm-cold]", "test_boot_time[container-cold]"} <= names
    boot = next(b for b in saved_benchmarks if b["name"] == "test_boot_time[vm-cold]")
    assert boot["extra_info"]["cold_s"] > 0 and boot["extra_info"]["mode"] in ("kvm", "tcg")
