"""Tracked external processes and background jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from pytest_vmcontainer.errors import Cancelled
from pytest_vmcontainer.runtime import background, procs
from pytest_vmcontainer.runtime.waiting import wait_for


def test_run_returns_the_exit_status() -> None:
    assert procs.run(["true"]) == 0
    assert procs.run(["false"]) == 1
    assert procs.run(["sh", "-c", "exit 7"]) == 7


def test_spawn_tracks_until_waited(started: list[subprocess.Popen[bytes]]) -> None:
    process = procs.spawn(["sleep", "0.01"], stdout=subprocess.DEVNULL)
    started.append(process)
    assert process in procs._running
    assert os.getpgid(process.pid) == process.pid  # its own process group
    assert procs.wait(process) == 0
    assert process not in procs._running


def test_spawn_refuses_once_cancelled() -> None:
    cancel = threading.Event()
    assert procs.run(["true"], cancel) == 0
    cancel.set()
    count = len(procs._running)
    with pytest.raises(Cancelled, match="not starting sleep"):
        procs.spawn(["sleep", "30"], cancel)
    assert len(procs._running) == count


def test_stop_sends_sigint_first(started: list[subprocess.Popen[bytes]]) -> None:
    process = procs.spawn(["sleep", "30"])
    started.append(process)
    procs.stop(process)  # a 60 s grace: only SIGINT can have ended it
    assert process.returncode == -signal.SIGINT


def test_stop_sends_sigint_first_even_where_this_run_ignores_it(
        started: list[subprocess.Popen[bytes]]) -> None:
    """A launcher's ignored SIGINT (a CI script's background job) is not passed on to the
    processes the harness starts, or ``stop`` would wait out the grace for nothing."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process = procs.spawn(["sleep", "30"])
    finally:
        signal.signal(signal.SIGINT, previous)
    started.append(process)
    # Until its exec, the child is env, whose SIGINT is still the ignored one.
    wait_for(lambda: Path(f"/proc/{process.pid}/comm").read_text().strip() == "sleep",
             timeout=10, what="sleep to start", interval=0.01)
    procs.stop(process)  # a 60 s grace: only SIGINT can have ended it
    assert process.returncode == -signal.SIGINT


def test_stop_escalates_to_sigterm(started: list[subprocess.Popen[bytes]]) -> None:
    process = procs.spawn(["sh", "-c", "trap '' INT; echo trapped; exec sleep 30"],
                          stdout=subprocess.PIPE)
    started.append(process)
    assert process.stdout is not None
    assert process.stdout.readline() == b"trapped\n"  # the trap is in place (sleep inherits it)
    procs.stop(process, grace_seconds=0.1)
    assert process.returncode == -signal.SIGTERM


def test_stop_of_an_ended_process_is_a_no_op() -> None:
    process = procs.spawn(["true"])
    assert procs.wait(process) == 0
    procs.stop(process)
    assert process.returncode == 0


def test_stop_all_stops_every_tracked_process(started: list[subprocess.Popen[bytes]]) -> None:
    started += [procs.spawn(["sleep", "30"]) for _ in range(3)]
    procs.stop_all(grace_seconds=60)  # only SIGINT can have ended them
    assert [p.returncode for p in started] == [-signal.SIGINT] * 3


def test_a_zombie_is_not_alive(started: list[subprocess.Popen[bytes]]) -> None:
    process = procs.spawn(["sleep", "60"])
    started.append(process)
    assert procs.alive(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    wait_for(lambda: Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2]
             .split()[0] == "Z", timeout=10, what="sleep to end, not reaped")  # not waited for
    assert not procs.alive(process.pid)
    procs.wait(process)
    assert not procs.alive(process.pid)


def test_job_returns_its_result() -> None:
    job = background.Job("answer", lambda: 42)
    assert job.wait(timeout=5) == 42
    assert job.done


def test_job_reraises_its_exception() -> None:
    def work() -> None:
        raise KeyError("lost")

    job = background.Job("failing", work)
    with pytest.raises(KeyError, match="lost"):
        job.wait()
    with pytest.raises(KeyError, match="lost"):
        job.result()  # the same error each time


def test_job_still_running() -> None:
    release = threading.Event()
    job = background.Job("slow", lambda: release.wait(5) and "finished")
    with pytest.raises(background.StillRunning, match="slow"):
        job.wait(timeout=0.01)
    assert not job.done
    release.set()
    assert job.wait(timeout=5) == "finished"


def test_run_all_returns_results_in_order() -> None:
    assert background.run_all([lambda: 1, lambda: "two", lambda: None]) == [1, "two", None]
    assert background.run_all([lambda: threading.current_thread().name]) == [
        threading.current_thread().name]  # one work runs inline


def test_run_all_waits_for_all_then_reraises_the_first_failure() -> None:
    finished: list[str] = []
    second_failed = threading.Event()

    def slow() -> None:  # ends only after another work has failed
        assert second_failed.wait(timeout=30)
        finished.append("slow")

    def fail(message: str) -> None:
        if message == "second":
            second_failed.set()
        raise RuntimeError(message)

    with pytest.raises(RuntimeError, match=r"^first$"):
        background.run_all([lambda: fail("first"), slow, lambda: fail("second")])
    assert finished == ["slow"]


def test_an_interrupted_wait_leaves_the_process_tracked_for_teardown() -> None:
    """Ctrl-C while waiting must not forget the child: teardown has to stop it by id."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    process = procs.spawn(["sleep", "30"])
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(KeyboardInterrupt):
            procs.wait(process)
        assert process.poll() is None
        procs.stop_all(grace_seconds=2)
        assert process.poll() is not None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if process.poll() is None:
            process.kill()


def test_a_programs_version_is_its_first_line_or_none_when_not_installed(
        tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho 'tool 1.2.3'\necho 'more'\n")
    tool.chmod(0o755)
    assert procs.version_line([str(tool), "--version"]) == "tool 1.2.3"
    assert procs.version_line([str(tmp_path / "absent"), "--version"]) is None
