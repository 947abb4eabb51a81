"""SSH local forwards: ports of another host's loopback, reached on 127.0.0.1 of this one.

One OpenSSH process (``ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE ...``) carries every
forward of one target. Why the system's ``ssh`` and not paramiko or sshtunnel: it is what
``docker -H ssh://`` and the SDK (``use_ssh_client``) use for the engine, so the same
``~/.ssh/config``, known hosts, keys and agent decide for the forwards too; and its
``ExitOnForwardFailure`` turns a port it cannot bind into an exit we can report.

The listening side is bound to 127.0.0.1 by the forward spec itself, so ``GatewayPorts`` in
a config file cannot open it to other networks. The agent is never forwarded to the engine's
host. The process is tracked (``procs``): teardown, Ctrl-C and SIGTERM stop it by its id. Its
id and start time are also written to a record file in the session, so that the sweep of a
run killed with SIGKILL stops it too, and never a later process that got the same id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

from pytest_vmcontainer.errors import TargetError
from pytest_vmcontainer.runtime import logtail, procs
from pytest_vmcontainer.runtime.waiting import LOOPBACK, WaitTimeout, tcp_open, wait_for

# ControlMaster=no, ControlPath=none: a connection of our own even when the user's config
# multiplexes, else a master we did not start would hold the forwards past our teardown.
OPTIONS = ("-N", "-T", "-o", "ControlMaster=no", "-o", "ControlPath=none",
           "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
           "-o", "ForwardAgent=no", "-o", "ForwardX11=no", "-o", "GatewayPorts=no",
           "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3")


def command(destination: list[str], ports: dict[int, int]) -> list[str]:
    """``ssh`` forwarding each local port (a key) to the remote loopback port (its value)."""
    forwards = [f"-L{LOOPBACK}:{local}:{LOOPBACK}:{remote}"
                for local, remote in sorted(ports.items())]
    return ["ssh", *OPTIONS, *forwards, *destination]


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of its stat), or None
    when it is gone: with the pid, it names one process for good."""
    fields = procs.stat_fields(pid)
    return fields[19] if fields else None


class SshForwards:
    """The forwards of one target: ``open`` them, ``close`` them (idempotent)."""

    def __init__(self, destination: list[str], ports: dict[int, int], record: Path,
                 log: Path, cancel: threading.Event | None = None) -> None:
        self.ports = dict(ports)
        self.argv = command(destination, ports)
        self.record = record
        self.log = log
        self._cancel = cancel
        self._process: subprocess.Popen[bytes] | None = None

    def open(self, timeout: float) -> None:
        """Start ssh and wait until every local port accepts; a one-line ``TargetError``
        with ssh's own words when it exits instead."""
        with open(self.log, "ab") as log:
            self._process = procs.spawn(self.argv, self._cancel, stdout=subprocess.DEVNULL,
                                        stderr=log)
        self.record.write_text(json.dumps({"pid": self._process.pid,
                                           "start": start_time(self._process.pid),
                                           "ports": self.ports, "argv": self.argv,
                                           "log": str(self.log)}))
        accepting = [tcp_open(port) for port in self.ports]
        try:
            wait_for(lambda: self._alive() and all(check() for check in accepting),
                     timeout=timeout, what="the SSH forwards", max_interval=0.5)
        except WaitTimeout as error:
            why = f" (last error: {error.last_error})" if error.last_error else ""
            raise TargetError(f"the SSH forwards to the engine's host did not accept within "
                              f"{timeout:.0f}s{why}",
                              f"see {self.log}", detail=logtail.tail(self.log, 10)) from None

    @classmethod
    def from_record(cls, record: Path) -> SshForwards:
        """The forwards a record describes (a kept target's, whose ssh ended: a dropped
        connection, a reboot of this machine), to ``open`` again on the same ports."""
        try:
            data = json.loads(record.read_text())
            ports = {int(local): int(there) for local, there in data["ports"].items()}
            argv, log = list(data["argv"]), Path(data["log"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise TargetError(f"{record} does not say how its forwards were opened (a run of "
                              "an earlier version kept them)",
                              "destroy the target and run again to keep a new one") from None
        forwards = cls([], ports, record, log)
        forwards.argv = argv
        return forwards

    def _alive(self) -> bool:
        assert self._process is not None
        returncode = self._process.poll()
        if returncode is None:
            return True
        tail = logtail.tail(self.log, 3).strip().splitlines()
        raise TargetError(
            f"ssh exited ({returncode}) instead of forwarding {self.describe()}"
            f"{': ' + tail[-1] if tail else ''}",
            f"check that the engine's host allows TCP forwarding (AllowTcpForwarding) and "
            f"that the local ports are free (log {self.log})")

    def describe(self) -> str:
        return ", ".join(f"{LOOPBACK}:{local} -> {LOOPBACK}:{remote} there"
                         for local, remote in sorted(self.ports.items()))

    def close(self) -> None:
        if self._process is not None:
            procs.stop(self._process, grace_seconds=5.0)
            procs.wait(self._process)
            self._process = None
        self.record.unlink(missing_ok=True)


def recorded_alive(record: Path) -> int | None:
    """The pid of the ssh that ``record`` names, while that very process runs. An ended ssh
    that nobody has reaped yet (a zombie: a kept target's ssh is reparented, and the init of
    a CI container may never reap) forwards nothing, so it counts as ended."""
    try:
        data = json.loads(record.read_text())
        pid, started = int(data["pid"]), data["start"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    fields = procs.stat_fields(pid)  # one read for both: the same process, and running
    if fields is None or not procs.running(fields) or fields[19] != started:
        return None
    return pid


def stop_recorded(record: Path) -> int | None:
    """Stop the ssh a dead run left (its process group, by id), then drop the record;
    returns its pid when it was still running."""
    pid = recorded_alive(record)
    if pid is not None:
        try:
            os.killpg(pid, signal.SIGTERM)  # spawned in a session of its own: group id = pid
        except ProcessLookupError:
            pid = None
        else:
            wait_for(lambda: not procs.alive(pid), timeout=10.0, what=f"ssh {pid} to stop")
    record.unlink(missing_ok=True)
    return pid

