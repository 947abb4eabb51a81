"""A cold run's cache entry written in the background: proven by the first boot from it,
removed when that boot fails, cancelled by Ctrl-C or SIGTERM; the state saved right after
provisioning kept as the entry's first saved VM (no libvirt, no VM)."""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_vmcontainer.errors import TargetError, WaitTimeout
from pytest_vmcontainer.host import libvirt, paths
from pytest_vmcontainer.runtime import signals
from pytest_vmcontainer.targets import entrywrite, vmcache, vmsaved
from pytest_vmcontainer.targets.base import TargetSpec
from pytest_vmcontainer.targets.vagrant import VagrantTarget, starts
from pytest_vmcontainer.targets.vagrant import cachewrite as cachewrite_module
from pytest_vmcontainer.targets.vagrant.cachewrite import BackgroundWrite, SavedAfterProvisioning
from pytest_vmcontainer.targets.vagrant.starts import FromCache, Provision


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setattr(libvirt, "delete_volume", lambda name: None)
    monkeypatch.setattr(entrywrite, "in_pool", lambda entry: None)
    monkeypatch.setattr(starts, "box_in_pool", lambda box: None)
    return tmp_path


def _vm(tmp_path: Path) -> VagrantTarget:
    spec = TargetSpec(session_id="1a2b3c4d", workdir=tmp_path / "vm",
                      vagrantfile=tmp_path / "Vagrantfile", dockerfile=tmp_path / "Dockerfile")
    spec.workdir.mkdir(parents=True, exist_ok=True)
    return VagrantTarget(spec)


def _provisioned(home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[VagrantTarget, Path]:
    """A VM as ``save_and_continue_on_overlay`` leaves it, and the base it set aside."""
    vm = _vm(home)
    base = home / "base.qcow2"
    base.write_bytes(b"disk")
    monkeypatch.setattr(vm.domain.__class__, "definition", lambda self: "<domain/>")
    vm.ssh_config_path.parent.mkdir(parents=True, exist_ok=True)
    vm.ssh_config_path.write_text("Host default\n")
    return vm, base


def _unproven_entry(tmp_path: Path, key: str) -> vmcache.Entry:
    with entrywrite.Writer(key, None, tmp_path / "log") as writer:
        (writer.partial / "box.img").write_bytes(os.urandom(4096))
        (writer.partial / "metadata.json").write_text("{}")
        return writer.commit({"proven": False}, budget_bytes=2**40)


def test_the_first_boot_proves_an_entry(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _unproven_entry(home, "a" * 24)
    assert not entry.proven
    vm = _vm(home)
    start = FromCache(vm, entry)
    monkeypatch.setattr(start, "_boot", lambda entry: None)
    monkeypatch.setattr(vm, "wait_ready", lambda: None)
    start.run()
    assert entry.proven
    assert json.loads((entry.directory / vmcache.ENTRY_FILE).read_text())["proven"] is True
    assert entry.damage() is None  # the seal is on the image, not on the entry's record


def test_an_entry_that_does_not_boot_is_removed_with_one_line(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _unproven_entry(home, "b" * 24)
    vm = _vm(home)
    start = FromCache(vm, entry)
    monkeypatch.setattr(start, "_boot", lambda entry: None)

    def never_ready() -> None:
        raise TargetError("the VM did not answer SSH within its boot timeout (600s, TCG)",
                          "raise the boot timeout")

    monkeypatch.setattr(vm, "wait_ready", never_ready)
    start.hold()  # the run's shared lock on the entry: released before the removal
    with pytest.raises(TargetError) as error:
        start.run()
    assert error.value.one_line().startswith(
        f"the VM did not come up from the VM cache entry {entry.key[:12]}, its first boot "
        "since provisioning (the VM did not answer SSH within its boot timeout (600s, TCG)); "
        "the entry was removed: "
        "run again to provision again")
    assert vmcache.lookup(entry.key) is None and not entry.box_root.exists()


def test_a_proven_entry_that_does_not_boot_stays(home: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _unproven_entry(home, "c" * 24)
    entry.mark_proven()
    vm = _vm(home)
    start = FromCache(vm, entry)
    monkeypatch.setattr(start, "_boot", lambda entry: None)

    def never_ready() -> None:
        raise WaitTimeout("SSH", 600, None)

    monkeypatch.setattr(vm, "wait_ready", never_ready)
    with pytest.raises(WaitTimeout):
        start.run()
    assert vmcache.lookup(entry.key) == entry


def test_an_interrupt_cancels_the_background_write(home: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    vm, base = _provisioned(home, monkeypatch)
    started, cancelled = threading.Event(), threading.Event()

    def slow_copy(self: entrywrite.Writer, disk: Path, cancel: threading.Event) -> float:
        started.set()
        cancel.wait(30)  # stands in for qemu-img, which teardown stops
        cancelled.set()
        raise TargetError("qemu-img was stopped", "-")

    monkeypatch.setattr(entrywrite.Writer, "add_disk", slow_copy)
    write = BackgroundWrite(vm, "d" * 24, base)
    write.start()
    assert started.wait(10)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        signals.sigterm_as_interrupt()
        with pytest.raises(KeyboardInterrupt):
            signals.raise_interrupt(signal.SIGTERM, None)
        assert write.finish() is None  # returns at once, the write cancelled
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signals.INTERRUPTED.clear()
    write.abandon()
    assert cancelled.is_set()
    assert not list(vmcache.cache_dir().glob(".partial-*"))
    assert vmcache.lookup("d" * 24) is None


def test_a_finished_background_write_commits_an_unproven_entry(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vm, base = _provisioned(home, monkeypatch)

    def copy(self: entrywrite.Writer, disk: Path, cancel: threading.Event) -> float:
        (self.partial / "box.img").write_bytes(disk.read_bytes())
        return 0.0

    monkeypatch.setattr(entrywrite.Writer, "add_disk", copy)
    write = BackgroundWrite(vm, "e" * 24, base)
    write.start()
    entry = write.finish()
    assert entry is not None and entry == vmcache.lookup("e" * 24)
    assert not entry.proven
    assert entry.boot_files is not None
    assert cachewrite_module.__doc__  # the why is written down where the code is


def _provisioning(home: Path, monkeypatch: pytest.MonkeyPatch,
                  key: str) -> tuple[VagrantTarget, Provision, Path]:
    """A provisioning VM with saved VMs on, its slot held, its state saved right after
    provisioning (frozen) and its entry written in the background; the overlay that
    ``qemu-img create`` would make stands in a file naming its backing."""
    vm, base = _provisioned(home, monkeypatch)
    vm.spec = replace(vm.spec, vm_restore=True)
    monkeypatch.setattr(starts, "pool_volume", lambda name: home / "pool" / name)

    monkeypatch.setattr(starts, "overlay_file",
                        lambda backing, overlay: overlay.write_text(f"qcow2 over {backing}"))

    def copy(self: entrywrite.Writer, disk: Path, cancel: threading.Event) -> float:
        (self.partial / "box.img").write_bytes(disk.read_bytes())
        return 0.0

    monkeypatch.setattr(entrywrite.Writer, "add_disk", copy)
    start = vm.start_path = Provision(vm, key)
    start.hold()
    assert start.slot is not None and vm.resource_name.startswith(f"vmc-{start.slot.id}-")
    state = vm.spec.workdir / "provisioned.sav"
    state.write_bytes(os.urandom(4096))
    start._saved = SavedAfterProvisioning(base, state, frozen=True)
    start._background = BackgroundWrite(vm, key, base)
    start._background.start()
    return vm, start, state


def test_the_provisioned_vm_is_kept_for_the_next_run(home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    vm, start, state = _provisioning(home, monkeypatch, "f" * 24)
    saved = state.read_bytes()
    start.settle()
    assert start.entry is not None and not start.entry.proven  # a restore proves no boot
    assert vm.origin.endswith(", its saved state kept for later runs"), vm.origin
    slot = start.slot
    assert slot is not None and slot.saved() and slot.frozen()
    assert slot.state.read_bytes() == saved and not state.exists()
    assert slot.disk.read_text() == f"qcow2 over {home}/pool/{start.entry.volume_name()}"
    assert slot.definition.read_text() == "<domain/>"
    start.release()
    taken = vmsaved.take("f" * 24, starts.slot_variant(vm))  # the next run's
    assert taken is not None and taken[0] == slot and taken[0].saved()
    taken[1].release()


def test_another_runs_entry_keeps_no_state_of_this_run(home: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    other = _unproven_entry(home, "0" * 24)  # a concurrent run committed the key first
    _vm, start, state = _provisioning(home, monkeypatch, "0" * 24)
    start.settle()
    assert start.entry == other
    assert start.entry is not None and start.slot is not None
    assert not start.slot.committed()
    start.release()
    assert not state.exists()  # not kept: it goes with the run
    assert not (paths.sessions_dir() / start.slot.id).exists()


@pytest.mark.parametrize("uri", ["qemu:///system", "qemu+ssh://ci@kvm1/system"])
def test_on_another_machine_the_cache_is_written_there_and_restored_there(
        home: Path, monkeypatch: pytest.MonkeyPatch, uri: str) -> None:
    """The start by the VM cache: a hit restores a saved running VM (on libvirt on another
    machine, one saved there) and a miss provisions into an entry; there, into an entry of
    that machine's own key, whose disk stays there."""
    from pytest_vmcontainer.host.libvirthost import LibvirtHost
    from pytest_vmcontainer.targets.vagrant.restore import Restore, start_path

    monkeypatch.setenv(libvirt.LIBVIRT_URI_ENV, uri)
    removed_there: list[str] = []  # no ssh from a unit test
    monkeypatch.setattr(LibvirtHost, "remove_box_copies",
                        lambda host, box, saved="": removed_there.append(saved))
    here = uri == "qemu:///system"
    entry = _unproven_entry(home, "d" * 24)
    vm = _vm(home)
    vm.spec = replace(vm.spec, vm_restore=True)
    hit = start_path(vm, entry.key, entry)
    assert type(hit) is Restore and hit.entry == entry
    miss = start_path(vm, "e" * 24, None)
    there_key = vmcache.there_key("e" * 24, "kvm1:22")
    assert type(miss) is Provision and miss.cache_key == ("e" * 24 if here else there_key)
    assert there_key not in ("e" * 24, vmcache.there_key("e" * 24, "kvm2:22"))
    vm.spec = replace(vm.spec, vm_restore=False)  # saved VMs off: booted from the entry
    assert type(start_path(vm, entry.key, entry)) is FromCache
    if not here:  # an entry written there comes first: this host's disk need not go there
        written = _unproven_entry(home, vmcache.there_key(entry.key, "kvm1:22"))
        info = written.directory / vmcache.ENTRY_FILE
        info.write_text(json.dumps({**written.info(), "there": uri}))
        monkeypatch.setattr(libvirt, "pool_volumes", lambda: [written.volume_name()])
        assert start_path(vm, entry.key, entry).entry == written
        monkeypatch.setattr(libvirt, "pool_volumes", lambda: [])  # its disk gone there
        assert start_path(vm, entry.key, entry).entry == entry
        assert not written.box_root.exists()
        assert removed_there == [written.key]  # what is left of it there, its saved VMs too


def test_the_booted_box_goes_into_the_pool_once_per_start(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry's box is placed when the entry is held, and ``vagrant up`` does not place
    it again: on libvirt on another machine each placing checks the copy there over SSH."""
    from pytest_vmcontainer.targets.vagrant.domain import Box

    placed: list[Box | None] = []

    def place(box: Box | None) -> None:
        placed.append(box)

    monkeypatch.setattr(starts, "box_in_pool", place)
    entry = _unproven_entry(home, "f" * 24)
    vm = _vm(home)
    start = FromCache(vm, entry)
    vm.start_path = start
    monkeypatch.setattr(vmcache, "hold", lambda entry: None)
    start.hold()
    start.box_in_pool()  # what vagrant_up does first
    assert placed == [Box(entry.box_name, "0", entry.directory / "box.img")]


def test_on_another_machine_a_refused_snapshot_caches_after_a_halt(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On libvirt on another machine the provisioned VM goes on on a new overlay while its
    former disk is flattened there in the background; where libvirt refuses that snapshot,
    the VM is halted, copied there and booted again instead (``_fill_cache``)."""
    from pytest_vmcontainer.host.libvirthost import LibvirtHost

    remote = LibvirtHost.parse("qemu+ssh://ci@kvm1/system")
    vm = _vm(home)
    start = Provision(vm, "e" * 24)
    halted: list[tuple[str, LibvirtHost | None]] = []
    monkeypatch.setattr(Provision, "_fill_cache",
                        lambda self, key, there=None: halted.append((key, there)))
    monkeypatch.setattr(starts, "set_aside_there", lambda vm: None)
    start._cache_there("e" * 24, remote)
    assert halted == [("e" * 24, remote)] and start._background is None
    started: list[tuple[str, Path, LibvirtHost | None]] = []
    monkeypatch.setattr(starts, "set_aside_there", lambda vm: Path("/there/vm.img"))
    monkeypatch.setattr(BackgroundWrite, "__init__",
                        lambda self, vm, key, base, there: started.append((key, base, there)))
    monkeypatch.setattr(BackgroundWrite, "start", lambda self: None)
    start._cache_there("e" * 24, remote)
    assert started == [("e" * 24, Path("/there/vm.img"), remote)]
    assert vm.origin == f"provisioned, caching as {'e' * 12} on kvm1 in the background"
