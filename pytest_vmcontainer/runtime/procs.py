"""The external processes this harness starts (debootstrap, vagrant, ...), tracked by id.

Each runs in its own process session so that a terminal Ctrl-C reaches only
pytest, which then stops them in order: SIGINT (vagrant unwinds its own
action), then SIGTERM, then SIGKILL, each to the process group we created and
nothing else. A process started for a bring-up passes that bring-up's cancel
event: once the event is set, it no longer starts, so a teardown that sets the
event and then calls ``stop_all`` leaves no process of that bring-up behind.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from pytest_vmcontainer.errors import Cancelled

# A copy or a convert ends with the run that started it, even one killed with SIGKILL (which no
# handler sees): util-linux's setpriv gives it a parent-death signal. Otherwise it would go on
# writing into the partial entry that the next run's sweep removes as a dead writer's.
DIE_WITH_THE_RUN = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []

_lock = threading.Lock()
_running: set[subprocess.Popen[bytes]] = set()


@functools.cache
def _env_resets_signals() -> bool:
    """Whether ``env --default-signal`` is there (GNU coreutils 8.31 and newer)."""
    try:
        return subprocess.run(["env", "--default-signal=INT", "true"], capture_output=True,
                              timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _stoppable(command: list[str]) -> list[str]:
    """``command``, started with SIGINT's default disposition when this process ignores it.

    A launcher that ignores SIGINT (a background job of a non-interactive shell, as some CI
    runners start their scripts) passes that on through every exec, and ``stop``'s SIGINT
    would then wait out its grace period for nothing (ssh and vagrant keep an ignored SIGINT
    ignored). ``env`` resets it just before the command's own exec, in the same process;
    ``preexec_fn`` would, but is not safe beside this harness's threads. A command that is
    not installed is left as it is, so that it still raises FileNotFoundError here.
    """
    if (signal.getsignal(signal.SIGINT) is signal.SIG_IGN and shutil.which(command[0])
            and _env_resets_signals()):
        return ["env", "--default-signal=INT", *command]
    return command


def spawn(command: list[str], cancel: threading.Event | None = None,
          **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    argv = _stoppable(command)
    with _lock:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"not starting {command[0]}: the run is being torn down")
        process = subprocess.Popen(argv, start_new_session=True,
                                   **{"stdin": subprocess.DEVNULL, **popen_kwargs})
        _running.add(process)
    return process


def wait(process: subprocess.Popen[bytes]) -> int:
    """Wait for exit; an interrupted wait leaves the process tracked, so teardown stops it."""
    returncode = process.wait()
    with _lock:
        _running.discard(process)
    return returncode


def run(command: list[str], cancel: threading.Event | None = None, **popen_kwargs: Any) -> int:
    """Run to completion (tracked); returns the exit status."""
    return wait(spawn(command, cancel, **popen_kwargs))


def stop(process: subprocess.Popen[bytes], grace_seconds: float = 60.0) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the process group we started."""
    for sig, timeout in ((signal.SIGINT, grace_seconds), (signal.SIGTERM, 10.0),
                         (signal.SIGKILL, 10.0)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)  # its own session: the group id is its pid
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def stop_all(grace_seconds: float = 60.0) -> None:
    """Stop every tracked process still running (set the cancel events first)."""
    with _lock:
        running = list(_running)
    threads = [threading.Thread(target=stop, args=(p, grace_seconds)) for p in running]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def stat_fields(pid: int) -> list[str] | None:
    """The fields of process ``pid``'s ``/proc`` stat after its name (its state first, its
    start time at index 19), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def running(fields: list[str] | None) -> bool:
    """Whether the process of these stat fields runs. A zombie (ended, not yet reaped by its
    parent, and the init of a CI container may never reap what it inherits) does not."""
    return fields is not None and bool(fields) and fields[0] != "Z"


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    return running(stat_fields(pid))


def version_line(command: list[str], timeout: float = 30.0) -> str | None:
    """The first line a program's ``--version`` (``command``) prints: "" when it prints
    nothing or does not answer in time, None when it is not installed."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                check=False)
    except FileNotFoundError:
        return None
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else ""
