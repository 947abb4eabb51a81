"""A VM cache entry written in the background, from a VM saved right after provisioning.

The provisioned VM is synced, its file systems frozen through the guest agent, and saved
(``virsh save``, 2-3 s); its disk becomes the read-only base of a new overlay, and the VM is
restored on that overlay at once, so the tests start without waiting for the cache. Meanwhile
the frozen disk is flattened into the entry (``qemu-img convert``). Such an entry has not yet
booted: it is committed as unproven, and the first VM that boots from it proves it
(``FromCache``), or removes it if it does not come up.

On libvirt on another machine the VM goes on running on a new overlay made by a disk-only
snapshot instead (``set_aside_there``): a libvirt call, with no state file to write and move
there. Its former disk is flattened there (``entrywrite.Writer._add_disk_there``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vmcontainer.errors import Cancelled
from pytest_vmcontainer.runtime import signals
from pytest_vmcontainer.targets import entrywrite, vmcache
from pytest_vmcontainer.targets.vagrant.domain import refresh_pool
from pytest_vmcontainer.targets.vagrant.resume import resume_on_overlay

if TYPE_CHECKING:
    from pytest_vmcontainer.host.libvirthost import LibvirtHost
    from pytest_vmcontainer.targets.vagrant import VagrantTarget


def source_box(vm: VagrantTarget) -> Path | None:
    """The box directory the VM was made from: its other files go into the entry."""
    return Path(vm.machine.box_directory) if vm.machine and vm.machine.box_directory else None


def description(vm: VagrantTarget, proven: bool) -> dict[str, object]:
    """What an entry records of the run that wrote it."""
    return {"box": vm.machine.box if vm.machine else None, "proven": proven,
            "vagrantfile": str(vm.spec.vagrantfile), "session": vm.spec.session_id}


@dataclass(frozen=True)
class SavedAfterProvisioning:
    """The provisioned VM's disk, set aside as the base of the overlay it runs on, and the
    state saved with it (kept only when asked for: ``starts.Provision`` keeps it for later
    runs), and whether the guest's file systems were frozen when it was saved."""

    base: Path
    state: Path | None
    frozen: bool


def save_and_continue_on_overlay(vm: VagrantTarget,
                                 keep_state: bool) -> SavedAfterProvisioning | None:
    """Save the provisioned VM, move its disk aside as a base, restore the VM on an overlay of
    it; returns the base (frozen from now on), or None when libvirt refused the save (the VM
    then runs on as it was)."""
    domain = vm.domain
    disk = domain.disk_path()
    definition = domain.definition()
    vm.run("sync")
    frozen = domain.freeze()
    state = vm.spec.workdir / "provisioned.sav"
    saved = domain.save(state)
    if saved.returncode != 0:
        if frozen:
            domain.thaw()
        vm.progress.say(f"vm: not saved ({saved.stderr.strip()}); caching after a halt instead")
        return None
    vm.drop_host()
    base = disk.with_name(f"{domain.name}-provisioned.qcow2")  # swept with the session's name
    disk.rename(base)
    refresh_pool()
    resume_on_overlay(vm, state, base, definition)
    if not keep_state:
        state.unlink()
    if frozen:
        domain.thaw()
    domain.wait_clock_set()
    vm.wait_ready()
    return SavedAfterProvisioning(base, state if keep_state else None, frozen)


def set_aside_there(vm: VagrantTarget) -> Path | None:
    """On libvirt on another machine: the provisioned VM goes on, running, on a new overlay,
    its file systems frozen through the guest agent meanwhile; returns its former disk (there)
    to flatten there while the tests run, or None when libvirt refused (the VM runs on as it
    was)."""
    domain = vm.domain
    vm.run("sync")
    frozen = domain.freeze()
    try:
        base, refused = domain.continue_on_new_overlay()
    finally:
        if frozen:
            domain.thaw()
    if base is None:
        vm.progress.say(f"vm: no disk snapshot there ({refused}); caching after a halt instead")
    return base


class BackgroundWrite:
    """Flattens ``base`` into the entry of ``cache_key`` in a thread (on ``remote``, there);
    ``finish`` waits for it (or, after Ctrl-C or SIGTERM, cancels it) and says how it
    ended."""

    def __init__(self, vm: VagrantTarget, cache_key: str, base: Path,
                 remote: LibvirtHost | None = None) -> None:
        self.vm, self.base, self.remote = vm, base, remote
        self.writer = entrywrite.Writer(cache_key, source_box(vm), vm.log_path, remote)
        self.cancel = threading.Event()
        self.entry: vmcache.Entry | None = None
        self.error: str | None = None
        self._boot_files = (vm.domain.definition(), vm.ssh_config_path.read_text())
        self._machine_key = vm.inserted_key()
        self._thread = threading.Thread(target=self._write, name="vm-cache-write", daemon=True)

    def start(self) -> None:
        self.writer.__enter__()
        self._thread.start()

    def _write(self) -> None:
        vm = self.vm
        try:
            self.writer.add_disk(self.base, self.cancel)
            self.writer.add_box_files(machine_key=self._machine_key)
            self.writer.add_boot_files(*self._boot_files)
            if self.cancel.is_set():  # the run was interrupted while the disk was copied
                raise Cancelled("the VM cache write was cancelled")
            self.entry = self.writer.commit(description(vm, proven=False),
                                            vm.spec.vm_cache_bytes)
        except Exception as error:  # any failure: reported by the run, the entry not written
            self.error = str(error) or type(error).__name__
        finally:
            self.writer.discard()  # nothing after a commit: the entry was renamed away

    def finish(self) -> vmcache.Entry | None:
        """Wait for the write (a Ctrl-C or SIGTERM cancels it: teardown then stops its
        qemu-img, and the half-written entry goes)."""
        while self._thread.is_alive():
            if signals.INTERRUPTED.is_set():
                self.cancel.set()
                return None
            self._thread.join(0.5)
        return self.entry

    def abandon(self) -> None:
        """After teardown stopped its process: let the thread end and its partial go."""
        self.cancel.set()
        self._thread.join(30)
        self.writer.discard()
