"""Progress lines for long steps: start, end with duration, failures, heartbeats."""

from __future__ import annotations

import re
import threading

import pytest

from pytest_vmcontainer.runtime.progress import Progress, quiet


def _progress(**kwargs: float | bool) -> tuple[Progress, list[str]]:
    lines: list[str] = []
    return Progress(write=lines.append, **kwargs), lines  # type: ignore[arg-type]


def test_step_prints_start_notes_and_duration() -> None:
    progress, lines = _progress()
    with progress.step("build box") as note:
        note("debootstrap")
    assert lines[:2] == ["[vmcontainer] build box ...", "[vmcontainer] build box: debootstrap"]
    assert re.fullmatch(r"\[vmcontainer\] build box: done in \d+\.\ds", lines[2])
    assert len(lines) == 3


def test_step_reports_failure_and_reraises() -> None:
    progress, lines = _progress()
    with pytest.raises(RuntimeError, match="boom"), progress.step("vagrant up"):
        raise RuntimeError("boom")
    assert lines[0] == "[vmcontainer] vagrant up ..."
    assert re.fullmatch(r"\[vmcontainer\] vagrant up: failed after \d+\.\ds", lines[-1])
    assert not any("done in" in line for line in lines)


def test_step_reports_interrupts_as_failures() -> None:
    progress, lines = _progress()
    with pytest.raises(KeyboardInterrupt), progress.step("image"):
        raise KeyboardInterrupt
    assert "image: failed after" in lines[-1]


def test_heartbeat_while_the_step_is_quiet() -> None:
    lines: list[str] = []
    two_beats = threading.Event()

    def write(line: str) -> None:
        lines.append(line)
        if sum("still running" in seen for seen in lines) >= 2:
            two_beats.set()

    progress = Progress(write=write, heartbeat_seconds=0.05)
    with progress.step("cold build"):
        assert two_beats.wait(timeout=30)  # the step stays quiet until two heartbeats came
    beats = [line for line in lines if "still running" in line]
    assert beats, lines
    assert all(re.fullmatch(r"\[vmcontainer\] cold build: still running \(\d+s\)", b)
               for b in beats)
    assert "done in" in lines[-1]  # no heartbeat after the step ended


def test_no_heartbeat_after_the_step() -> None:
    progress, lines = _progress(heartbeat_seconds=0.02)
    with progress.step("quick"):
        pass
    count = len(lines)
    # The heartbeat thread is joined when the step ends: nothing is left to write a line.
    assert not [t for t in threading.enumerate() if t.name == "progress:quick"]
    assert len(lines) == count


def test_detail_only_when_verbose() -> None:
    progress, lines = _progress()
    progress.detail("apt-get output")
    assert lines == []
    progress.verbose = True
    progress.detail("apt-get output\n")
    assert lines == ["[vmcontainer]     apt-get output"]


def test_say_prefixes_and_quiet_discards(capsys: pytest.CaptureFixture[str]) -> None:
    progress, lines = _progress()
    progress.say("hello")
    assert lines == ["[vmcontainer] hello"]
    with quiet().step("nothing"):
        quiet().say("x")
    assert capsys.readouterr() == ("", "")


def test_default_writer_is_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    Progress().say("to stderr")
    assert capsys.readouterr() == ("", "[vmcontainer] to stderr\n")
