"""The HTML report in a real browser (Debian's chromium, headless): it fits a 1366-px screen.

The page is made from recorded figures, a parity matrix with three expect_diff rows whose
values are screens long and twelve tests that recorded no value, and a scan with long
values: what used to run off the right edge.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from pytest_vmcontainer import runreport
from pytest_vmcontainer.comparison.report import load_report, report_from_json
from pytest_vmcontainer.parity import (
    PROP_CHECK,
    PROP_EXPECT_DIFF,
    PROP_ROW,
    PROP_TARGET,
    ParityStore,
)
from pytest_vmcontainer.scan.model import Difference, ScanResult
from tests.integration.conftest import _prepared

DATA = Path(__file__).resolve().parents[1] / "unit" / "data"
SCREEN = (1366, 900)
# As root, Chromium needs --no-sandbox; the rest keeps it from reaching any network service.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--window-size={SCREEN[0]},{SCREEN[1]}"]


@pytest.fixture(scope="session")
def chromium(request: pytest.FixtureRequest) -> str:
    """Debian's chromium, installed in the background when missing (as root: see
    ``conftest.install_chromium``); skipped if it cannot be."""
    prepared = _prepared(request)
    found: str | None = prepared.wait(request, "chromium")
    if found is None:
        pytest.skip("Debian's chromium is not installed and could not be (apt-get install "
                    "-y chromium, as root)")
    return found


def _worst_case_report() -> runreport.RunReport:
    comparison = report_from_json(load_report(DATA / "comparison-tcg.json"))
    parity = ParityStore()
    long_value = json.dumps({f"key{i}": "x" * 90 for i in range(60)})
    for n in range(3):
        for kind in ("vm", "container"):
            parity.add_report([(PROP_TARGET, kind), (PROP_ROW, f"test_parity.py::test_exp{n}"),
                               (PROP_EXPECT_DIFF, "by design"),
                               (f"{PROP_CHECK}state", f"{kind}: {long_value}")], "call", "passed")
    for n in range(12):
        for kind in ("vm", "container"):
            parity.add_report([(PROP_TARGET, kind),
                               (PROP_ROW, f"test_comparison.py::test_row[row={n}]")],
                              "call", "passed")
    for kind in ("vm", "container"):
        parity.add_report([(PROP_TARGET, kind), (PROP_ROW, "test_parity.py::test_sha"),
                           (f"{PROP_CHECK}sha256 /etc/nginx/nginx.conf", "f" * 64)],
                          "call", "passed")
    scan = ScanResult(collected_in_s={"vm": 1.9, "container": 0.3}, same=3000, differences=[
        Difference("environment", "nginx (root): PATH", "/usr/local/sbin:" * 12, None),
        Difference("file", "/etc/nginx/" + "very-long-name-" * 10, "file 644 root:root "
                   "sha256:" + "a" * 64, None, "from the bases")])
    return runreport.RunReport(comparison, parity, ["vm", "container"], "0123456789abcdef",
                               scan=scan)


def _scroll_width(chromium: str, page: Path, profile: Path) -> int:
    """document.documentElement.scrollWidth of ``page`` at the screen's width."""
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace(
        "</body>", "<script>document.body.setAttribute('data-scroll-width', "
        "String(document.documentElement.scrollWidth));</script></body>"))
    done = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                           probe.as_uri()], capture_output=True, text=True, timeout=180,
                          check=False)
    found = re.search(r'data-scroll-width="(\d+)"', done.stdout)
    assert found, f"chromium printed no DOM (exit {done.returncode}): {done.stderr[-2000:]}"
    return int(found.group(1))


def test_the_report_fits_a_1366_px_screen(chromium: str, tmp_path: Path) -> None:
    written = runreport.write(_worst_case_report(), tmp_path / "report")
    page = written["html"]
    assert _scroll_width(chromium, page, tmp_path / "profile") <= SCREEN[0]
    html = page.read_text()
    assert html.index("<h2>Differences</h2>") < html.index("<h2>Parity matrix</h2>")
    assert html.count("<details>") >= 3  # the long values are one click away
    matrix = html[html.index("<h2>Parity matrix</h2>"):]
    assert "test_row[row=0]" not in matrix  # no value recorded: out of the matrix
    assert "12 tests recorded no value" in matrix
