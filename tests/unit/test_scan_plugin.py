"""The parity scan in pytest runs (pytester): when it runs, where it shows, how it fails.

Both kinds are the test process itself (``tests/unit/standin.py``); the collector
really runs through testinfra's ``local://``, once: both sides get its output (the local
host changes while it runs), and the "container" side's gains a package, so that the two
sides drift by exactly one item.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.unit import standin

pytest_plugins = ["pytester"]

DRIFT = '''
import threading
from types import SimpleNamespace

_plain_host = LocalTarget._make_host
_SCAN = {}  # the local host's one scan: both sides see the same, whatever runs meanwhile
_SCAN_LOCK = threading.Lock()


class DriftingHost:
    """The local host; the collector's output gains a package on the "container" side."""

    def __init__(self, host, kind):
        self._host, self._kind = host, kind

    def run(self, command, *args):
        if "VMC_SCAN_PATHS=" not in command:
            return self._host.run(command, *args)
        event(f"scan {self._kind}")
        with _SCAN_LOCK:
            if "out" not in _SCAN:
                result = self._host.run(command, *args)
                _SCAN.update(rc=result.rc, out=result.stdout_bytes)
        out = _SCAN["out"]
        if self._kind == "container":
            out = out.replace(b"\\n@@ apk\\n", b"\\ndrift-only-here\\t1.0\\n@@ apk\\n")
        return SimpleNamespace(rc=_SCAN["rc"], stdout_bytes=out)

    def __getattr__(self, name):
        return getattr(self._host, name)


def _make_host(self):
    return DriftingHost(_plain_host(self), self.kind)


LocalTarget._make_host = _make_host
'''

TESTS = """
def test_a(target):
    pass


def test_b(target):
    pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> pytest.Pytester:
    project = standin.project(pytester, monkeypatch, tmp_path / "vmc-home",
                              standin.conftest(vm_mode="kvm", extra=DRIFT))
    project.makepyfile(test_suite=TESTS)
    return project


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("-p", "no:cacheprovider", "--vmc-no-host-setup", *args)


def scans(project: pytest.Pytester) -> list[str]:
    events = (project.path / "events.log").read_text().splitlines()
    return sorted(line.split(" pid=")[0] for line in events if line.startswith("scan "))


def test_report_shows_the_drift_after_the_matrix_and_in_every_report(
        project: pytest.Pytester) -> None:
    result = run(project, "--vmc-scan=report", "--vmc-report=out", "--junitxml=junit.xml")
    result.assert_outcomes(passed=5)  # two tests on two targets, and the scan's item
    text = result.stdout.str()
    assert text.index("vmcontainer parity matrix") < text.index("vmcontainer parity scan ---")
    result.stdout.fnmatch_lines(["*1 unexpected differences*", "package:",
                                 "  drift-only-here*vm: (absent)*container: 1.0"])
    assert scans(project) == ["scan container", "scan vm"]  # once per run, before the tests
    saved = json.loads((project.path / "out" / "scan.json").read_text())
    assert set(saved["collected_in_s"]) == {"vm", "container"}
    assert saved["differences"] == [{"category": "package", "item": "drift-only-here",
                                     "vm": None, "container": "1.0", "expected": None}]
    assert saved["same"] > 100
    page = (project.path / "out" / "comparison.html").read_text()
    assert page.index("<h2>Differences</h2>") < page.index("<h2>Parity matrix</h2>")
    assert "drift-only-here" in (project.path / "out" / "comparison.md").read_text()
    case = next(case for case in ET.parse(project.path / "junit.xml").iter("testcase")
                if case.get("name") == "vmcontainer parity scan")
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["vmc.scan.unexpected"] == "1"
    package = properties["vmc.scan.package: drift-only-here"]
    assert package is not None and json.loads(package) == {"vm": None, "container": "1.0"}


def test_fail_adds_a_failing_item_and_an_expect_rule_clears_it(
        project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    failed = run(project, "--vmc-scan=fail")
    failed.assert_outcomes(passed=4, failed=1)
    failed.stdout.fnmatch_lines(["*the parity scan found unexpected differences:*",
                                 "FAILED vmcontainer parity scan*"])
    monkeypatch.delenv("VMC_SCAN")  # the ini's turn (the environment would win)
    project.makeini("[pytest]\nvmc_scan = fail\nvmc_scan_expect =\n"
                    "    package drift-* the container needs it\n")
    cleared = run(project)
    cleared.assert_outcomes(passed=5)
    cleared.stdout.fnmatch_lines(["*0 unexpected differences, 1 expected*",
                                  "expected differences: 1 (1 the container needs it)"])


def test_off_one_target_or_a_bad_rule(project: pytest.Pytester,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    off = run(project, "--vmc-scan=off")
    off.assert_outcomes(passed=4)
    assert "parity scan" not in off.stdout.str()
    one = run(project, "--vmc-scan=fail", "--target=container")
    one.assert_outcomes(passed=2)
    assert "parity scan" not in one.stdout.str()
    monkeypatch.setenv("VMC_SCAN_EXPECT", "pkg nginx why")
    bad = run(project)
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--vmc-scan-expect (from env VMC_SCAN_EXPECT): 'pkg nginx why' "
                              "is not 'CATEGORY GLOB reason'*"])


def test_one_scan_under_xdist_made_by_the_controller(project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    result = run(project, "-n", "2", "--vmc-scan=fail")
    result.assert_outcomes(passed=4, failed=1)
    assert scans(project) == ["scan container", "scan vm"]
    assert result.stdout.str().count("vmcontainer parity scan ---") == 1
