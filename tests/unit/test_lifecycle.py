"""Sessions: locked state directories, and which ones a sweep may remove (no sweep here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pytest_vmcontainer import lifecycle
from pytest_vmcontainer.host import paths
from pytest_vmcontainer.lifecycle import KEPT_MARKER, REUSE_MARKER, Session, _is_dead_and_unmarked
from pytest_vmcontainer.targets import vmsaved
from pytest_vmcontainer.targets.base import Leftovers


@pytest.fixture(autouse=True)
def vmc_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("VMC_HOME", str(tmp_path))
    return tmp_path


def test_open_creates_a_locked_session_dir(vmc_home: Path) -> None:
    session = Session.open()
    try:
        assert session.dir == vmc_home / "sessions" / session.id
        assert session.dir.is_dir()
        assert (session.dir / "lock").exists()
        assert json.loads((session.dir / "meta.json").read_text())["pid"] == os.getpid()
        assert [p.name for p in (vmc_home / "sessions").iterdir()] == [session.id]  # no staging
        assert not _is_dead_and_unmarked(session.dir)
    finally:
        session.close()
    assert not session.dir.exists()


def test_session_ids_are_distinct() -> None:
    assert len({lifecycle.new_session_id() for _ in range(20)}) == 20


# Session.open leaves the lock file it failed to lock for the GC to close (ResourceWarning).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_second_open_of_a_live_session_fails_without_waiting() -> None:
    first = Session.open("abc123")
    try:
        with pytest.raises(BlockingIOError):
            Session.open("abc123", wait=False)
        assert first.dir.is_dir()
    finally:
        first.close(remove=True)
    assert not first.dir.exists()


def test_reopen_after_close_without_removal() -> None:
    first = Session.open("r1", marker=REUSE_MARKER, marker_text="{}")
    assert (first.dir / REUSE_MARKER).read_text() == "{}"
    first.close(remove=False)
    assert first.dir.is_dir()
    second = Session.open("r1", wait=False)
    try:
        assert second.dir == first.dir
        assert not _is_dead_and_unmarked(second.dir)
    finally:
        second.close()


def test_dead_and_unmarked() -> None:
    session = Session.open()
    assert not _is_dead_and_unmarked(session.dir)  # locked: alive
    session.close(remove=False)
    assert _is_dead_and_unmarked(session.dir)  # unlocked, unmarked: a crashed run's
    session.dir.joinpath(KEPT_MARKER).write_text("vm ...")
    assert not _is_dead_and_unmarked(session.dir)  # kept by --vmc-keep


def test_mark_and_reuse_marker_protect_a_dead_session() -> None:
    session = Session.open()
    session.mark(REUSE_MARKER, "key")
    session.close(remove=False)
    assert not _is_dead_and_unmarked(session.dir)
    (session.dir / REUSE_MARKER).unlink()
    assert _is_dead_and_unmarked(session.dir)


def test_a_session_without_a_dir_here_is_another_homes(vmc_home: Path) -> None:
    """What carries a session id unknown to this VMC_HOME belongs to another home's run,
    live or kept: neither the sweep nor clean may touch it."""
    assert not _is_dead_and_unmarked(vmc_home / "sessions" / "elsewhere")
    assert not _is_dead_and_unmarked(vmc_home / "sessions" / "elsewhere", ignore_markers=True)


def test_close_twice_is_harmless() -> None:
    session = Session.open()
    session.close()
    session.close()
    assert not session.dir.exists()


def test_stale_reuse_sessions_share_the_files_but_not_the_id() -> None:
    markers = {"vagrantfile": "/p/Vagrantfile", "dockerfile": "/p/Dockerfile"}
    other = {"vagrantfile": "/q/Vagrantfile", "dockerfile": "/q/Dockerfile"}
    for session_id, marker in (("rold", markers), ("rnew", markers), ("rq", other)):
        Session.open(session_id, marker=REUSE_MARKER,
                     marker_text=json.dumps(marker)).close(remove=False)
    broken = Session.open("rbroken", marker=REUSE_MARKER, marker_text="{not json")
    broken.close(remove=False)
    Session.open("plain").close(remove=False)  # not a reuse session
    assert lifecycle.stale_reuse_sessions(markers, current="rnew") == {"rold"}
    assert lifecycle.stale_reuse_sessions(other, current="rnew") == {"rq"}


class _FakeSource(Leftovers):
    """Leftovers of a backend, as plain names by session id."""

    def __init__(self, by_session: dict[str, list[str]]) -> None:
        self.things = by_session

    def by_session(self) -> dict[str, list[str]]:
        return {session: list(names) for session, names in self.things.items()}

    def remove(self, session_id: str) -> list[str]:
        return self.things.pop(session_id, [])

    def remove_orphans(self) -> list[str]:
        return ["image of a deleted project"]


def test_the_sweep_removes_only_dead_sessions_of_its_own_home() -> None:
    live = Session.open("live")
    Session.open("dead").close(remove=False)  # a crashed run: its directory, no lock holder
    kept = Session.open("kept", marker=KEPT_MARKER)
    kept.close(remove=False)
    source = _FakeSource({"live": ["container live"], "dead": ["container dead"],
                          "kept": ["container kept"], "other": ["container other"]})
    try:
        # Beside a build (the start of a run), orphans wait: the build may reuse their layers.
        assert lifecycle.sweep([source], orphans=False) == ["container dead", "session dir dead"]
        # clean: kept targets too, still never a live run's or another home's
        assert lifecycle.sweep([source], include_marked=True) == [
            "container kept", "image of a deleted project", "session dir kept"]
        assert sorted(source.things) == ["live", "other"]
    finally:
        live.close()


def test_the_sweep_holds_a_dead_sessions_lock_while_it_removes_its_leftovers() -> None:
    """A saved VM's slot is a session name that the next run takes again: one that tried to
    take it while the sweep removed the old holder's VM must find it taken."""
    Session.open("s0123abcn0").close(remove=False)  # a killed run's slot
    taken_meanwhile: list[bool] = []

    class Probing(_FakeSource):
        def remove(self, session_id: str) -> list[str]:
            taken_meanwhile.append(vmsaved.SlotLock.try_take(session_id) is not None)
            return super().remove(session_id)

    source = Probing({"s0123abcn0": ["libvirt vmc-s0123abcn0-default"]})
    assert lifecycle.sweep([source], orphans=False) == [
        "libvirt vmc-s0123abcn0-default", "session dir s0123abcn0"]
    assert taken_meanwhile == [False]
    slot = vmsaved.SlotLock.try_take("s0123abcn0")  # after the sweep, the next run takes it
    assert slot is not None
    slot.release()


def test_a_dead_session_is_swept_only_by_a_run_on_its_engines(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only those engines reach what it left: a run on others would remove its directory and
    leave its domain or container to no one."""
    remote = "qemu+ssh://ci@kvm1/system"
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("VMC_LIBVIRT_URI", remote)
    Session.open("there").close(remove=False)  # killed while its VM ran on kvm1
    monkeypatch.delenv("VMC_LIBVIRT_URI")
    Session.open("here").close(remove=False)  # killed while its VM ran on this host
    source = _FakeSource({"there": ["libvirt vmc-there-default"],
                          "here": ["libvirt vmc-here-default"]})
    assert lifecycle.sweep([source], orphans=False) == ["libvirt vmc-here-default",
                                                        "session dir here"]
    monkeypatch.setenv("VMC_LIBVIRT_URI", remote)
    assert lifecycle.sweep([source], orphans=False) == ["libvirt vmc-there-default",
                                                        "session dir there"]
    assert list(paths.sessions_dir().iterdir()) == []


def test_a_command_on_other_engines_than_the_sessions_is_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """login, exec and destroy of a session whose VM runs on another machine's libvirt: run
    without that URI, they would find no domain (destroy would forget it there), so they say
    which setting reaches it; with it, they go on."""
    from pytest_vmcontainer.errors import UsageError

    remote = "qemu+ssh://ci@kvm1/system"
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("VMC_LIBVIRT_URI", remote)
    Session.open("kept").close(remove=False)
    lifecycle.require_its_engines("kept", "destroy")  # the same engines: nothing to say
    monkeypatch.delenv("VMC_LIBVIRT_URI")
    with pytest.raises(UsageError) as raised:
        lifecycle.require_its_engines("kept", "destroy")
    assert raised.value.one_line() == (
        f"session kept's targets are on engines this destroy does not reach "
        f"(VMC_LIBVIRT_URI={remote}): run it with VMC_LIBVIRT_URI={remote}")
    lifecycle.require_its_engines("a-session-with-no-record", "destroy")  # nothing known
