"""Seals: a cache entry or a saved VM that was truncated or written to is never trusted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vmcontainer.host import libvirt, paths
from pytest_vmcontainer.runtime import seal
from pytest_vmcontainer.targets import entrywrite, vmcache, vmsaved
from pytest_vmcontainer.targets.vagrant.leftovers import LibvirtLeftovers

MIB = 2**20
Sealed = tuple[Path, dict[str, dict[str, int | str]]]


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    """What ``dd conv=notrunc`` does: bytes written in place, the size unchanged."""
    with open(path, "r+b") as target:
        target.seek(offset)
        target.write(data)


@pytest.fixture
def sealed_file(tmp_path: Path) -> Sealed:
    path = tmp_path / "state.sav"
    path.write_bytes(os.urandom(3 * MIB))
    return path, seal.seal([path])


def test_an_untouched_file_keeps_its_seal(sealed_file: Sealed) -> None:
    path, sealed = sealed_file
    assert seal.broken(path.parent, sealed) is None


def test_a_truncated_file_breaks_its_seal(sealed_file: Sealed) -> None:
    path, sealed = sealed_file
    os.truncate(path, MIB)
    assert seal.broken(path.parent, sealed) == (
        f"state.sav has {MIB} bytes, sealed with {3 * MIB} (truncated or overwritten)")


@pytest.mark.parametrize("offset", [0, MIB + 7, 3 * MIB - 16])
def test_bytes_written_anywhere_break_the_seal(sealed_file: Sealed,
                                               offset: int) -> None:
    path, sealed = sealed_file
    _overwrite(path, offset, os.urandom(16))
    assert seal.broken(path.parent, sealed) == "state.sav was written to after it was sealed"


def test_bytes_at_the_ends_break_it_even_with_the_old_mtime(
        sealed_file: Sealed) -> None:
    path, sealed = sealed_file
    before = path.stat()
    _overwrite(path, 3 * MIB - 16, os.urandom(16))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert seal.broken(path.parent, sealed) == "state.sav was written to after it was sealed"


def test_missing_files_and_missing_seals_are_not_trusted(tmp_path: Path) -> None:
    assert seal.broken(tmp_path, None) is not None
    assert seal.broken(tmp_path, {}) is not None
    assert seal.broken(tmp_path, {"gone": {"size": 1}}) is not None


@pytest.mark.parametrize("size", [0, 5, MIB, MIB + 7, 2 * MIB - 1, 2 * MIB, 3 * MIB + 11])
def test_a_file_on_another_machine_is_measured_as_here(tmp_path: Path, size: int) -> None:
    """The shell line run there (over SSH; here, ``sh``) measures what ``seal`` does, at
    every size around the two hashed ends; a missing file is said."""
    path = tmp_path / "disk.qcow2"
    path.write_bytes(os.urandom(size))
    printed = subprocess.run(["sh", "-c", seal.measure_script([str(path),
                                                                str(tmp_path / "gone")])],
                             capture_output=True, text=True, check=True).stdout
    measured = seal.parse_measured(printed)
    assert measured == {**seal.seal([path]), "gone": "No such file or directory"}
    assert seal.differs(seal.seal([path]), measured) is None
    assert seal.differs({**seal.seal([path]), "gone": {"size": 1}}, measured) == \
        "gone: No such file or directory"
    _overwrite(path, max(size - 1, 0), b"x")
    assert seal.differs(measured, seal.seal([path])) is not None


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    deleted: list[str] = []
    monkeypatch.setattr(libvirt, "delete_volume", deleted.append)  # no libvirt here
    monkeypatch.setattr(entrywrite, "in_pool", lambda entry: None)
    monkeypatch.setattr(entrywrite, "evict", lambda budget, keep=None: [])
    return deleted


def _committed_entry(tmp_path: Path, key: str) -> vmcache.Entry:
    source = tmp_path / "source"
    source.mkdir(exist_ok=True)
    (source / "metadata.json").write_text("{}")
    with entrywrite.Writer(key, source, tmp_path / "log") as writer:
        (writer.partial / "box.img").write_bytes(os.urandom(2 * MIB))
        writer.add_box_files(None)
        return writer.commit({}, budget_bytes=0)


def test_a_damaged_cache_entry_is_removed_and_said(tmp_path: Path, home: list[str]) -> None:
    entry = _committed_entry(tmp_path, "a" * 24)
    assert vmcache.lookup(entry.key) == entry
    assert "seal" in json.loads((entry.directory / vmcache.ENTRY_FILE).read_text())
    _overwrite(entry.directory / "box.img", MIB, b"\0" * 512)
    said: list[str] = []
    assert vmcache.lookup(entry.key, said.append) is None
    assert said == [f"vm: the VM cache entry {entry.key} is damaged (box.img was written to "
                    "after it was sealed); removed it, provisioning instead"]
    assert not entry.box_root.exists()


def test_a_damaged_entry_a_vm_runs_from_is_distrusted_but_kept(tmp_path: Path,
                                                               home: list[str]) -> None:
    entry = _committed_entry(tmp_path, "b" * 24)
    running = vmcache.hold(entry)
    try:
        os.truncate(entry.directory / "box.img", MIB)
        said: list[str] = []
        assert vmcache.lookup(entry.key, said.append) is None
        assert "left it to the VM that runs from it" in said[0]
        assert entry.directory.exists()
    finally:
        running.close()


def test_a_damaged_saved_vm_is_emptied_and_said(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path))
    slot = vmsaved.Slot("k" * 24, vmsaved.slot_ids("k" * 24, "v")[0])
    slot.begin()
    slot.state.write_bytes(os.urandom(2 * MIB))
    slot.disk.write_bytes(b"disk")
    slot.definition.write_text("<domain/>")
    slot.ssh_config.write_text("Host default\n")
    slot.commit({"domain": "d"})
    os.truncate(slot.state, MIB)
    said: list[str] = []
    taken = vmsaved.take("k" * 24, "v", said.append)
    assert taken is not None
    try:
        assert taken[0] == slot
        assert not slot.saved() and not slot.directory.exists()
        assert said == [f"vm: the saved VM {slot.id} is damaged (state.sav has {MIB} bytes, "
                        f"sealed with {2 * MIB} (truncated or overwritten)); removed it, "
                        "booting instead"]
    finally:
        taken[1].release()


def test_the_sweep_removes_partial_entries_of_killed_writers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a writer that was killed: its pid names no process now
    dead = vmcache.cache_dir() / f".partial-{'a' * 24}-{gone.pid}"
    live = vmcache.cache_dir() / f".partial-{'b' * 24}-{os.getpid()}"
    for partial in (dead, live):
        partial.mkdir()
        (partial / "box.img").write_bytes(b"half")
    assert LibvirtLeftovers().remove_orphans() == [f"vm cache partial {dead.name}"]
    assert not dead.exists() and live.exists()
