"""Saved running VMs (``vmsaved``): restored instead of booted, or booted and then saved."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from pytest_vmcontainer.errors import Cancelled, PortInUse, VmcError
from pytest_vmcontainer.host import libvirt, libvirthost, paths, sites, space
from pytest_vmcontainer.runtime.background import run_all
from pytest_vmcontainer.targets import vmcache, vmsaved
from pytest_vmcontainer.targets.vagrant.domain import refresh_pool
from pytest_vmcontainer.targets.vagrant.failures import libvirt_daemon_gone
from pytest_vmcontainer.targets.vagrant.resume import resume_on_overlay
from pytest_vmcontainer.targets.vagrant.starts import (
    FromCache,
    Provision,
    StartPath,
    slot_variant,
    vagrant_up,
)

if TYPE_CHECKING:
    from pytest_vmcontainer.targets.vagrant import VagrantTarget



def start_path(vm: VagrantTarget, cache_key: str, entry: vmcache.Entry | None) -> StartPath:
    """The start by the VM cache: restored or booted from ``entry``, else provisioned and
    cached. On libvirt on another machine, an entry written there is used there first; else
    this host's entry's disk is copied there (once); else the VM is provisioned there and
    its entry written there (``vmcache.there_key``), its disk left in the pool there. From
    an entry, a VM there is restored or booted as here: its saved states are there
    (``vmsaved``)."""
    if libvirt.on_this_host():
        if entry is None:
            return Provision(vm, cache_key)
        return Restore(vm, entry) if vm.spec.vm_restore else FromCache(vm, entry)
    written_there = vmcache.there_key(cache_key, sites.vm_place().machine)
    there = entry if entry is not None and entry.there else \
        vmcache.lookup(written_there, vm.progress.say)
    booted = there or entry
    if booted is None:
        return Provision(vm, written_there)
    return Restore(vm, booted) if vm.spec.vm_restore else FromCache(vm, booted)


class Restore(FromCache):
    """From the cache, through a saved slot of its variant: restored when the slot holds a
    saved VM, else booted and saved into it for later runs. The slot's lock is held until
    the domain is gone (the sweep of dead runs may take the slot from there)."""

    def __init__(self, vm: VagrantTarget, entry: vmcache.Entry) -> None:
        super().__init__(vm, entry)
        self._slot_lock: vmsaved.SlotLock | None = None

    def space_needed(self) -> list[space.Need]:
        if not libvirt.on_this_host():
            return []  # the state and the disk are written there
        return [space.Need(paths.home(), space.SAVED_VM, "a saved VM")]

    def hold(self) -> None:
        super().hold()
        vm = self.vm
        taken = vmsaved.take(self.cached.key, slot_variant(vm), vm.progress.say,
                             libvirthost.current())
        if taken is not None:
            self.slot, self._slot_lock = taken

    def run(self) -> None:
        # take() emptied a damaged slot, and this run's lock has kept writers out since: a
        # committed slot is whole (measuring its seal again would cost a round trip there).
        if self.slot is not None and self.slot.committed() and self.restored():
            return
        super().run()
        if self.slot is not None:
            self._save_into_slot(self.slot)

    def release(self) -> None:
        if self._slot_lock is not None:
            self._slot_lock.release()
            self._slot_lock = None
        super().release()

    def _save_into_slot(self, slot: vmsaved.Slot) -> None:
        """``virsh save`` of the VM just booted and ready, its disk kept beside the state, then
        restored at once: this run goes on as later runs will start."""
        vm = self.vm
        domain = vm.domain
        with vm.progress.step(f"vm: saving the ready VM for later runs ({slot.id})"):
            ssh_config = vm.ssh_config_path.read_text() if vm.ssh_config_path.exists() \
                else vm.vagrant.ssh_config()
            disk = domain.disk_path()
            slot.begin()
            failure = self._write_state(slot)
            if failure is not None:  # the VM runs on, booted; the slot stays empty
                slot.forget()
                vm.progress.say(f"vm: not saved ({failure}); it runs on as booted")
                return
            vm.drop_host()
            # The state file holds the definition; the restore defines the domain again.
            domain.undefine_keeping_disk()
            slot.keep_disk(disk)  # a rename where the pool and the slot share a disk
            refresh_pool()
            slot.ssh_config.write_text(ssh_config)
            slot.commit({"domain": domain.name, "session": vm.spec.session_id,
                         "vagrantfile": str(vm.spec.vagrantfile)})
        if not self.restored():  # the state just saved does not restore here: boot again
            vagrant_up(vm, "vagrant up --no-provision (the restore failed)", provision=False)
            vm.wait_ready()

    def _write_state(self, slot: vmsaved.Slot) -> str | None:
        """``virsh save`` into the slot: None, or why it failed, in one line."""
        domain = self.vm.domain
        try:
            # The definition Vagrant made: the restored VM is defined with it, so that a
            # later vagrant up (a warm boot) finds the domain as it made it.
            slot.definition.write_text(domain.definition())
            saved = domain.save(slot.state)
        except OSError as error:  # the definition's write
            output = str(error)
        else:
            if saved.returncode == 0:
                return None
            output = "; ".join(line.strip() for line in saved.stderr.splitlines() if line.strip())
        if not space.filled_up(output) or slot.there is not None:  # there: virsh's own words
            return output
        slot.forget()  # before the free space is told
        return (f"{space.filled_up_cause(slot.directory, 'a saved VM', space.SAVED_VM)}: "
                f"{space.FILLED_UP_REMEDY}")

    def restored(self) -> bool:
        """Restore the slot's saved VM; False (nothing left of the attempt, the slot emptied)
        when libvirt refuses, so the caller boots instead."""
        vm, slot = self.vm, self.slot
        assert slot is not None
        try:
            with vm.progress.step(f"vm: restoring the saved VM ({slot.id}, "
                                  f"{vm.mode.upper()})"):
                self._restore_domain(slot)
            # About a second each under TCG, side by side: the guest agent sets the clock and
            # stirs the kernel's pool while SSH proves the VM serves (a saved state that
            # does not serve is not trusted again).
            stirred = run_all([vm.wait_ready, lambda: vm.domain.continue_saved_boot(
                secrets.token_bytes(64))], name="restored")[1]
        except Cancelled:
            raise  # teardown stopped the restore: the saved state is fine
        except PortInUse:
            vm.remove_machine()
            raise  # another program took a forward's port: the saved state is fine too
        except VmcError as error:
            gone = libvirt_daemon_gone(vm, f"the restore of the saved VM {slot.id}", error)
            if gone is not None:  # not the saved VM's fault: it stays for the next run
                raise gone from None
            vm.progress.say(f"vm: restore failed, booting instead: {error}")
            vm.remove_machine()
            slot.forget()
            return False
        vm.origin = "restored from the VM cache"
        if not stirred:  # the agent refused the write
            vm.run(f"echo {secrets.token_hex(64)} > /dev/urandom")
        return True

    def _restore_domain(self, slot: vmsaved.Slot) -> None:
        vm = self.vm
        vm.remove_machine()  # what a crashed run of this slot left
        boxes = resume_on_overlay(vm, slot.state, slot.disk, slot.definition.read_text())
        if slot.frozen():  # saved right after provisioning (``starts.Provision``)
            vm.domain.thaw()
        self._adopt_domain(slot.ssh_config, boxes)
