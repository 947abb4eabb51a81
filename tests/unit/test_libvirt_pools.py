"""Pools of homes that are gone are undefined; every other pool is left alone (no libvirt)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pytest_vmcontainer.errors import HostSetupError
from pytest_vmcontainer.host import libvirt, paths


def test_only_pools_of_our_prefix_whose_home_is_gone_go(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    alive = tmp_path / "other-home" / "libvirt-pool"
    alive.mkdir(parents=True)
    pools = {libvirt.pool_name(): tmp_path / "home" / "libvirt-pool",  # ours: never judged
             "pytest-vmcontainer-aaaaaaaaaaaa": tmp_path / "gone-home" / "libvirt-pool",
             "pytest-vmcontainer-bbbbbbbbbbbb": alive,
             "default": tmp_path / "missing-but-not-ours"}
    calls: list[tuple[str, ...]] = []

    def fake_virsh(*args: str) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        out = ""
        if args[0] == "pool-list":
            out = "\n".join(pools) + "\n"
        elif args[0] == "pool-dumpxml":
            out = f"<pool><target><path>{pools[args[1]]}</path></target></pool>"
        return subprocess.CompletedProcess(list(args), 0, out, "")

    monkeypatch.setattr(libvirt, "run_virsh", fake_virsh)
    removed = libvirt.remove_pools_of_gone_homes()
    assert removed == ["libvirt pool pytest-vmcontainer-aaaaaaaaaaaa "
                       f"(its home {tmp_path / 'gone-home'} is gone)"]
    changed = [call for call in calls if call[0] in ("pool-destroy", "pool-undefine")]
    assert changed == [("pool-destroy", "pytest-vmcontainer-aaaaaaaaaaaa"),
                       ("pool-undefine", "pytest-vmcontainer-aaaaaaaaaaaa")]


def test_a_home_libvirts_qemu_cannot_reach_is_named_before_the_pool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest's basetemp is mode 700: a pool under it fails at the VM's first start."""
    private = tmp_path / "private"
    (private / "home" / "libvirt-pool").mkdir(parents=True)
    private.chmod(0o700)
    pool = private / "home" / "libvirt-pool"
    assert libvirt.closed_to("nobody", pool) in (private, *private.parents)
    private.chmod(0o711)  # passing through is enough: no listing needed
    assert libvirt.closed_to("nobody", pool) in (None, *private.parents)
    assert libvirt.closed_to("root", pool) is None and libvirt.closed_to("+0", pool) is None
    assert libvirt.closed_to("no-such-user-here", pool) is None  # not judged

    private.chmod(0o700)
    monkeypatch.delenv(libvirt.LIBVIRT_URI_ENV, raising=False)
    monkeypatch.setattr(libvirt, "qemu_user", lambda: "nobody")
    monkeypatch.setattr(libvirt, "closed_to", lambda user, directory: private)
    with pytest.raises(HostSetupError) as raised:
        libvirt.ensure_storage_pool(pool)
    assert raised.value.one_line() == (
        f"libvirt's QEMU user (nobody) cannot reach the VM disks under {pool}: {private} is "
        "mode 700: use a VMC_HOME that other users can pass through (e.g. under /var/lib or "
        f"/var/tmp), or let them through: chmod o+x {private}")


def test_the_qemu_user_is_read_from_qemu_conf(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "qemu.conf"
    monkeypatch.setattr(libvirt, "QEMU_CONF", conf)
    assert libvirt.qemu_user() == "libvirt-qemu"  # no file: Debian's default
    conf.write_text('#user = "qemu"\nuser = "+64055"\n  group = "kvm"\n')
    assert libvirt.qemu_user() == "+64055"


def test_a_pools_path_is_asked_of_libvirt_once_per_pool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A VM's start needs the path two or three times; each ask was a virsh call. Another
    home's pool is asked on its own, and a pool with no path is refused every time."""
    asked: list[str] = []
    defined: dict[str, Path] = {}  # pool name: its path, as libvirt answers

    def fake_virsh(*args: str) -> subprocess.CompletedProcess[str]:
        assert args[0] == "pool-dumpxml"
        asked.append(args[1])
        path = defined.get(args[1])
        out = f"<pool><target><path>{path}</path></target></pool>" if path else "<pool/>"
        return subprocess.CompletedProcess(list(args), 0, out, "")

    monkeypatch.setattr(libvirt, "run_virsh", fake_virsh)
    for home in ("one", "two", "one", "two"):
        monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / home))
        defined[libvirt.pool_name()] = tmp_path / home / "libvirt-pool"
        assert libvirt.pool_path() == tmp_path / home / "libvirt-pool"
    assert len(asked) == 2 and len(set(asked)) == 2
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "pathless"))
    for _ in range(2):
        with pytest.raises(HostSetupError, match="has no path"):
            libvirt.pool_path()
    assert len(asked) == 4


def test_a_box_volume_is_named_as_vagrant_libvirt_names_it(tmp_path: Path) -> None:
    image = tmp_path / "box.img"
    image.write_bytes(b"qcow2")
    os.utime(image, (1_700_000_000, 1_700_000_000))
    assert libvirt.box_volume_name("team/box", "0", image) == \
        "team-VAGRANTSLASH-box_vagrant_box_image_0_1700000000_box.img"
    assert libvirt.box_volume_name("team/box", "1.2.0", image) == \
        "team-VAGRANTSLASH-box_vagrant_box_image_1.2.0_box.img"


@pytest.mark.parametrize("linkable", [True, False])
def test_a_box_goes_into_the_pool_whole_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              linkable: bool) -> None:
    """Linked (or, across file systems, copied and renamed) under its final name only when
    whole, and the pool refreshed once; a second call finds it and does nothing."""
    pool, image = tmp_path / "pool", tmp_path / "boxes" / "box.img"
    pool.mkdir()
    image.parent.mkdir()
    image.write_bytes(b"the box's disk")
    refreshed: list[tuple[str, ...]] = []
    monkeypatch.setattr(libvirt, "pool_path", lambda: pool)
    monkeypatch.setattr(libvirt, "run_virsh", lambda *args: refreshed.append(args))
    if not linkable:
        def cross_device(source: object, target: object) -> None:
            raise OSError(18, "Invalid cross-device link")
        monkeypatch.setattr(os, "link", cross_device)

    libvirt.box_in_pool("team/box", "0", image)
    libvirt.box_in_pool("team/box", "0", image)

    volume = pool / libvirt.box_volume_name("team/box", "0", image)
    assert [path.name for path in pool.iterdir()] == [volume.name]  # nothing staged is left
    assert volume.read_bytes() == b"the box's disk"
    assert volume.samefile(image) is linkable
    assert refreshed == [("pool-refresh", libvirt.pool_name())]
