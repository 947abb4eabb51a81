"""The provisioned-VM cache's eviction: least recently used first, down to a disk budget."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_vmcontainer.host import libvirt
from pytest_vmcontainer.targets import vmcache

MIB = 2**20


@pytest.fixture(autouse=True)
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("VMC_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(autouse=True)
def pool(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The pool's volume names, for the calls that would ask libvirt (none here)."""
    volumes: list[str] = []
    monkeypatch.setattr(libvirt, "pool_volumes", lambda: list(volumes))
    monkeypatch.setattr(libvirt, "delete_volume", volumes.remove)
    return volumes


def _entry(key: str, disk_mib: int, saved_mib: int, last_used: float) -> vmcache.Entry:
    """A committed entry with a disk of ``disk_mib`` and saved VMs of ``saved_mib``."""
    entry = vmcache.Entry(key)
    entry.directory.mkdir(parents=True)
    (entry.directory / "box.img").write_bytes(os.urandom(disk_mib * MIB))
    (entry.directory / vmcache.ENTRY_FILE).write_text("{}")
    os.utime(entry.directory / vmcache.ENTRY_FILE, (last_used, last_used))
    saved = vmcache.saved_dir(key) / "s0123456789abn0"
    saved.mkdir(parents=True)
    (saved / "state").write_bytes(os.urandom(saved_mib * MIB))
    return entry


def test_an_entry_counts_its_disk_and_its_saved_vms() -> None:
    entry = _entry("a" * 24, 3, 2, 1000)
    assert 5 * MIB <= vmcache.disk_bytes(entry) < 6 * MIB


def test_the_least_recently_used_go_until_the_rest_fit() -> None:
    oldest, middle, newest = (_entry(key * 24, 4, 1, used)
                              for key, used in (("a", 1000), ("b", 2000), ("c", 3000)))
    assert vmcache.evict(11 * MIB) == [oldest.key]  # 15 MiB held: one entry of 5 goes
    assert [e.key for e in vmcache.entries()] == [middle.key, newest.key]
    assert not vmcache.saved_dir(oldest.key).exists()  # its saved VMs with it
    assert vmcache.evict(11 * MIB) == []  # 10 MiB fit


def test_an_entry_just_written_or_in_use_stays_whatever_its_size() -> None:
    big = _entry("a" * 24, 8, 0, 1000)
    small = _entry("b" * 24, 1, 0, 2000)
    running = vmcache.hold(small)  # a VM runs from it: its shared lock
    try:
        assert vmcache.evict(0, keep={big.key}) == []
    finally:
        running.close()
    assert vmcache.evict(0) == [big.key, small.key]  # clean: everything no VM uses


def test_a_removed_entry_takes_its_volume_even_after_its_image_was_written_to(
        pool: list[str]) -> None:
    # The volume is named after the image's mtime when it went into the pool; a damaged
    # image (written to since) has another mtime, and the name computed again another name.
    entry = _entry("a" * 24, 1, 0, 1000)
    other = _entry("b" * 24, 1, 0, 2000)
    pool.extend([entry.volume_name(), other.volume_name(),
                 "pytest-vmcontainer-VAGRANTSLASH-debian-12_vagrant_box_image_0_1_box.img"])
    image = entry.directory / "box.img"
    os.utime(image, (image.stat().st_atime, image.stat().st_mtime + 60))
    assert entry.volume_name() not in pool
    assert vmcache.remove_entries({entry.key}) == [entry.key]
    assert pool == [other.volume_name(),
                    "pytest-vmcontainer-VAGRANTSLASH-debian-12_vagrant_box_image_0_1_box.img"]


def test_the_volumes_of_gone_entries_are_removed_and_no_other(pool: list[str]) -> None:
    kept = _entry("c" * 24, 1, 0, 1000)
    orphan = f"pytest-vmcontainer-cache-VAGRANTSLASH-{'d' * 24}_vagrant_box_image_0_7_box.img"
    others = [kept.volume_name(),
              "pytest-vmcontainer-VAGRANTSLASH-debian-12_vagrant_box_image_0_1_box.img",
              "vmc-0123456789ab-default.img"]
    pool.extend([orphan, *others])
    assert vmcache.remove_orphan_volumes() == [orphan]
    assert pool == others
    assert vmcache.evict(100 * MIB) == [] and pool == others  # eviction sweeps them too
