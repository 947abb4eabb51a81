"""The plugin under pytest-xdist: one parity matrix on the controller, the same as without
workers; a parity row on one worker; skips, refusals and usage errors as in a plain run;
the report and JUnit XML carrying the parity values.

Both kinds are served by a stand-in backend (the test process itself, through testinfra's
``local://``, plugged in with ``pytest_vmcontainer_make_target``): no engine is needed. The
"vm" stand-in says it runs under TCG, so that the reports have a VM mode to record.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer import scheduling
from tests.unit import standin

pytest_plugins = ["pytester"]

STAND_IN = standin.conftest()

# Values that are equal on both stand-ins, except where a test says otherwise: rows with
# parameters, an expected difference, an unexpected one, a failure, a skip, odd values.
SUITE = """
import pytest


def test_echo(host, parity):
    parity.check("echo", host.run("echo hi").stdout.strip())
    parity.check("ports", (80, 443))


def test_kind_differs(target, parity):
    parity.check("kind", target.kind)


@pytest.mark.expect_diff(reason="by design")
def test_kind_expected(target, parity):
    parity.check("kind", target.kind)
    parity.check("object", object)


@pytest.mark.parametrize("path", ["/etc/a-b", "x", "vm"])
def test_path(parity, target, path):
    parity.check("path", path)


@pytest.mark.parametrize("n", range(6))
def test_many(target, parity, n):
    parity.check("square", n * n)


def test_fails_on_the_vm(target, parity):
    parity.check("value", 1)
    assert target.kind != "vm"


def test_skipped_on_the_container(target):
    if target.kind == "container":
        pytest.skip("not for containers")


def test_needs_the_vm(vm):
    pass


def test_plain():
    pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> pytest.Pytester:
    for name in list(os.environ):
        if name.startswith(("VMC_", "PYTEST_XDIST")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VMC_SCAN", "off")  # the scan's own tests turn it on (tests/conftest.py)
    monkeypatch.setenv("VMC_HOME", str(tmp_path / "vmc-home"))
    (pytester.path / "Vagrantfile").write_text('Vagrant.configure("2") do |config|\nend\n')
    (pytester.path / "Dockerfile").write_text("FROM scratch\n")
    (pytester.path / "fixtures").mkdir()
    (pytester.path / "fixtures" / "provision.sh").write_text("apt-get install -y nginx\n")
    pytester.makeconftest(STAND_IN)
    return pytester


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("-p", "no:cacheprovider", *args)


def matrix(result: pytest.RunResult) -> list[str]:
    """The parity matrix section of the terminal summary (asserted to be there once)."""
    lines = result.outlines
    starts = [i for i, line in enumerate(lines) if "vmcontainer parity matrix" in line]
    assert len(starts) == 1, result.stdout.str()
    section = []
    for line in lines[starts[0] + 1:]:
        if line.startswith(("=", "report:")) or "short test summary" in line:
            break
        section.append(line)
    return section


def saved(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "comparison.json").read_text())
    return data


def check_the_report(directory: Path) -> None:
    """--vmc-report of a parity-only run: the matrix with its values, inputs hash, targets."""
    data = saved(directory)
    assert data["schema"] == "pytest-vmcontainer/comparison/2"
    assert data["targets"] == ["vm", "container"]
    assert data["vm_mode"] == "tcg"
    assert data["rows"] == []
    assert len(data["inputs_hash"]) == 16
    markdown = (directory / "comparison.md").read_text()
    assert "## Parity matrix" in markdown and "## Run" in markdown
    assert "| test_suite.py::test_kind_differs | passed | failed | kind | vm | container | " \
           "DIFFERS |" in markdown
    assert "unexpected differences: test_suite.py::test_kind_differs: kind" in markdown
    page = (directory / "comparison.html").read_text()
    assert "<h2>Parity matrix</h2>" in page and "<svg" not in page
    assert '<td class="verdict-does-not-hold">DIFFERS</td>' in page


def check_junit_properties(path: Path) -> None:
    """--junitxml: each test's target and parity values are properties of its test case."""
    cases = {case.get("name"): [(p.get("name"), p.get("value")) for p in case.iter("property")]
             for case in ET.parse(path).iter("testcase")}
    assert cases["test_echo[container]"] == [
        ("vmc.target", "container"), ("vmc.row", "test_suite.py::test_echo"),
        ("vmc.parity.echo", "hi"), ("vmc.parity.ports", "[80, 443]"), ("vmc.mode", "container")]
    assert cases["test_kind_expected[vm]"][:3] == [
        ("vmc.target", "vm"), ("vmc.row", "test_suite.py::test_kind_expected"),
        ("vmc.expect_diff", "by design")]
    assert ("vmc.parity.kind", "vm") in cases["test_kind_expected[vm]"]
    assert ("vmc.mode", "tcg") in cases["test_kind_expected[vm]"]
    assert cases["test_needs_the_vm"] == [("vmc.target", "vm")]
    assert cases["test_plain"] == []


# --- the matrix ------------------------------------------------------------------------------

def test_the_matrix_under_xdist_equals_the_serial_one(project: pytest.Pytester) -> None:
    project.makepyfile(test_suite=SUITE)
    serial = run(project, "-n", "0", "--vmc-report=serial", "--junitxml=serial.xml")
    parallel = run(project, "-n", "2", "--vmc-report=parallel", "--junitxml=parallel.xml")
    outcomes = {"passed": 27, "failed": 2, "skipped": 1}
    serial.assert_outcomes(**outcomes)
    parallel.assert_outcomes(**outcomes)
    assert "2 workers" in parallel.stdout.str()
    assert matrix(parallel) == matrix(serial)
    first, second = saved(project.path / "serial"), saved(project.path / "parallel")
    assert first["parity"] == second["parity"]
    rows = {row["test"]: row for row in first["parity"]["rows"]}
    assert list(rows)[:4] == ["test_suite.py::test_echo", "test_suite.py::test_kind_differs",
                              "test_suite.py::test_kind_expected",
                              "test_suite.py::test_path[path=/etc/a-b]"]
    assert rows["test_suite.py::test_kind_differs"]["outcomes"] == {
        "vm": "passed", "container": "failed"}  # compared inside the test that ran second
    assert rows["test_suite.py::test_echo"]["values"]["ports"] == {
        "vm": [80, 443], "container": [80, 443]}
    assert rows["test_suite.py::test_kind_expected"]["values"]["object"]["vm"] == (
        "<class 'object'>")
    assert rows["test_suite.py::test_fails_on_the_vm"]["outcomes"] == {
        "vm": "failed", "container": "passed"}
    assert rows["test_suite.py::test_skipped_on_the_container"]["outcomes"] == {
        "vm": "passed", "container": "skipped"}
    assert first["parity"]["modes"] == {"vm": "tcg", "container": "container"}
    table = "\n".join(matrix(parallel))
    assert "kind DIFFERS: vm=vm, container=container" in table
    assert "kind differs as expected (by design)" in table
    for name in ("serial", "parallel"):
        check_the_report(project.path / name)
        check_junit_properties(project.path / f"{name}.xml")
    assert "report: " in parallel.stdout.str()


def test_a_row_runs_on_one_worker(project: pytest.Pytester) -> None:
    """Each test records its worker's id. Inside a worker a check can only compare against
    that worker's values, so the proof is the controller's matrix: both targets of every row
    saw the same worker. (xdist's own load mode splits rows: checked without the scheduler.)"""
    project.makepyfile(test_where="""
        import os
        import pytest

        @pytest.mark.parametrize("n", range(12))
        def test_row(target, parity, n):
            parity.check("worker", os.environ["PYTEST_XDIST_WORKER"])
    """)
    result = run(project, "-n", "2", "--vmc-report=out")
    result.assert_outcomes(passed=24)
    rows = saved(project.path / "out")["parity"]["rows"]
    assert len(rows) == 12
    assert all(row["values"]["worker"]["vm"] == row["values"]["worker"]["container"]
               for row in rows), rows
    assert {row["values"]["worker"]["vm"] for row in rows} == {"gw0", "gw1"}  # both got rows
    assert "DIFFERS" not in "\n".join(matrix(result))


def test_other_dist_modes_are_left_to_xdist(project: pytest.Pytester) -> None:
    project.makepyfile(test_suite=SUITE)
    result = run(project, "-n", "2", "--dist=loadfile")
    result.assert_outcomes(passed=27, failed=2, skipped=1)  # one file: one worker, rows kept
    assert len(matrix(result)) == 15


class _Config:
    def __init__(self, dist: str) -> None:
        self.dist = dist

    def getvalue(self, name: str) -> str:
        assert name == "dist"
        return self.dist


@pytest.mark.parametrize("dist", ["each", "loadscope", "loadfile", "loadgroup", "worksteal"])
def test_the_scheduler_is_only_for_load(dist: str) -> None:
    assert scheduling.make_scheduler(_Config(dist), None) is None


@pytest.mark.parametrize(("nodeid", "scope"), [
    ("t.py::test_x[vm]", "t.py::test_x"),
    ("t.py::test_x[container]", "t.py::test_x"),
    ("d/t.py::test_x[vm-/etc/a-b]", "d/t.py::test_x[/etc/a-b]"),
    ("d/t.py::test_x[container-/etc/a-b]", "d/t.py::test_x[/etc/a-b]"),
    ("t.py::C::test_x[vm-1-[x]]", "t.py::C::test_x[1-[x]]"),
    ("t.py::test_x[vm-vm]", "t.py::test_x[vm]"),
    ("t.py::test_x[container-vm]", "t.py::test_x[vm]"),
    ("t.py::test_plain", "t.py::test_plain"),
    ("t.py::test_p[a-vm]", "t.py::test_p[a-vm]"),  # no target first: not a target test
    ("t.py::test_p[vmx]", "t.py::test_p[vmx]"),
    ("d[1]/t.py::test_x[vm]", "d[1]/t.py::test_x"),
])
def test_row_scope_drops_only_the_leading_target(nodeid: str, scope: str) -> None:
    assert scheduling.row_scope(nodeid) == scope


def test_the_target_id_leads_other_parameters(project: pytest.Pytester) -> None:
    """The scheduler relies on it, even when a conftest parametrizes too."""
    project.makeconftest(STAND_IN + """

def pytest_generate_tests(metafunc):
    if "extra" in metafunc.fixturenames:
        metafunc.parametrize("extra", ["e"])
""")
    project.makepyfile(test_ids="""
        import pytest

        @pytest.mark.parametrize("path", ["p"])
        def test_x(target, extra, path):
            pass
    """)
    result = run(project, "--collect-only", "-q")
    assert [line for line in result.outlines if "::" in line] == [
        "test_ids.py::test_x[vm-e-p]", "test_ids.py::test_x[container-e-p]"]


def test_targets_come_up_once_for_all_workers_in_the_controller(
        project: pytest.Pytester) -> None:
    """Each target is brought up once per run and torn down once, after the last worker, by
    the controller; the workers attach to it."""
    project.makepyfile(test_suite=SUITE)
    result = run(project, "-n", "2")
    result.assert_outcomes(passed=27, failed=2, skipped=1)
    assert "2 workers" in result.stdout.str()
    events = (project.path / "events.log").read_text().splitlines()
    assert sorted(line.split(" pid=")[0] for line in events) == [
        "destroy container", "destroy vm", "up container", "up vm"]
    assert len({line.split(" pid=")[1] for line in events}) == 1, events  # one process
    result.stdout.re_match_lines_random([r"vm: vmc-\w+-vm \(TCG, up in [\d.]+s\)",
                                  r"container: vmc-\w+-container \(CONTAINER, up in [\d.]+s\)"])


# --- skips, refusals, usage errors -----------------------------------------------------------

def test_skips_under_xdist(project: pytest.Pytester) -> None:
    project.makepyfile(test_suite=SUITE)
    serial = run(project, "--target=container", "-n", "0", "-rs")
    parallel = run(project, "--target=container", "-n", "2", "-rs")
    for result in (serial, parallel):
        result.assert_outcomes(passed=14, failed=0, skipped=2)
        result.stdout.fnmatch_lines(["SKIPPED*the vm target is not selected (--target=container)"])
        result.stdout.fnmatch_lines(["SKIPPED*not for containers"])
    assert matrix(parallel) == matrix(serial)
    assert matrix(parallel)[0].split() == ["check", "container", "values"]


def test_the_comparison_is_refused_in_a_worker(project: pytest.Pytester) -> None:
    project.makepyfile(test_rows="""
        def test_size(target, comparison):
            raise AssertionError("must not run")

        def test_parity(target, parity):
            parity.check("x", 1)
    """)
    result = run(project, "-n", "2")
    result.assert_outcomes(passed=2, errors=2)
    refusals = [line for line in result.outlines if line.startswith("comparison rows cannot")]
    assert len(refusals) == 2
    assert refusals[0].startswith("comparison rows cannot be measured in an xdist worker (gw")
    assert refusals[0].endswith("run the comparison without workers, e.g. pytest -n 0 "
                                "(or -p no:xdist) suites/test_comparison.py")
    assert "must not run" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


THERE = ("run the comparison on the machine that runs both targets (there, e.g. a CI job on "
         "that host; here, with DOCKER_HOST and VMC_LIBVIRT_URI unset), or run the parity "
         "tests alone (e.g. pytest suites/test_parity.py)")


def test_the_comparison_is_refused_with_both_targets_on_another_machine(
        project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both targets on one other machine: the pair is fair, but the rows read this host's
    side (QEMU's process, the kernel, the load), so each is refused in one line that says
    where to run it, before a target starts."""
    monkeypatch.setenv("DOCKER_HOST", "ssh://ci@engines.example:2222")
    monkeypatch.setenv("VMC_LIBVIRT_URI", "qemu+ssh://ci@engines.example:2222/system")
    assert _refused_rows(project) == [
        "comparison rows are measured on the machine pytest runs on (the VM's QEMU process, "
        "the host's kernel and load), and this run puts the vm on libvirt at "
        f"qemu+ssh://ci@engines.example:2222/system: {THERE}"] * 2


def _refused_rows(project: pytest.Pytester) -> list[str]:
    """A row's test under ``--target=both``: its two cases error at setup, no target is
    started; returns the refusal lines."""
    project.makepyfile(test_rows="""
        def test_size(target, comparison):
            raise AssertionError("must not run")
    """)
    result = run(project, "-n", "0", "--target=both")
    result.assert_outcomes(errors=2)
    events = project.path / "events.log"
    assert not events.exists() or "up " not in events.read_text()  # no target was started
    assert "must not run" not in result.stdout.str()
    return [line for line in result.outlines if line.startswith("comparison rows ")]


@pytest.mark.parametrize("given_in", ["env", "ini"])
def test_the_comparison_is_refused_with_the_targets_on_two_machines(
        project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, given_in: str) -> None:
    """A container on another host's engine and a VM here: no comparison row is measured
    (each refused in one line, before a target starts); the parity tests still run."""
    if given_in == "env":
        monkeypatch.setenv("DOCKER_HOST", "ssh://ci@engines.example:2222")
    else:
        monkeypatch.delenv("DOCKER_HOST", raising=False)
        project.makeini("[pytest]\nvmc_docker_host = ssh://ci@engines.example:2222\n")
    assert _refused_rows(project) == [
        "comparison rows need both targets on one machine, and this run puts the vm on this "
        f"host, the container on the Docker engine at ssh://ci@engines.example:2222: {THERE}"] * 2
    project.makepyfile(test_parity="""
        def test_parity(target, parity):
            parity.check("x", 1)
    """)
    mixed = run(project, "-n", "0", "--target=both")
    mixed.assert_outcomes(passed=2, errors=2)
    assert "must not run" not in mixed.stdout.str()
    single = run(project, "-n", "0", "--target=vm", "test_rows.py")  # one machine: measured
    single.assert_outcomes(failed=1)
    assert not any(line.startswith("comparison rows need") for line in single.outlines)


@pytest.mark.parametrize(("args", "message"), [
    (("--target=bogus",),
     "ERROR: --target (from command line): invalid value 'bogus'; allowed: both, vm, container"),
    (("--vagrantfile=missing",),
     "ERROR: --vagrantfile (from command line): */missing does not exist or is not readable;*"),
    (("--vmc-report=a-file/sub",),
     "ERROR: --vmc-report (from command line): cannot create */a-file/sub (Not a directory); "
     "give a writable directory"),
])
def test_usage_errors_under_xdist(project: pytest.Pytester, args: tuple[str, ...],
                                  message: str) -> None:
    (project.path / "a-file").write_text("")
    project.makepyfile(test_suite=SUITE)
    result = run(project, "-n", "2", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert [line for line in result.errlines if line.strip()] == [
        line for line in result.errlines if line.startswith("ERROR:")]  # one line, no trace
    assert "gw0" not in result.stdout.str()  # no worker started


# --- reports ---------------------------------------------------------------------------------

def test_the_inputs_hash_follows_the_inputs(project: pytest.Pytester) -> None:
    project.makepyfile(test_suite="def test_a(target, parity):\n    parity.check('a', 1)\n")
    hashes = []
    for directory in ("one", "two"):
        run(project, "--target=container", f"--vmc-report={directory}").assert_outcomes(passed=1)
        hashes.append(saved(project.path / directory)["inputs_hash"])
    (project.path / "fixtures" / "provision.sh").write_text("apt-get install -y apache2\n")
    run(project, "--target=container", "--vmc-report=three").assert_outcomes(passed=1)
    hashes.append(saved(project.path / "three")["inputs_hash"])
    assert hashes[0] == hashes[1] != hashes[2]
    assert saved(project.path / "one")["targets"] == ["container"]
    assert saved(project.path / "one")["vm_mode"] is None


