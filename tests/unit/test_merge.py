"""`report merge`: two saved single-target runs give the full table, verdicts and matrix.

``data/run-vm.json`` and ``data/run-container.json`` were written by ``--vmc-report``
after a ``--target=vm`` and a ``--target=container`` run of a small parity suite (stand-in
targets); their comparison rows are the vm half and the container half of the TCG run in
``data/comparison-tcg.json``. Merged, the two halves must give that run's verdicts again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer import cli, runreport
from pytest_vmcontainer.errors import ReportError

DATA = Path(__file__).parent / "data"
VM, CONTAINER = DATA / "run-vm.json", DATA / "run-container.json"
BOTH = DATA / "comparison-tcg.json"


def _copy(source: Path, directory: Path, **changes: Any) -> Path:
    data = {**json.loads(source.read_text()), **changes}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "comparison.json"
    path.write_text(json.dumps(data))
    return path


def test_the_halves_are_single_target_runs() -> None:
    vm, container = runreport.load(VM), runreport.load(CONTAINER)
    assert (vm.targets, container.targets) == (["vm"], ["container"])
    assert vm.inputs_hash == container.inputs_hash is not None
    assert all(row.verdict and row.verdict.status == "not measurable here"
               for row in vm.comparison.rows)


def test_merge_gives_the_full_table_verdicts_and_matrix() -> None:
    merged = runreport.merge(runreport.load(VM), runreport.load(CONTAINER), ["A", "B"])
    whole = runreport.load(BOTH)
    assert [row.id for row in merged.comparison.rows] == [row.id for row in whole.comparison.rows]
    for row, expected in zip(merged.comparison.rows, whole.comparison.rows, strict=True):
        assert row.figures == expected.figures, row.id
        assert row.verdict == expected.verdict, row.id
    assert merged.comparison.vm_mode == "tcg"
    assert merged.comparison.vm_mode_reason == whole.comparison.vm_mode_reason
    assert merged.targets == ["vm", "container"]
    assert merged.inputs_hash == runreport.load(VM).inputs_hash
    assert [run["file"] for run in merged.merged_from] == ["A", "B"]
    assert merged.comparison.host["vm run: qemu"].startswith("QEMU")
    assert merged.comparison.host["container run: docker_engine"] == "20.10.24+dfsg1"
    assert merged.comparison.settings["vmc_target"] == "vm (vm run) / container (container run)"
    assert merged.comparison.settings["vmc_rounds"] == "3"
    rows = {row.test: row for row in merged.parity.ordered()}
    assert list(rows) == ["test_parity.py::test_echo", "test_parity.py::test_init",
                          "test_parity.py::test_workers"]
    assert rows["test_parity.py::test_echo"].outcomes == {"vm": "passed", "container": "passed"}
    assert rows["test_parity.py::test_init"].values == {
        "PID 1": {"vm": "systemd", "container": "nginx"}}
    # Never compared inside a test (the targets ran on two machines): the merge shows it.
    assert merged.parity.unexpected_differences() == ["test_parity.py::test_workers: worker count"]
    assert merged.parity.modes == {"vm": "tcg", "container": "container"}


def test_merge_is_the_same_either_way_round() -> None:
    vm, container = runreport.load(VM), runreport.load(CONTAINER)
    one = runreport.merge(vm, container, ["A", "B"])
    other = runreport.merge(runreport.load(CONTAINER), runreport.load(VM), ["B", "A"])
    assert [(r.id, r.figures, r.verdict) for r in one.comparison.rows] == [
        (r.id, r.figures, r.verdict) for r in other.comparison.rows]
    assert one.parity.rows.keys() == other.parity.rows.keys()


def test_refuses_runs_with_different_inputs(tmp_path: Path) -> None:
    other = _copy(CONTAINER, tmp_path / "b", inputs_hash="0123456789abcdef")
    with pytest.raises(ReportError) as refused:
        runreport.merge(runreport.load(VM), runreport.load(other), ["a.json", "b.json"])
    line = refused.value.one_line()
    assert "\n" not in line
    assert line.startswith("cannot merge a.json and b.json: they were made from different "
                           "inputs (inputs hash 170c4addea4b3611 vs 0123456789abcdef): ")


def test_refuses_two_runs_of_the_same_target() -> None:
    with pytest.raises(ReportError) as refused:
        runreport.merge(runreport.load(VM), runreport.load(VM), ["a.json", "b.json"])
    assert refused.value.one_line() == (
        "cannot merge a.json and b.json: both ran the vm target: merge one run per target, "
        "e.g. a --target=vm run with a --target=container run")


def test_refuses_a_run_that_ran_both(tmp_path: Path) -> None:
    both = _copy(VM, tmp_path / "b", targets=["vm", "container"])
    with pytest.raises(ReportError, match="both ran the container target"):
        runreport.merge(runreport.load(CONTAINER), runreport.load(both), ["a", "b"])


def test_refuses_a_report_without_an_inputs_hash() -> None:
    with pytest.raises(ReportError, match=r"cannot merge .*comparison-tcg.json: it records no "
                                          "inputs hash"):
        runreport.merge(runreport.load(BOTH), runreport.load(CONTAINER), [str(BOTH), "b"])


# --- the command line ------------------------------------------------------------------------

def test_cli_merge_writes_one_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "merged"
    assert cli.main(["report", "merge", str(VM), str(CONTAINER), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"targets: vm, container; inputs hash: 170c4addea4b3611; merged "
                              f"from {VM}, {CONTAINER}\n")
    assert "VM figures: TCG" in printed and "parity matrix:" in printed
    assert "worker count DIFFERS: vm=2, container=1" in printed
    data = json.loads((out / "comparison.json").read_text())
    assert data["targets"] == ["vm", "container"] and data["vm_mode"] == "tcg"
    assert [run["targets"] for run in data["merged_from"]] == [["vm"], ["container"]]
    again = runreport.load(out / "comparison.json")  # a merged report reads back
    assert again.parity.to_json() == runreport.merge(
        runreport.load(VM), runreport.load(CONTAINER), ["a", "b"]).parity.to_json()
    markdown = (out / "comparison.md").read_text()
    assert "| merged from |" in markdown and "## Parity matrix" in markdown
    assert "| Isolation |" in markdown


def test_cli_merge_refusal_is_one_line(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", "merge", str(VM), str(VM), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pytest-vmcontainer: error: cannot merge " + f"{VM} and {VM}: both ran the vm "
                   "target: merge one run per target, e.g. a --target=vm run with a "
                   "--target=container run"]
    assert not (tmp_path / "comparison.json").exists()


def test_cli_fail_on_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["report", "merge", str(VM), str(CONTAINER), "--out", str(tmp_path)]
    assert cli.main([*args, "--fail-on-diff"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pytest-vmcontainer: error: the parity matrix has 1 unexpected difference "
                   "(test_parity.py::test_workers: worker count): fix the targets, or mark the "
                   "tests expect_diff with a reason"]
    assert (tmp_path / "comparison.json").exists()  # the report is written all the same


@pytest.mark.parametrize(("argv", "message"), [
    (["report", "merge", "a.json"], "report merge takes two reports, got 1"),
    (["report", "a.json", "b.json"], "report takes one report, got 2"),
])
def test_cli_usage_errors(argv: list[str], message: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pytest-vmcontainer: error: {message}: ")


def test_report_shows_an_old_file_with_an_empty_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(BOTH)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("targets: vm, container; inputs hash: not recorded\n")
    assert out.rstrip().endswith("parity matrix: no parity tests ran")


def test_the_run_says_which_engine_the_container_ran_on(tmp_path: Path) -> None:
    report = runreport.load(CONTAINER)
    assert "ran on" not in runreport.write(report, tmp_path / "local")["markdown"].read_text()
    report.comparison.host["container_engine"] = "ssh://ci@127.0.0.1:2222"
    page = runreport.write(report, tmp_path / "remote")["markdown"].read_text()
    assert "| container ran on | ssh://ci@127.0.0.1:2222 |" in page
    assert "vm ran on" not in page  # this report has no VM


def test_once_one_target_ran_elsewhere_the_report_says_where_each_ran(tmp_path: Path) -> None:
    report = runreport.load(BOTH)
    report.comparison.host["container_engine"] = "ssh://ci@127.0.0.1:2222"
    page = runreport.write(report, tmp_path)["markdown"].read_text()
    assert "| vm ran on | this host |\n| container ran on | ssh://ci@127.0.0.1:2222 |" in page


def test_a_vm_on_another_machine_is_shown_with_its_versions(tmp_path: Path) -> None:
    report = runreport.load(BOTH)
    report.comparison.host["vm_engine"] = "qemu+ssh://ci@kvm1/system"
    report.comparison.host["vm_engine_versions"] = "libvirt 10.0.0, QEMU 8.2.2; this host " \
        "has libvirt 9.0.0, QEMU 7.2.22"
    page = runreport.write(report, tmp_path)["markdown"].read_text()
    assert "| vm ran on | qemu+ssh://ci@kvm1/system (libvirt 10.0.0, QEMU 8.2.2; this host " \
        "has libvirt 9.0.0, QEMU 7.2.22) |\n| container ran on | this host |" in page
