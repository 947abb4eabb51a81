"""One-line errors and the command line's argument handling (no engine is touched)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_vmcontainer import cli
from pytest_vmcontainer.errors import BuildError, HostSetupError, TargetError, VmcError
from pytest_vmcontainer.harness import Harness


@pytest.mark.parametrize("kind", [VmcError, HostSetupError, BuildError, TargetError])
def test_one_line_is_cause_colon_remedy(kind: type[VmcError]) -> None:
    error = kind("docker is not running", "run 'python -m pytest_vmcontainer setup'",
                 detail="log line 1\nlog line 2")
    assert error.one_line() == "docker is not running: run 'python -m pytest_vmcontainer setup'"
    assert str(error) == error.one_line()
    assert "\n" not in str(error)
    assert error.detail == "log line 1\nlog line 2"
    assert isinstance(error, VmcError)


def _module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_vmcontainer", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_module_help() -> None:
    result = _module("--help")
    assert result.returncode == 0
    for command in ("setup", "build", "up", "clean", "accel"):
        assert command in result.stdout


def test_bogus_subcommand() -> None:
    result = _module("bogus")
    assert result.returncode == 2
    assert "invalid choice: 'bogus'" in result.stderr


@pytest.fixture
def restore_sigterm() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.usefixtures("restore_sigterm")
def test_up_with_a_missing_vagrantfile(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # commands.cmd_up validates both paths (in HarnessConfig(...)) before creating the Harness.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VMC_HOME", str(tmp_path / "home"))

    def refuse(self: Harness, kinds: list[str]) -> None:
        raise RuntimeError("unit tests must not bring targets up")

    monkeypatch.setattr(Harness, "start", refuse)
    assert cli.main(["up", "--vagrantfile", "/nonexistent/Vagrantfile"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("pytest-vmcontainer: error: /nonexistent/Vagrantfile does not exist: "
                   "pass the path of an existing file\n")


@pytest.mark.usefixtures("restore_sigterm")
@pytest.mark.parametrize("selected", ["vm", "container", "both"])
def test_up_has_the_provisioning_inputs_of_a_pytest_run(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path, selected: str) -> None:
    """One "fixtures" input whichever file is checked: with --target=vm it was counted twice
    (once resolved, once relative), so up's VM cache key was never a pytest run's."""
    for name in ("Vagrantfile", "Dockerfile", "fixtures/provision.sh"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VMC_HOME", str(tmp_path / "home"))
    seen = []

    def record(self: Harness, kinds: list[str]) -> None:
        seen.append(self.config.provision_inputs)
        raise TargetError("recorded", "no bring-up in unit tests")

    monkeypatch.setattr(Harness, "start", record)
    assert cli.main(["up", f"--target={selected}"]) == 1
    assert seen == [(tmp_path / "fixtures",)]


def test_up_rejects_a_bogus_target(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(["up", "--target", "bogus"])
    assert raised.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "session", "command"), [
    (["exec", "vm", "--", "uname", "-a"], None, ["uname", "-a"]),
    (["exec", "vm", "--session", "1a2b", "--", "sh", "-c", "echo hi"], "1a2b",
     ["sh", "-c", "echo hi"]),  # the option after the kind, as the README writes it
    (["exec", "--session", "1a2b", "container", "--", "ls", "-l"], "1a2b", ["ls", "-l"]),
    (["exec", "vm", "--", "--", "x"], None, ["--", "x"]),  # only the first -- separates
])
def test_exec_takes_the_command_after_the_first_double_dash(
        argv: list[str], session: str | None, command: list[str]) -> None:
    args = cli.parse(argv)
    assert (args.session, args.remote_command) == (session, command)


def test_exec_without_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["exec", "vm"]) == 1
    assert "exec needs a command" in capsys.readouterr().err


def test_a_command_after_double_dash_is_only_for_exec(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["list", "--", "uname"])
    assert "unrecognized arguments: -- uname" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "said"), [
    (["forward"], "this home has no kept or reused target to forward"),
    (["forward", "vm", "--session", "1a2b3c4d"],
     "session 1a2b3c4d has no kept or reused vm target to forward"),
])
def test_forward_with_nothing_kept_is_one_line(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        argv: list[str], said: str) -> None:
    monkeypatch.setenv("VMC_HOME", str(tmp_path / "home"))
    assert cli.main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"pytest-vmcontainer: error: {said}: run 'python -m pytest_vmcontainer list'\n"


@pytest.mark.usefixtures("restore_sigterm")
@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_ctrl_c_during_ups_teardown_lets_it_finish(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        number: signal.Signals) -> None:
    """Stopped halfway, a teardown left a restored VM's domain defined and its session behind
    while ``up`` said everything was removed; a Ctrl-C (or SIGTERM) meanwhile now only
    prints a note, and the teardown ends."""
    for name in ("Vagrantfile", "Dockerfile"):
        (tmp_path / name).write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VMC_HOME", str(tmp_path / "home"))
    previous_int = signal.getsignal(signal.SIGINT)
    finished: list[bool] = []

    def fail_start(self: Harness, kinds: list[str]) -> None:
        raise TargetError("the box did not boot", "see the log")

    def teardown(self: Harness, failed: bool = False) -> list[str]:
        os.kill(os.getpid(), number)  # the signal arrives while the targets go
        finished.append(failed)
        return []

    monkeypatch.setattr(Harness, "start", fail_start)
    monkeypatch.setattr(Harness, "teardown", teardown)
    try:
        assert cli.main(["up"]) == 1
    finally:
        signal.signal(signal.SIGINT, previous_int)
    assert finished == [True]
    err = capsys.readouterr().err
    assert "[vmcontainer] removing the targets, please wait..." in err
    assert err.endswith("pytest-vmcontainer: error: the box did not boot: see the log\n")
