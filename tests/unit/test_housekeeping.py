"""``destroy`` and ``clean``: what they pick, what they refuse, what they say (no engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_vmcontainer import housekeeping, targets
from pytest_vmcontainer.errors import UsageError
from pytest_vmcontainer.host.space import human_bytes
from pytest_vmcontainer.lifecycle import KEPT_MARKER, Session
from pytest_vmcontainer.targets.base import Leftovers


@pytest.fixture(autouse=True)
def vmc_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("VMC_HOME", str(tmp_path))
    return tmp_path


class Recording(Leftovers):
    """Stands in for a backend's leftovers: records what it was asked to remove."""

    def __init__(self, kind: str, asked: list[str]) -> None:
        self.kind, self.asked = kind, asked

    def by_session(self) -> dict[str, list[str]]:
        return {}

    def remove(self, session_id: str) -> list[str]:
        self.asked.append(f"{self.kind} {session_id}")
        return [f"{self.kind} of {session_id}"]


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    class Backend:
        def __init__(self, kind: str) -> None:
            self.kind = kind

        def leftovers(self) -> Leftovers:
            return Recording(self.kind, calls)

    monkeypatch.setattr(targets, "backend", Backend)
    monkeypatch.setattr(targets, "default_leftovers", lambda: [])
    return calls


def _kept(home: Path, session_id: str, *kinds: str) -> Path:
    session_dir = home / "sessions" / session_id
    for kind in kinds:
        (session_dir / kind).mkdir(parents=True)
        (session_dir / kind / "target.json").write_text(json.dumps({"kind": kind}))
    (session_dir / KEPT_MARKER).write_text("")
    return session_dir


def test_destroy_one_kind_keeps_the_rest_of_the_session(vmc_home: Path, asked: list[str]) -> None:
    session_dir = _kept(vmc_home, "k1", "vm", "container")
    result = housekeeping.destroy("container", None)
    assert asked == ["container k1"]
    assert result.removed == ["container of k1"]
    assert not (session_dir / "container").exists()
    assert (session_dir / "vm" / "target.json").exists()


def test_destroy_removes_the_session_with_its_last_target(vmc_home: Path,
                                                          asked: list[str]) -> None:
    session_dir = _kept(vmc_home, "k1", "vm", "container")
    result = housekeeping.destroy(None, "k1")
    assert sorted(asked) == ["container k1", "vm k1"]
    assert "session dir k1" in result.removed
    assert not session_dir.exists()


def test_destroy_asks_for_a_session_when_several_have_one(vmc_home: Path,
                                                         asked: list[str]) -> None:
    _kept(vmc_home, "k1", "vm")
    _kept(vmc_home, "k2", "vm")
    with pytest.raises(UsageError, match=r"2 sessions have a vm target \(k1, k2\)") as error:
        housekeeping.destroy("vm", None)
    assert "--session" in error.value.one_line()
    assert asked == []


def test_destroy_names_what_exists_when_nothing_matches(vmc_home: Path,
                                                       asked: list[str]) -> None:
    _kept(vmc_home, "k1", "container")
    with pytest.raises(UsageError, match=r"no kept or reused vm target to destroy "
                                         r"\(sessions with one: none\)"):
        housekeeping.destroy("vm", None)
    with pytest.raises(UsageError, match=r"session k9 has no target .*sessions with one: k1"):
        housekeeping.destroy(None, "k9")
    assert asked == []


def test_destroy_refuses_a_run_in_progress(vmc_home: Path, asked: list[str]) -> None:
    session = Session.open()
    try:
        (session.dir / "container").mkdir()
        (session.dir / "container" / "target.json").write_text(json.dumps({"kind": "container"}))
        with pytest.raises(UsageError, match="is a run in progress"):
            housekeeping.destroy("container", session.id)
        assert asked == []
        assert (session.dir / "container" / "target.json").exists()
    finally:
        session.close()


def test_clean_keeps_the_caches_unless_asked(vmc_home: Path, monkeypatch: pytest.MonkeyPatch,
                                             asked: list[str]) -> None:
    """With ``--caches`` the backends' caches go, told how many runs of this home live (a
    live run may still boot from them: ``targets.clean_caches``)."""
    cleaned: list[str] = []

    def clean_caches(live_runs: int) -> list[str]:
        cleaned.append(f"all, {live_runs} live runs")
        return ["vm cache k"]

    monkeypatch.setattr(targets, "cache_usage", lambda: (2, 3 * 2**30))
    monkeypatch.setattr(targets, "clean_caches", clean_caches)
    kept = housekeeping.clean(caches=False)
    assert cleaned == []
    assert kept.kept == "kept the VM cache: 2 entries, 3.0 GiB (remove it with clean --caches)"
    assert housekeeping.clean(caches=True).removed == ["vm cache k"]
    session = Session.open()  # a run in progress
    try:
        housekeeping.clean(caches=True)
    finally:
        session.close()
    assert cleaned == ["all, 0 live runs", "all, 1 live runs"]


def test_summary_and_sizes() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(3 * 2**20 // 2) == "1.5 MiB"
    assert human_bytes(5 * 2**40) == "5120.0 GiB"
    assert human_bytes(2**30 - 1) == "1024.0 MiB"
    text = housekeeping.Removal(["container x"], 2048, "kept y").summary()
    assert text == "removed: container x\nfreed 2.0 KiB\nkept y"


def test_list_shows_what_the_caches_hold_least_recently_used_first(vmc_home: Path) -> None:
    """An entry's key, what it was made from, its bytes (saved VMs included, and its disk on
    libvirt on another machine, where it says so), its saved VMs and its last use; then the
    kept Vagrant configs."""
    import os

    from pytest_vmcontainer.targets import vmcache

    there = {"there": "qemu+ssh://ci@kvm1/system", "there_bytes": 3 * 2**20}
    for key, used, saved in (("b" * 24, 2000.0, 1), ("a" * 24, 1000.0, 0),
                             ("c" * 24, 1500.0, 0)):
        entry = vmcache.Entry(key)
        entry.directory.mkdir(parents=True)
        (entry.directory / "box.img").write_bytes(b"" if key[0] == "c" else b"\1" * 2**20)
        (entry.directory / vmcache.ENTRY_FILE).write_text(json.dumps(
            {"box": "team/box", "vagrantfile": f"/src/{key[0]}/Vagrantfile", "proven": True,
             **(there if key[0] == "c" else {})}))
        os.utime(entry.directory / vmcache.ENTRY_FILE, (used, used))
        for number in range(saved):
            slot = vmcache.saved_dir(key) / f"s0123456789abn{number}"
            slot.mkdir(parents=True)
            (slot / "state.sav").write_bytes(b"\2" * 2**20)
    (vmc_home / "vm-configs").mkdir()
    (vmc_home / "vm-configs" / "0123.json").write_text("{}")

    lines = housekeeping.cache_lines(now=2060.0, budget="--vmc-vm-cache-size, 20G unless set")
    assert lines[0] == ("VM cache: 3 entries, 6.0 MiB (the least recently used go first beyond "
                        "--vmc-vm-cache-size, 20G unless set; clean --caches removes them)")
    assert lines[1].split() == ["key", "made", "from", "box", "on", "disk", "saved", "VMs",
                                "last", "used"]
    assert lines[2].split() == ["a" * 12, "/src/a/Vagrantfile", "team/box", "1.0", "MiB", "0",
                                "18m", "ago"]
    assert lines[3].split() == ["c" * 12, "/src/c/Vagrantfile", "team/box", "3.0", "MiB", "on",
                                "qemu+ssh://ci@kvm1/system", "0", "9m", "ago"]
    assert lines[4].split() == ["b" * 12, "/src/b/Vagrantfile", "team/box", "2.0", "MiB", "1",
                                "60s", "ago"]
    assert lines[-1] == f"kept Vagrant configs: 1 ({vmc_home / 'vm-configs'})"
