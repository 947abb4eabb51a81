"""How a VM comes to run: one start path per way, each holding its own locks and writers.

``VagrantTarget`` picks one when it learns whether the VM cache holds its key (``prepare``),
then ``up`` runs it: ``hold`` before the target's state is saved, ``run`` to bring the VM up
and ready; ``destroy`` calls ``release``. ``restore.Restore`` adds the saved running VMs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pytest_vmcontainer.errors import Cancelled, TargetError, VmcError, WaitTimeout
from pytest_vmcontainer.host import libvirt, libvirthost, paths, space
from pytest_vmcontainer.runtime.waiting import ssh_banner, wait_for
from pytest_vmcontainer.targets import domainxml, entrywrite, vmcache, vmsaved
from pytest_vmcontainer.targets.vagrant.cachewrite import (
    BackgroundWrite,
    SavedAfterProvisioning,
    description,
    save_and_continue_on_overlay,
    set_aside_there,
    source_box,
)
from pytest_vmcontainer.targets.vagrant.domain import (
    Box,
    booted_box,
    box_in_pool,
    overlay_file,
    pool_volume,
)
from pytest_vmcontainer.targets.vagrant.environment import vagrant_home
from pytest_vmcontainer.targets.vagrant.failures import boot_timeout, explain_up_failure

if TYPE_CHECKING:
    from pytest_vmcontainer.targets.vagrant import VagrantTarget


DOMAIN_CHECK_S = 5.0  # how often a boot that has not answered yet asks libvirt for its domain
# Lines of `vagrant up` worth showing as progress (the rest goes to the log).
_PROGRESS_LINE = re.compile(r"^==> \w+: (Creating|Starting|Waiting|Machine booted|Running provis|"
                            r"Halting|Destroying|Removing)")


def vagrant_up(vm: VagrantTarget, title: str, provision: bool) -> None:
    """``vagrant up`` (``provision``: with the provisioners), its progress lines shown; the
    box first goes whole into the pool (``domain.box_in_pool``)."""
    vm.start_path.box_in_pool()
    with vm.progress.step(f"vm: {title} ({vm.mode.upper()})") as note:
        try:
            for line in vm.vagrant.up(provision=provision, stream_output=True):
                if _PROGRESS_LINE.match(line):
                    note(line.split(": ", 1)[1].strip())
                else:
                    vm.progress.detail(line)
        except subprocess.CalledProcessError:
            raise explain_up_failure(vm) from None


def boot_defined(vm: VagrantTarget) -> None:
    """Start the defined, shut-off domain; return once its SSH server answers. A domain that
    stops, or goes, meanwhile fails the start at once instead of at the boot timeout."""
    vm.check_cancelled()
    vm.domain.start()
    vm.memory_lazy = False
    next_check = time.monotonic() + DOMAIN_CHECK_S

    def answers() -> bool:
        nonlocal next_check
        vm.check_cancelled()
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + DOMAIN_CHECK_S
            stopped = domain_stopped(vm.domain.name)
            if stopped:
                raise TargetError(
                    f"the VM's domain {vm.domain.name} {stopped} while it booted",
                    f"see /var/log/libvirt/qemu/{vm.domain.name}.log; if another program "
                    "destroyed it, run again")
        return ssh_banner(vm.ssh_port)()

    try:
        wait_for(answers, timeout=vm.spec.boot_timeout, what="SSH", interval=0.2)
    except WaitTimeout:
        raise boot_timeout(vm) from None


def domain_stopped(name: str) -> str:
    """How the domain stopped ("was shut off", "crashed", "is gone"), or "" while it runs,
    or while libvirt cannot say (a restarting libvirtd is not the domain's end)."""
    result = libvirt.run_virsh("domstate", name)
    state = result.stdout.strip()
    if result.returncode != 0:
        return "is gone" if "Domain not found" in result.stderr or \
            "failed to get domain" in result.stderr else ""
    return {"shut off": "was shut off", "crashed": "crashed"}.get(state, "")


def slot_variant(vm: VagrantTarget) -> str:
    """The machine a saved state restores into (forwarded guest ports, disk cache mode,
    accelerator): ``vmsaved.slot_ids`` keeps each variant's slots apart."""
    return (f"ports={sorted({22, *vm.spec.guest_ports})} cache={vm.spec.disk_cache} "
            f"driver={vm.accel.libvirt_driver}")


def booted_for_memory(vm: VagrantTarget) -> str:
    """How the VM whose memory is measured started. A VM resumed from a saved state is halted
    and started first: its QEMU maps the guest's memory only as the guest touches it again
    (one host showed 423 MB of RSS restored, 1,528 MB booted), so the figure would depend on
    the start path."""
    if not vm.memory_lazy:
        return "booted"
    vm.stop()
    vm.start()
    vm.memory_lazy = False
    return ("booted for this measurement (it had resumed from a saved state, whose QEMU maps "
            "the guest's memory lazily)")


class StartPath:
    """What every start path answers; alone, nothing is held."""

    def __init__(self, vm: VagrantTarget) -> None:
        self.vm = vm
        self.entry: vmcache.Entry | None = None  # the cache entry of this VM's provisioned disk
        self.started_from: vmcache.Entry | None = None  # set when this VM starts from it
        # A saved running VM this one restores from: libvirt restores it only under its name.
        self.slot: vmsaved.Slot | None = None
        self._box_placed: Box | None = None

    def hold(self) -> None:
        """Take what the start needs, before the target's state is saved."""

    def box_in_pool(self) -> None:
        """The box this VM boots, whole in the pool (``domain.box_in_pool``), once per start:
        on libvirt on another machine each check of the copy there costs SSH round trips."""
        box = booted_box(self.vm.machine, self.started_from)
        if box is not None and box != self._box_placed:
            box_in_pool(box)
            self._box_placed = box

    def run(self) -> None:
        raise NotImplementedError

    def space_needed(self) -> list[space.Need]:
        """What this start will write to disk, checked before it begins."""
        return []

    def release(self) -> None:
        """Give back what ``hold`` and ``run`` took (after the domain is removed)."""

    def settle(self) -> None:
        """Finish what ``run`` left running in the background (before teardown)."""


class Provision(StartPath):
    """``vagrant up`` with the provisioners; with a cache key, the provisioned disk is then
    written into the VM cache. With saved VMs on, the VM runs under the first free slot of
    its future entry (``vmsaved``): the state saved right after provisioning is kept there,
    so that the next run restores it in seconds instead of booting from the entry."""

    def __init__(self, vm: VagrantTarget, cache_key: str | None) -> None:
        super().__init__(vm)
        self.cache_key = cache_key  # None: the VM cache is off for this target
        self._writer: entrywrite.Writer | None = None
        self._background: BackgroundWrite | None = None  # the entry, written while tests run
        self._abandoned: BackgroundWrite | None = None  # a settled write, cleaned at release
        self._slot_lock: vmsaved.SlotLock | None = None
        self._saved: SavedAfterProvisioning | None = None  # its state goes to the slot

    def space_needed(self) -> list[space.Need]:
        if not libvirt.on_this_host():
            return []  # the disk and the entry's disk are written there
        what = "provisioning and the VM cache entry" if self.cache_key else "provisioning"
        needs = [space.Need(paths.home(), space.PROVISION_AND_CACHE, what)]
        if self.cache_key and self.vm.spec.vm_restore:
            needs.append(space.Need(paths.home(), space.SAVED_VM, "a saved VM"))
        return needs

    def hold(self) -> None:
        vm = self.vm
        if self.cache_key is None or not vm.spec.vm_restore or not libvirt.on_this_host():
            return
        taken = vmsaved.take(self.cache_key, slot_variant(vm), vm.progress.say)
        if taken is not None:  # else (every slot taken) the VM runs under the session's name
            self.slot, self._slot_lock = taken

    def run(self) -> None:
        vm = self.vm
        vm.origin = "provisioned"
        vagrant_up(vm, f"vagrant up {vm.spec.vagrantfile}", provision=True)
        vm.wait_ready()
        if self.cache_key is None:
            return
        remote = libvirthost.current()
        if remote is not None:  # a disk-only snapshot there: no state file to move
            self._cache_there(self.cache_key, remote)
            return
        with vm.progress.step("vm: saving the provisioned VM, to cache its disk while the "
                              "tests run"):
            self._saved = save_and_continue_on_overlay(vm, keep_state=self.slot is not None)
        if self._saved is None:
            self._fill_cache(self.cache_key)
            return
        self._background = BackgroundWrite(vm, self.cache_key, self._saved.base)
        self._background.start()
        vm.origin = f"provisioned, caching as {self.cache_key[:12]} in the background"

    def _cache_there(self, cache_key: str, remote: libvirthost.LibvirtHost) -> None:
        """On libvirt on another machine: the VM goes on on a new overlay while its former
        disk is flattened there in the background (``cachewrite.set_aside_there``); where
        libvirt refuses the snapshot, halt, copy and boot again (``_fill_cache``)."""
        vm = self.vm
        with vm.progress.step(f"vm: setting the provisioned disk aside on {remote.hostname}, "
                              "to cache it there while the tests run"):
            base = set_aside_there(vm)
        if base is None:
            self._fill_cache(cache_key, remote)
            return
        self._background = BackgroundWrite(vm, cache_key, base, remote)
        self._background.start()
        vm.origin = f"provisioned, caching as {cache_key[:12]} on {remote.hostname} in the " \
                    "background"

    def settle(self) -> None:
        """Wait for the background cache write; say how it ended."""
        background, self._background = self._background, None
        if background is None:
            return
        self._abandoned = background
        self.entry = background.finish()
        if self.entry is not None:
            where = f" on {background.remote.hostname}" if background.remote else ""
            self.vm.origin = f"provisioned, then cached as {self.entry.key[:12]}{where}"
            if self._keep_for_later_runs(self.entry):
                self.vm.origin += ", its saved state kept for later runs"
        elif background.error and not background.cancel.is_set():
            self.vm.origin = "provisioned (not cached)"
            self.vm.progress.say(f"vm: the VM cache entry was not written: {background.error}")

    def _keep_for_later_runs(self, entry: vmcache.Entry) -> bool:
        """The state saved right after provisioning, as the entry's first saved VM: a new
        overlay of the entry holds what the saved VM's disk held (the entry is that disk,
        flattened). Only for an entry this run wrote: another run's is another disk."""
        vm, slot, saved = self.vm, self.slot, self._saved
        boot_files = entry.boot_files
        if slot is None or saved is None or saved.state is None or boot_files is None or \
                entry.info().get("session") != vm.spec.session_id:
            return False
        with vm.progress.step(f"vm: keeping the provisioned VM for later runs ({slot.id})"):
            slot.begin()
            try:
                shutil.move(saved.state, slot.state)
                # not cancellable: teardown settles after it set ``vm.cancelled``
                overlay_file(pool_volume(entry.volume_name()), slot.disk)
                shutil.copyfile(boot_files[0], slot.definition)
                shutil.copyfile(boot_files[1], slot.ssh_config)
                slot.commit({"domain": vm.resource_name, "session": vm.spec.session_id,
                             "vagrantfile": str(vm.spec.vagrantfile), "frozen": saved.frozen})
            except (OSError, TargetError) as error:
                slot.forget()
                vm.progress.say(f"vm: the provisioned VM was not kept for later runs ({error})")
                return False
        return True

    def _fill_cache(self, cache_key: str,
                    remote: libvirthost.LibvirtHost | None = None) -> None:
        """Halt, copy the disk into a cache entry, boot again: commit once that boot is ready.
        On libvirt on another machine (``remote``) the disk is flattened there and stays in
        the pool there (``entrywrite.Writer._add_disk_there``)."""
        vm = self.vm
        where = "" if remote is None else f" on {remote.hostname}"
        with entrywrite.Writer(cache_key, source_box(vm), vm.log_path, remote) as writer:
            self._writer = writer  # release removes what an interrupted write left
            vm.stop()
            with vm.progress.step(f"vm: copying the provisioned disk into the VM cache{where}"):
                writer.add_disk(vm.domain.disk_path(), vm.cancelled)
                writer.add_box_files(machine_key=vm.inserted_key())
            vm.start()  # the boot that proves the cached state boots
            writer.add_boot_files(vm.domain.definition(), vm.ssh_config_path.read_text())
            self.entry = writer.commit(description(vm, proven=True), vm.spec.vm_cache_bytes)
        vm.origin = f"provisioned, then cached as {cache_key[:12]}{where}"

    def release(self) -> None:
        if self._background is not None:  # never settled (a failed bring-up): cancel it
            self._background.cancel.set()
            self._abandoned, self._background = self._background, None
        if self._abandoned is not None:
            self._abandoned.abandon()
        if self._writer is not None:
            self._writer.discard()
        if self._saved is not None and self._saved.state is not None:
            self._saved.state.unlink(missing_ok=True)  # not kept: the run ended before
        if self._slot_lock is not None:
            self._slot_lock.release()
            self._slot_lock = None


class FromCache(StartPath):
    """A new VM on the cached provisioned disk, with no provisioning; the entry is held
    (shared) so that eviction leaves it while the VM runs."""

    def __init__(self, vm: VagrantTarget, entry: vmcache.Entry) -> None:
        super().__init__(vm)
        self.entry = self.cached = entry
        self._cache_lock: IO[str] | None = None

    def hold(self) -> None:
        self.started_from = self.cached
        self._cache_lock = vmcache.hold(self.cached)  # eviction leaves it from now on
        self.box_in_pool()  # here a link, there a copy: only once the entry is held
        (self.vm.spec.workdir / "vm-cache-key").write_text(self.cached.key)

    def run(self) -> None:
        self.vm.origin = "from the VM cache"
        self._boot(self.cached)
        if self.cached.proven:
            self.vm.wait_ready()
            return
        try:  # the first boot from an entry written in the background: its proof
            self.vm.wait_ready()
        except Cancelled:
            raise
        except VmcError as error:
            self.release()  # our shared lock: the entry can go
            vmcache.remove_entries({self.cached.key})
            raise TargetError(
                f"the VM did not come up from the VM cache entry {self.cached.key[:12]}, its "
                f"first boot since provisioning ({error.cause}); the entry was removed",
                "run again to provision again; if it fails the same way, a service your "
                "provisioning started may not start at boot") from error
        self.cached.mark_proven()

    def release(self) -> None:
        if self._cache_lock is not None:
            self._cache_lock.close()
            self._cache_lock = None

    def _boot(self, entry: vmcache.Entry) -> None:
        """A new domain from the entry's kept definition, booted through libvirt: what
        ``vagrant up --no-provision`` does, without Ruby, the guest agent's IP round trip or
        the pauses between its SSH attempts. An entry written before definitions were kept
        boots through Vagrant, and so does a VM on libvirt on another machine (the definition
        names this host's paths)."""
        vm = self.vm
        if entry.boot_files is None or not libvirt.on_this_host():
            vagrant_up(vm, f"vagrant up --no-provision (VM cache {entry.key[:12]})",
                       provision=False)
            return
        definition, ssh_config = entry.boot_files
        with vm.progress.step(f"vm: booting from the VM cache {entry.key[:12]} (libvirt, "
                              f"{vm.mode.upper()})"):
            vm.remove_machine()  # what a crashed run under this name left
            domain = vm.domain
            overlay = domain.new_overlay(pool_volume(entry.volume_name()), vm.cancelled)
            boxes = vagrant_home(vm.spec.workdir) / "boxes"
            defined = vm.spec.workdir / "define.xml"
            defined.write_text(domainxml.boot_xml(
                definition.read_text(), domain.name, overlay, vm.forwards(), boxes,
                vm.mac, vm.accel.libvirt_driver, vm.spec.disk_cache))
            domain.define(defined)
            self._adopt_domain(ssh_config, boxes)
            boot_defined(vm)

    def _adopt_domain(self, ssh_config: Path, boxes: Path) -> None:
        """Vagrant's machine directory for a domain the harness defined, so that vagrant
        halt/up/ssh find it, and its SSH config on this VM's port."""
        vm = self.vm
        uuid = vm.domain.uuid()
        machine_dir = vm.dotfile_path / "machines" / vm.machine_name / "libvirt"
        machine_dir.mkdir(parents=True, exist_ok=True)
        (machine_dir / "id").write_text(uuid)
        vm.ssh_config_path.write_text(domainxml.ssh_config_on(
            ssh_config.read_text(), vm.ssh_port, boxes))
