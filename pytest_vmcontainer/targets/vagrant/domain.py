"""The VM's libvirt domain: every ``virsh`` call the VM backend makes, in one place."""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_vmcontainer.errors import PortInUse, TargetError, WaitTimeout
from pytest_vmcontainer.host import libvirt, libvirthost, paths, sshlogin
from pytest_vmcontainer.runtime import procs
from pytest_vmcontainer.runtime.waiting import wait_for
from pytest_vmcontainer.targets import entrywrite, vmcache

if TYPE_CHECKING:
    from pytest_vmcontainer.targets.vagrant.config import MachineConfig

GRACEFUL_HALT_S = 60.0  # vagrant-libvirt's graceful_halt_timeout default


LIBVIRTD_BACK_WAIT = 30.0  # seconds a removal waits for a libvirtd that stopped to answer


def remove_libvirt_leftovers(prefix: str) -> list[str]:
    """Destroy domains and delete volumes whose names start with ``prefix``; returns their names.

    A libvirtd that stopped under the run (a restart) is waited for once: a supervisor or
    the next setup starts it within seconds. If it does not answer, this raises: a
    teardown then keeps the session's directory, and the next run's sweep removes the
    rest (a removal that failed quietly would leave the domain to no one)."""
    if not libvirt.answers():
        try:
            wait_for(libvirt.answers, timeout=LIBVIRTD_BACK_WAIT, interval=0.5,
                     what="libvirtd to answer again")
        except WaitTimeout:
            raise TargetError(f"libvirtd did not answer within {LIBVIRTD_BACK_WAIT:.0f}s, so "
                              f"the domain and volumes named {prefix}* could not be removed",
                              "start libvirtd (python -m pytest_vmcontainer setup); the next "
                              "run's sweep removes them") from None
    removed = []
    for domain in (d for d in libvirt.domain_names() if d.startswith(prefix)):
        libvirt.run_virsh("destroy", domain)
        libvirt.run_virsh("undefine", domain, "--nvram", "--managed-save", "--snapshots-metadata")
        removed.append(domain)
    for volume in libvirt.pool_volumes():
        if volume.startswith(prefix):
            libvirt.delete_volume(volume)
            removed.append(volume)
    return removed


def libvirt_names(prefix: str) -> list[str]:
    """Domains and pool volumes whose names start with ``prefix`` (for leak checks)."""
    return [name for name in libvirt.domain_names() + libvirt.pool_volumes()
            if name.startswith(prefix)]


def refresh_pool() -> None:
    libvirt.run_virsh("pool-refresh", libvirt.pool_name())


def pool_volume(name: str) -> Path:
    return libvirt.pool_path() / name


@dataclass(frozen=True)
class Box:
    """The box a VM boots, as vagrant-libvirt names its pool volume: the machine's box, or
    the VM cache entry it starts from (a box of version 0)."""

    name: str
    version: str
    image: Path
    there: bool = False  # its disk is already in the pool there (``vmcache.Entry.there``)

    @property
    def volume_name(self) -> str:
        return libvirt.box_volume_name(self.name, self.version, self.image)


def booted_box(machine: MachineConfig | None, started_from: vmcache.Entry | None) -> Box | None:
    """The box the VM boots; None for a box without a single ``box.img`` (left to
    vagrant-libvirt)."""
    if started_from is not None:
        return Box(started_from.box_name, "0", started_from.directory / "box.img",
                   there=started_from.there is not None)
    if machine is None or not machine.box or not machine.box_directory:
        return None
    image = Path(machine.box_directory) / "box.img"
    return Box(machine.box, image.parent.parent.name, image) if image.is_file() else None


def box_in_pool(box: Box | None) -> None:
    """The box as its pool volume, whole, before ``vagrant up`` looks for it
    (``libvirt.box_in_pool``: runs that start together from a box the pool lacks would each
    upload it, and one could boot over the other's half-written volume). On libvirt on
    another machine, the volume is copied there, and so are the kernel and initrd the box
    boots directly (``boot_files_there``)."""
    if box is None:
        return
    remote = libvirthost.current()
    if remote is None:
        libvirt.box_in_pool(box.name, box.version, box.image)
        return
    remove_copies_of_gone_boxes(remote)
    for here, there in boot_files_there(box).values():
        remote.put_file(here, there)
    if not box.there and remote.put_file(box.image, str(libvirt.pool_path() / box.volume_name)):
        refresh_pool()


BOX_VOLUME_MARK = "_vagrant_box_image_"  # in every box volume's name (libvirt.box_volume_name)


def box_volumes_here() -> set[str]:
    """The pool volume names of the boxes this home's Vagrant holds: the bases, the users'
    boxes and the VM cache's entries (boxes of version 0), as they are now."""
    return {libvirt.box_volume_name(image.parents[2].name.replace("-VAGRANTSLASH-", "/"),
                                    image.parents[1].name, image)
            for image in (paths.vagrant_home() / "boxes").glob("*/*/libvirt/box.img")}


def remove_copies_of_gone_boxes(remote: libvirthost.LibvirtHost) -> list[str]:
    """On libvirt on another machine: delete the copies there (the pool volume and the boot
    files) of the boxes this host no longer has, as a box rebuilt or a VM cache entry
    evicted or found damaged leaves them; returns the volumes deleted. Without this, every
    cache entry a remote VM booted would stay there for good. The pool there is this
    machine's home's own (``libvirt.pool_name``): no other runner boots from these."""
    keep = box_volumes_here()
    refresh_pool()  # libvirt lists what it made, or found at its last scan of the pool
    gone = [volume for volume in libvirt.pool_volumes()
            if BOX_VOLUME_MARK in volume and volume not in keep]
    for volume in gone:
        libvirt.delete_volume(volume)
    stems = {volume.removesuffix(".img") for volume in keep}
    boot = f"{libvirt.pool_path()}-boot"
    listed = remote.ssh(f"ls -1A {shlex.quote(boot)} 2>/dev/null")
    stale = [name for name in listed.stdout.split() if name not in stems and
             not (name.startswith(entrywrite.STAGED_THERE) and vmcache.writer_lives(name))]
    if stale:
        remote.ssh("rm -rf -- " + " ".join(shlex.quote(f"{boot}/{name}") for name in stale))
    return gone


def remove_pool_there(remote: libvirthost.LibvirtHost) -> list[str]:
    """``clean --caches`` on libvirt on another machine, with no live run of this home: this
    home's pool there, whole (the copies of its boxes, the disks of VM cache entries written
    there, the boot files beside it), so that a runner retired for good leaves nothing
    there. What a later run needs there is put there again."""
    name = libvirt.pool_name()
    if libvirt.run_virsh("pool-info", name).returncode != 0:
        return []  # no run of this home went there, or it was removed before
    pool, volumes = libvirt.pool_path(), libvirt.pool_volumes()
    libvirt.remove_storage_pool()
    removed = remote.ssh(f"rm -rf -- {shlex.quote(str(pool))} {shlex.quote(f'{pool}-boot')} "
                         f"{shlex.quote(f'{pool}-saved')}")  # libvirt.saved_root_there
    if removed.returncode != 0:
        raise TargetError(f"could not remove {pool} on {remote.hostname} "
                          f"({removed.stderr.strip()})",
                          f"remove it there by hand ({remote.shown})")
    libvirt.forget_pool_path()
    count = f"{len(volumes)} volume{'' if len(volumes) == 1 else 's'}"
    return [f"libvirt pool {name} on {remote.hostname} ({count})"]


def boot_files_there(box: Box | None) -> dict[str, tuple[Path, str]]:
    """On libvirt on another machine, the kernel and initrd of a box that boots them
    directly, by the plumbing's setting ("kernel", "initrd"): (the file here, its path
    there). There they sit beside the pool, in a directory named after the box's volume, so
    that every session boots one copy per box build: the box's Vagrantfile names them under
    the session's own Vagrant home, a path of this host."""
    if box is None or libvirthost.current() is None:
        return {}
    there = f"{libvirt.pool_path()}-boot/{box.volume_name.removesuffix('.img')}"
    return {setting: (box.image.parent / name, f"{there}/{name}")
            for setting, name in (("kernel", "vmlinuz"), ("initrd", "initrd.img"))
            if (box.image.parent / name).is_file()}


def _overlay_argv(backing: Path, overlay: Path) -> list[str]:
    return ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(backing),
            str(overlay)]


def overlay_file(backing: Path, overlay: Path, cancel: threading.Event | None = None) -> None:
    """A new, empty copy-on-write disk at ``overlay`` over ``backing``; TargetError when
    qemu-img fails or ``cancel`` stopped it."""
    if procs.run(_overlay_argv(backing, overlay), cancel) != 0:
        raise TargetError(f"qemu-img could not make an overlay of {backing}",
                          f"check the free space in {overlay.parent}")


def _failed(command: str, stderr: str, remedy: str) -> TargetError:
    """A failed virsh command; PortInUse when QEMU could not bind a forward's host port."""
    if "Could not set up host forwarding rule" in stderr:
        return PortInUse(detail=stderr.strip())
    return TargetError(f"virsh {command} failed: {stderr.strip()}", remedy)


def saved_definition(state: Path) -> str:
    """The domain definition a ``virsh save`` state file holds."""
    result = libvirt.run_virsh("save-image-dumpxml", "--security-info", str(state))
    if result.returncode != 0:
        raise _failed("save-image-dumpxml", result.stderr,
                      "python -m pytest_vmcontainer clean --caches removes saved VMs")
    return result.stdout


@dataclass(frozen=True)
class LibvirtDomain:
    """One domain, by name; ``log_path`` is the target's log, named in errors."""

    name: str
    log_path: Path

    def state(self) -> str:
        """libvirt's word for the domain's state ("running", "shut off"); "" when it is gone."""
        return libvirt.run_virsh("domstate", self.name).stdout.strip()

    def halt(self) -> None:
        """A graceful shutdown (the guest agent or ACPI), then a power-off after
        vagrant-libvirt's timeout."""
        libvirt.run_virsh("shutdown", self.name)
        try:
            wait_for(lambda: self.state() == "shut off", timeout=GRACEFUL_HALT_S,
                     what="the guest's shutdown", interval=0.2)
        except WaitTimeout:
            libvirt.run_virsh("destroy", self.name)

    def start(self) -> None:
        self._checked("start", self.name)

    def define(self, xml: Path) -> None:
        self._checked("define", str(xml))

    def _checked(self, *args: str) -> None:
        result = libvirt.run_virsh(*args)
        if result.returncode != 0:
            raise _failed(args[0], result.stderr, f"see /var/log/libvirt/qemu/{self.name}.log")

    def restore(self, state: Path, running: Path, defined: Path) -> None:
        """Restore a saved state with the ``running`` definition, then define ``defined``
        persistently (a halt keeps it)."""
        for args in (("restore", str(state), "--xml", str(running)),
                     ("define", str(defined))):
            result = libvirt.run_virsh(*args)
            if result.returncode != 0:
                raise _failed(args[0], result.stderr,
                              "python -m pytest_vmcontainer clean --caches removes saved VMs")

    def freeze(self) -> bool:
        """Freeze the guest's file systems through the agent; False when it cannot (no
        agent)."""
        return libvirt.run_virsh("domfsfreeze", self.name).returncode == 0

    def thaw(self) -> None:
        """Thaw what ``freeze`` froze, through the agent (retried: right after a restore it
        may not answer yet); until then anything in the guest that writes waits."""
        wait_for(lambda: libvirt.run_virsh("domfsthaw", self.name).returncode == 0,
                 timeout=30, what="the guest's file systems thawed through the agent")

    def wait_clock_set(self) -> None:
        wait_for(lambda: libvirt.run_virsh("domtime", self.name, "--now").returncode == 0,
                 timeout=30, what="the guest clock set through the agent")

    def continue_saved_boot(self, randomness: bytes) -> bool:
        """What a VM restored from a saved state needs before its tests, through the guest
        agent: the clock set, and ``randomness`` mixed into the kernel's pool (every restore
        continues one saved boot). False when the agent refuses file writes (some
        distributions block ``guest-file-*``): the caller stirs the pool through SSH."""
        self.wait_clock_set()
        handle = self._agent("guest-file-open", path="/dev/urandom", mode="w")
        if handle is None:
            return False
        try:
            written = self._agent("guest-file-write", handle=handle,
                                  **{"buf-b64": base64.b64encode(randomness).decode()})
        finally:
            self._agent("guest-file-close", handle=handle)
        return isinstance(written, dict) and written.get("count") == len(randomness)

    def _agent(self, command: str, **arguments: object) -> Any:
        """One guest agent command's answer, or None when it fails."""
        result = libvirt.run_virsh("qemu-agent-command", self.name,
                                   json.dumps({"execute": command, "arguments": arguments}))
        if result.returncode != 0:
            return None
        try:
            return json.loads(result.stdout).get("return")
        except ValueError:
            return None

    def save(self, state: Path) -> subprocess.CompletedProcess[str]:
        return libvirt.run_virsh("save", self.name, str(state))

    def undefine_keeping_disk(self) -> None:
        libvirt.run_virsh("undefine", self.name, "--nvram")

    def uuid(self) -> str:
        return libvirt.run_virsh("domuuid", self.name).stdout.strip()

    def definition(self) -> str:
        """The domain's persistent definition as libvirt holds it (what a later VM starts
        from: ``domainxml``)."""
        return libvirt.run_virsh("dumpxml", "--inactive", "--security-info", self.name).stdout

    def disk_cache_mode(self) -> str | None:
        """The cache mode libvirt runs the disk with (read back from the domain: what ran,
        not what was asked for); None when libvirt leaves QEMU's default."""
        from xml.etree import ElementTree

        xml = libvirt.run_virsh("dumpxml", self.name).stdout
        if not xml.strip():
            return None
        driver = ElementTree.fromstring(xml).find("./devices/disk[@device='disk']/driver")
        return driver.get("cache") if driver is not None else None

    def disk_path(self) -> Path:
        return Path(self._disk()[1])

    def _disk(self) -> tuple[str, str]:
        """The first disk's (target, source file): ``domblklist --details`` rows are type,
        device, target, source."""
        blocks = libvirt.run_virsh("domblklist", self.name, "--details").stdout
        disks = [line.split()[-2:] for line in blocks.splitlines() if " disk " in f" {line} "]
        if not disks:
            raise TargetError(f"libvirt lists no disk for {self.name}", f"see {self.log_path}")
        target, source = disks[0]
        return target, source

    def continue_on_new_overlay(self) -> tuple[Path | None, str]:
        """The running VM goes on writing to a new overlay in the pool (an external disk-only
        snapshot: a libvirt call, so it works on libvirt on another machine, where no
        ``virsh save`` state may move); returns its former disk, read-only from now on, or
        None and why libvirt refused."""
        target, source = self._disk()
        overlay = libvirt.pool_path() / f"{self.name}-running.qcow2"  # swept with the name
        made = libvirt.run_virsh("snapshot-create-as", self.name, "--disk-only", "--atomic",
                                 "--no-metadata", "--diskspec",
                                 f"{target},snapshot=external,file={overlay}")
        if made.returncode != 0:
            return None, made.stderr.strip()
        refresh_pool()
        return Path(source), ""

    def footprint(self) -> dict[str, int]:
        """``footprint_bytes``: what a flattened copy of the disk needs (``qemu-img measure``),
        the same whichever way the VM started (a resumed VM's chain has one overlay more, a
        new VM's one less); ``allocated_bytes``: what its chain holds on the host now."""
        measured = json.loads(subprocess.run(
            ["qemu-img", "measure", "-U", "--output=json", "-O", "qcow2",
             str(self.disk_path())], capture_output=True, text=True, check=True).stdout)
        return {"footprint_bytes": int(measured["required"]), "allocated_bytes": self.disk_bytes()}

    def disk_bytes(self) -> int:
        """Disk bytes allocated to the volume and the backing chain under it (qemu-img)."""
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--backing-chain",
                                          "--output=json", str(self.disk_path())],
                                         capture_output=True, text=True, check=True).stdout)
        return sum(int(layer["actual-size"]) for layer in info)

    def memory_and_cpus(self) -> tuple[int, int]:
        """(memory MiB, vCPUs) of the running domain."""
        info = libvirt.run_virsh("dominfo", self.name).stdout
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        return int(fields["Max memory"].split()[0]) // 1024, int(fields["CPU(s)"])

    def usage(self) -> tuple[int, float]:
        """The QEMU process's RSS and CPU time."""
        import psutil

        pid = int(Path(f"/run/libvirt/qemu/{self.name}.pid").read_text().strip())
        process = psutil.Process(pid)
        cpu = process.cpu_times()
        return int(process.memory_info().rss), cpu.user + cpu.system

    def new_overlay(self, backing: Path, cancelled: threading.Event) -> Path:
        """A new copy-on-write disk over ``backing``, in the pool, named after this domain
        (made there, over SSH, on libvirt on another machine)."""
        overlay = libvirt.pool_path() / f"{self.name}.img"
        remote = libvirthost.current()
        if remote is None:
            overlay_file(backing, overlay, cancelled)
        else:
            made = remote.ssh(shlex.join(_overlay_argv(backing, overlay)))
            if made.returncode != 0:
                raise TargetError(f"qemu-img on {remote.hostname} could not make an overlay "
                                  f"of {backing} ({sshlogin.last_line(made.stderr, 1)})",
                                  f"check the free space in {overlay.parent} there")
        refresh_pool()
        return overlay
