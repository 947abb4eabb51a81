"""SSH local forwards: bound to 127.0.0.1, tracked, reported in one line, and stopped by the
sweep when their run was killed, never another process that reused the id."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vmcontainer.errors import TargetError
from pytest_vmcontainer.host import ports
from pytest_vmcontainer.runtime import procs, sshforward
from pytest_vmcontainer.runtime.waiting import wait_for


def test_every_forward_listens_on_loopback_only() -> None:
    argv = sshforward.command(["-p", "2222", "--", "engine"], {41000: 32768, 41001: 32769})
    assert argv[0] == "ssh" and argv[-4:] == ["-p", "2222", "--", "engine"]
    assert "-L127.0.0.1:41000:127.0.0.1:32768" in argv
    assert "-L127.0.0.1:41001:127.0.0.1:32769" in argv
    assert {"ExitOnForwardFailure=yes", "ForwardAgent=no", "GatewayPorts=no", "ControlMaster=no",
            "BatchMode=yes"} <= set(argv)


# An ssh that listens on the local ends it is given, as ssh -L does, until stopped.
LISTENING_SSH = (
    "import socket, sys, time\n"
    "socks = []\n"
    "for arg in sys.argv[1:]:\n"
    "    if arg.startswith('-L'):\n"
    "        s = socket.socket(); s.bind(('127.0.0.1', int(arg.split(':')[1])))\n"
    "        s.listen(); socks.append(s)\n"
    "time.sleep(60)\n")


def _fake_ssh(directory: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``ssh`` earlier on PATH that runs ``script`` (a Python program) instead."""
    directory.mkdir()
    fake = directory / "ssh"
    fake.write_text(f"#!{sys.executable}\n{script}")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")


def test_an_ssh_that_exits_is_one_line_with_its_words(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_ssh(tmp_path / "bin", "import sys\nsys.stderr.write('bind [127.0.0.1]:1: Address "
              "already in use\\nCould not request local forwarding.\\n')\nsys.exit(255)\n",
              monkeypatch)
    record = tmp_path / "forwards.json"
    forwards = sshforward.SshForwards(["--", "engine"], {ports.free_port(): 80}, record,
                                      tmp_path / "ssh.log")
    with pytest.raises(TargetError, match=r"ssh exited \(255\) instead of forwarding .*"
                                          "Could not request local forwarding"):
        forwards.open(timeout=10)
    forwards.close()
    assert not record.exists()


def test_forwards_open_once_every_port_accepts(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_ssh(tmp_path / "bin", LISTENING_SSH, monkeypatch)
    local = ports.free_port()
    record = tmp_path / "forwards.json"
    forwards = sshforward.SshForwards(["--", "engine"], {local: 32768}, record,
                                      tmp_path / "ssh.log")
    try:
        forwards.open(timeout=10)
        pid = json.loads(record.read_text())["pid"]
        assert sshforward.recorded_alive(record) == pid
    finally:
        forwards.close()
    assert sshforward.start_time(pid) is None
    assert not record.exists()


def test_a_kept_targets_forwards_open_again_from_their_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kept target's ssh ended (a dropped connection, a reboot here): ``forward`` opens
    the same forwards again from the record the run wrote; a record without the command
    (an earlier version's) is one line."""
    _fake_ssh(tmp_path / "bin", LISTENING_SSH, monkeypatch)
    local, record = ports.free_port(), tmp_path / "forwards.json"
    first = sshforward.SshForwards(["--", "engine"], {local: 32768}, record, tmp_path / "log")
    first.open(timeout=10)
    assert first._process is not None
    first._process.terminate()  # the run's ssh ends; the kept target's record stays
    procs.wait(first._process)
    assert record.exists() and sshforward.recorded_alive(record) is None
    again = sshforward.SshForwards.from_record(record)
    try:
        again.open(timeout=10)
        assert again.ports == {local: 32768} and again.argv == first.argv
        assert sshforward.recorded_alive(record) not in (None, first._process.pid)
    finally:
        again.close()
    record.write_text(json.dumps({"pid": 1, "start": "1", "ports": {str(local): 32768}}))
    with pytest.raises(TargetError, match="does not say how its forwards were opened"):
        sshforward.SshForwards.from_record(record)


def _recorded_sleep(tmp_path: Path,
                    started: list[subprocess.Popen[bytes]]) -> tuple[subprocess.Popen[bytes], Path]:
    """A process standing in for a forward's ssh, and its record."""
    process = procs.spawn(["sleep", "60"])
    started.append(process)
    record = tmp_path / "forwards.json"
    record.write_text(json.dumps({"pid": process.pid,
                                  "start": sshforward.start_time(process.pid)}))
    return process, record


def test_the_sweep_stops_a_recorded_process(tmp_path: Path,
                                            started: list[subprocess.Popen[bytes]]) -> None:
    process, record = _recorded_sleep(tmp_path, started)
    assert sshforward.stop_recorded(record) == process.pid
    assert process.wait(timeout=10) == -signal.SIGTERM
    assert not record.exists()


def test_an_ended_ssh_nobody_reaped_forwards_nothing(
        tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    """A kept target's ssh, once it ends, stays a zombie until its new parent reaps it; the
    init of a CI container may never do so. It counts as ended: ``list`` says its ports are
    down, and the sweep has nothing to stop."""
    process, record = _recorded_sleep(tmp_path, started)
    assert sshforward.recorded_alive(record) == process.pid
    os.kill(process.pid, signal.SIGTERM)
    wait_for(lambda: Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2]
             .split()[0] == "Z", timeout=10, what="sleep to end, not reaped")  # not waited for
    assert sshforward.recorded_alive(record) is None
    assert sshforward.stop_recorded(record) is None
    assert not record.exists()


def test_a_reused_pid_is_never_stopped(tmp_path: Path,
                                       started: list[subprocess.Popen[bytes]]) -> None:
    process = procs.spawn(["sleep", "60"])
    started.append(process)
    record = tmp_path / "forwards.json"
    record.write_text(json.dumps({"pid": process.pid, "start": "1"}))  # another start time
    assert sshforward.recorded_alive(record) is None
    assert sshforward.stop_recorded(record) is None
    assert process.poll() is None
    record.write_text("{not json")
    assert sshforward.recorded_alive(record) is None
