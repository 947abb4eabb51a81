"""`python -m pytest_vmcontainer report` re-renders a saved comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_vmcontainer import cli

RECORDED = Path(__file__).parent / "data" / "comparison-tcg.json"


def test_report_shows_a_saved_run_with_current_verdicts(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(RECORDED), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == ["targets: vm, container; inputs hash: not recorded",
                                    "VM figures: TCG (KVM did not boot the box kernel within 10s)"]
    for aspect in ("Size", "Boot Time", "Storage"):
        assert aspect in out
    rewritten = json.loads((tmp_path / "comparison.json").read_text())
    assert [row["id"] for row in rewritten["rows"]] == [
        row["id"] for row in json.loads(RECORDED.read_text())["rows"]]
    # A schema 1 file is read, decided by today's rules, and written as schema 2.
    assert json.loads(RECORDED.read_text())["schema"] == "pytest-vmcontainer/comparison/1"
    assert rewritten["schema"] == "pytest-vmcontainer/comparison/2"
    reasons = {row["id"]: row["verdict"]["reason"] for row in rewritten["rows"]}
    assert "not interleaved" in reasons["performance"]
    assert "no gzip1_bytes" in reasons["portability"]
    assert "disk cache mode was not recorded" in reasons["storage"]
    assert (tmp_path / "comparison.html").exists() and (tmp_path / "comparison.md").exists()


def test_report_of_a_missing_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", "/nonexistent/comparison.json"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read /nonexistent/comparison.json" in err[0]


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """``report FILE | head``: the command stops quietly when its stdout closes."""
    import subprocess
    import sys

    data = json.loads(RECORDED.read_text())
    data["parity"] = {"rows": [{"test": f"t.py::test_{n}", "outcomes": {"vm": "passed"}}
                               for n in range(5000)]}  # far more than a pipe buffer
    big = tmp_path / "comparison.json"
    big.write_text(json.dumps(data))
    command = subprocess.Popen([sys.executable, "-m", "pytest_vmcontainer", "report", str(big)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert command.stdout is not None and command.stderr is not None
    assert command.stdout.readline().startswith(b"targets: vm")
    command.stdout.close()
    assert command.wait(timeout=60) == 141
    assert command.stderr.read() == b""
