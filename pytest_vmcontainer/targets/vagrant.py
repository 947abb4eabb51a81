"""The VM target: the user's Vagrantfile, driven through python-vagrant (libvirt provider).

Machine state (VAGRANT_DOTFILE_PATH) lives in the target's work directory, not
next to the Vagrantfile, so two sessions on one machine never share a VM. The
plumbing Vagrantfile in the target's own VAGRANT_HOME (``data/vagrant/Vagrantfile``)
reads the loopback forwards, the accelerator and the libvirt names from the
environment set here, so any libvirt box works, not only the ones built here.

Imported only when a VM target is made (see ``targets.make``): python-vagrant,
which prints a warning at import when Vagrant is not installed yet, is not loaded
with the plugin.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

from pytest_vmcontainer.errors import Cancelled, PortInUse, TargetError, VmcError, WaitTimeout
from pytest_vmcontainer.host import accel as accellib
from pytest_vmcontainer.host import bases, libvirt, paths
from pytest_vmcontainer.host.ports import free_port
from pytest_vmcontainer.runtime import procs
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.runtime.timing import Timer, time_once
from pytest_vmcontainer.runtime.waiting import ssh_banner, wait_for
from pytest_vmcontainer.targets import domainxml, vmcache, vmsaved
from pytest_vmcontainer.targets.base import Export, Leftovers, Target, TargetSpec, resource_prefix
from pytest_vmcontainer.targets.vagrantcli import TrackedVagrant, vagrant_env

# Lines of `vagrant up` worth showing as progress (the rest goes to the log).
_PROGRESS_LINE = re.compile(r"^==> \w+: (Creating|Starting|Waiting|Machine booted|Running provis|"
                            r"Halting|Destroying|Removing)")
_RESOURCE_NAME = re.compile(r"^vmc-([0-9a-z]+)-")
PLUMBING = bases.DATA / "vagrant" / "Vagrantfile"
CONFIG_MARKER = "VMC-CONFIG-JSON "  # how the plumbing's vmc-config command marks its line
GRACEFUL_HALT_S = 60.0  # vagrant-libvirt's graceful_halt_timeout default


def remove_libvirt_leftovers(prefix: str) -> list[str]:
    """Destroy domains and delete volumes whose names start with ``prefix``; returns their names."""
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


def _app_boxes(prefix: str) -> list[Path]:
    return sorted((paths.vagrant_home() / "boxes").glob(f"{prefix}*"))


def remove_app_boxes(prefix: str) -> list[str]:
    """Boxes a session added from its own exports (named ``vmc-<session>-...``)."""
    removed = []
    for box in _app_boxes(prefix):
        shutil.rmtree(box, ignore_errors=True)
        removed.append(f"box {box.name}")
    return removed


def libvirt_names(prefix: str) -> list[str]:
    """Domains and pool volumes whose names start with ``prefix`` (for leak checks)."""
    return [name for name in libvirt.domain_names() + libvirt.pool_volumes()
            if name.startswith(prefix)]


class LibvirtLeftovers(Leftovers):
    """Domains and volumes named ``vmc-<session>-...``, and boxes added from exports."""

    def by_session(self) -> dict[str, list[str]]:
        if shutil.which("virsh") is None:
            return {}  # libvirt is not installed: no VM of ours can exist
        found: dict[str, list[str]] = {}
        names = [f"libvirt {n}" for n in libvirt_names("vmc-")]
        names += [f"box {box.name}" for box in _app_boxes("vmc-")]
        for name in names:
            match = _RESOURCE_NAME.match(name.split(" ", 1)[1])
            if match:
                found.setdefault(match.group(1), []).append(name)
        return found

    def remove(self, session_id: str) -> list[str]:
        prefix = resource_prefix(session_id)
        removed = [f"libvirt {name}" for name in remove_libvirt_leftovers(prefix)]
        return removed + remove_app_boxes(prefix)


@dataclass(frozen=True)
class MachineConfig:
    """The machine as Vagrant merged the box's, the plumbing's and the project's Vagrantfiles
    (read with ``vagrant vmc-config``, a command the plumbing defines: no Ruby is parsed here)."""

    name: str
    box: str | None
    box_installed: bool
    box_directory: str | None
    project_providers: tuple[str, ...]  # those the project's own Vagrantfile configures
    forwarded_ports: tuple[dict[str, Any], ...]
    provisioners: tuple[dict[str, Any], ...]
    mgmt_attach: bool
    qemu_use_agent: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MachineConfig:
        return cls(str(data["name"]), data.get("box"), bool(data.get("box_installed")),
                   data.get("box_directory"), tuple(data.get("project_providers") or ()),
                   tuple(data.get("forwarded_ports") or ()),
                   tuple(data.get("provisioners") or ()), bool(data.get("mgmt_attach")),
                   bool(data.get("qemu_use_agent")))

    def provisioner_files(self, project: Path) -> list[Path]:
        """Local files and directories the provisioners read (file sources, shell scripts)."""
        found = [project / str(p[key]) for p in self.provisioners for key in ("source", "path")
                 if p.get(key) and "://" not in str(p[key])]
        return [path for path in found if path.exists()]

    @property
    def user_forwards(self) -> list[dict[str, Any]]:
        """The project's forwarded ports (Vagrant's own SSH entry left out), TCP only."""
        return [fp for fp in self.forwarded_ports if fp.get("id") != "ssh"
                and not fp.get("disabled") and fp.get("protocol", "tcp") == "tcp"]

    @property
    def declared_ports(self) -> tuple[int, ...]:
        return tuple(sorted({int(fp["guest"]) for fp in self.user_forwards}))


def _new_mac() -> str:
    """A MAC in QEMU's locally administered 52:54:00 range, one per VM."""
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


class VagrantTarget(Target):
    kind = "vm"
    host_needs = ("libvirt",)

    def __init__(self, spec: TargetSpec, progress: Progress | None = None,
                 accel: accellib.Accel | None = None) -> None:
        super().__init__(spec, progress)
        self.accel = accel or accellib.Accel("tcg", "not probed")
        self.ssh_port = spec.pinned_ports.get(22) or free_port()
        self.mac = _new_mac()
        self.machine: MachineConfig | None = None
        self._vagrant: TrackedVagrant | None = None
        self.exported = False  # an app box was added from this VM (removed at destroy)
        self.cache_key: str | None = None  # None: the VM cache is off for this target
        self.cache_entry: vmcache.Entry | None = None  # the provisioned disk, once cached
        self.started_from: vmcache.Entry | None = None  # set when this VM starts from it
        self._cache_lock: IO[str] | None = None
        self._cache_writer: vmcache.Writer | None = None
        self.slot: vmsaved.Slot | None = None  # the saved running VM this one restores from
        self._slot_lock: vmsaved.SlotLock | None = None

    @property
    def mode(self) -> str:
        return self.accel.mode

    @property
    def mode_reason(self) -> str:
        return self.accel.reason

    @classmethod
    def leftovers(cls) -> Leftovers:
        return LibvirtLeftovers()

    def prepare(self) -> None:
        """Read the merged machine config, check it, build the box if it is one of those built
        here (``bases.LOCAL_BOXES``), then probe KVM or TCG on the box's kernel (or the
        host's: a box that boots through a boot loader carries none beside its disk)."""
        self.machine = self.read_config()
        self._check_config(self.machine)
        local = self.local_box
        if local is not None:
            bases.ensure_box(self.progress, self.spec.rebuild_bases, self.cancelled, local)
        box_dir = Path(self.machine.box_directory or (local or bases.PROJECT_BOX).box_dir())
        self.accel = accellib.detect(accellib.probe_kernel(box_dir / "vmlinuz",
                                                           bases.box_kernel()))
        if self.spec.vm_cache:
            if self.machine.box_directory is None:  # the box was just built: look it up
                self.machine = self.read_config()
            self.cache_key = vmcache.key(
                self.spec.vagrantfile, self.machine.provisioner_files(self.spec.vagrantfile.parent),
                self.spec.provision_inputs, self.machine.box,
                Path(self.machine.box_directory) if self.machine.box_directory else None,
                PLUMBING)
            self.cache_entry = vmcache.lookup(self.cache_key)

    @property
    def local_box(self) -> bases.BoxRecipe | None:
        """The recipe of the machine's box when it is built here, else None."""
        return bases.LOCAL_BOXES.get(self.machine.box or "") if self.machine else None

    def declared_ports(self) -> tuple[int, ...]:
        return self.machine.declared_ports if self.machine else ()

    def read_config(self) -> MachineConfig:
        """``vagrant vmc-config`` in the project: the machine as Vagrant merged it."""
        with self.progress.step(f"vm: reading {self.spec.vagrantfile} (vagrant vmc-config)"):
            reader = TrackedVagrant(self.spec.vagrantfile.parent, self._env(read=True),
                                    self.log_path, self.cancelled)
            try:
                output = reader.run_command(["vmc-config"])
            except subprocess.CalledProcessError:
                tail = self.log_tail(15)
                raise TargetError(f"Vagrant cannot load {self.spec.vagrantfile}",
                                  "fix the Vagrantfile (vagrant validate shows the error); "
                                  f"the log is {self.log_path}", detail=tail) from None
        line = next((x for x in output.splitlines() if x.startswith(CONFIG_MARKER)), None)
        if line is None:
            raise TargetError("vagrant vmc-config printed no machine config",
                              f"see {self.log_path}", detail=output[-2000:])
        machines = json.loads(line[len(CONFIG_MARKER):])
        if len(machines) != 1:
            names = ", ".join(m["name"] for m in machines) or "none"
            raise TargetError(f"{self.spec.vagrantfile} defines {len(machines)} machines "
                              f"({names})", "give pytest-vmcontainer a Vagrantfile with one "
                              "machine (a multi-machine file is not supported yet)")
        return MachineConfig.from_json(machines[0])

    def _check_config(self, machine: MachineConfig) -> None:
        where = self.spec.vagrantfile
        others = [p for p in machine.project_providers if p != "libvirt"]
        if others and "libvirt" not in machine.project_providers:
            raise TargetError(
                f"{where} configures only the {', '.join(others)} provider, not libvirt",
                'pytest-vmcontainer runs VMs with libvirt: add a config.vm.provider "libvirt" '
                "block (memory, cpus) to it")
        if machine.mgmt_attach:
            raise TargetError(f"{where} sets the libvirt option mgmt_attach = true",
                              "remove it: the harness reaches VMs only through 127.0.0.1, "
                              "with no libvirt management network")
        if not machine.qemu_use_agent:
            raise TargetError(f"{where} sets the libvirt option qemu_use_agent = false",
                              "remove it: vagrant-libvirt finds the VM through the guest agent "
                              "when there is no libvirt network")

    @property
    def resource_name(self) -> str:
        """The libvirt domain: vagrant-libvirt names it prefix + machine name."""
        return f"{self.domain_prefix}{self.machine.name if self.machine else 'default'}"

    @property
    def domain_prefix(self) -> str:
        if self.slot is not None:  # libvirt restores a saved VM only under its saved name
            return resource_prefix(self.slot.id)
        suffix = f"{self.spec.name_suffix}-" if self.spec.name_suffix else ""
        return resource_prefix(self.spec.session_id) + suffix

    @property
    def dotfile_path(self) -> Path:
        return self.spec.workdir / ".vagrant"

    @property
    def vagrant(self) -> TrackedVagrant:
        """Vagrant for bring-up commands: refuses to start once teardown cancelled it."""
        if self._vagrant is None:
            self._vagrant = TrackedVagrant(self.spec.vagrantfile.parent, self._env(),
                                           self.log_path, self.cancelled)
        return self._vagrant

    def _vagrant_home(self) -> Path:
        """A VAGRANT_HOME of this target's own, sharing only the boxes, with the plumbing.

        Vagrant processes that share a VAGRANT_HOME touch each other's entries in
        its machine index and fail at random with "the machine is locked" when they
        run at once (density, concurrent sessions); a home per target avoids that.
        Its Vagrantfile is the plumbing (``data/vagrant/Vagrantfile``), which Vagrant
        layers between the box's and the project's.
        """
        home = self.spec.workdir / "vagrant.d"
        boxes = home / "boxes"
        if not boxes.is_symlink():
            home.mkdir(parents=True, exist_ok=True)
            boxes.symlink_to(paths.ensure_dir(paths.vagrant_home() / "boxes"))
        shutil.copyfile(PLUMBING, home / "Vagrantfile")
        return home

    def plumbing(self, read: bool = False) -> dict[str, Any]:
        """What the plumbing Vagrantfile layers around the project's (see its comments)."""
        machine = self.machine
        return {
            "ssh_port": self.ssh_port, "mac": self.mac, "driver": self.accel.libvirt_driver,
            "domain_prefix": self.domain_prefix, "pool": libvirt.pool_name(),
            "boot_timeout": int(self.spec.boot_timeout),
            "forwards": {str(guest): host for guest, host in self.host_ports.items()},
            # The project's own forwards are replaced by the harness's (free ports, no
            # SSH tunnels); a read sees them as declared.
            "disable_forwards": [] if read or machine is None else machine.user_forwards,
            "disk_cache": self.spec.disk_cache,
            # A VM started from the cache: the cached box, and the key Vagrant inserted at
            # the first boot of a box that uses Vagrant's key replacement.
            "box": self.started_from.box_name if self.started_from else None,
            "ssh_key": str(self.started_from.machine_key)
            if self.started_from and self.started_from.machine_key else None,
        }

    def _env(self, read: bool = False) -> dict[str, str]:
        return vagrant_env({
            "VAGRANT_HOME": str(self._vagrant_home()),
            "VAGRANT_VAGRANTFILE": self.spec.vagrantfile.name,
            "VAGRANT_DOTFILE_PATH": str(self.dotfile_path),
            "VMC_PLUMBING": json.dumps(self.plumbing(read)),
            # vagrant package always runs virt-sysprep and virt-sparsify; their libguestfs
            # appliance must not try a KVM that cannot boot a guest (it hangs there).
            **({"LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"} if self.accel.mode == "tcg" else {}),
        })

    # --- lifecycle -------------------------------------------------------------------------

    def _run_streamed(self, title: str, provision: bool) -> None:
        with self.progress.step(f"vm: {title} ({self.mode.upper()})") as note:
            try:
                for line in self.vagrant.up(provision=provision, stream_output=True):
                    if _PROGRESS_LINE.match(line):
                        note(line.split(": ", 1)[1].strip())
                    else:
                        self.progress.detail(line)
            except subprocess.CalledProcessError:
                raise self._explain_failure() from None

    def up(self) -> None:
        """From the VM cache when it has this VM's key (no provisioning); else ``vagrant up``
        with the provisioners, then the provisioned disk goes into the cache."""
        self.host_ports = self.spec.pick_host_ports()
        self._ssh_config.unlink(missing_ok=True)  # a new machine: new ports, maybe a new key
        if self.cache_entry is not None:
            self.started_from = self.cache_entry
            vmcache.prepare_start(self.cache_entry)
            self._cache_lock = vmcache.hold(self.cache_entry)
            (self.spec.workdir / "vm-cache-key").write_text(self.cache_entry.key)
            if self.spec.vm_restore:
                self._take_slot()
        self._vagrant = None  # made again with the forwards just picked
        self.save_state()  # first: a reused VM must come back on the same forwards and MAC
        if self.started_from is not None:
            if self.slot is not None and self.slot.saved() and self._restored():
                return
            self.origin = "from the VM cache"
            self._boot_from_cache(self.started_from)
            self.wait_ready()
            if self.slot is not None:
                self._save_into_slot()
            return
        self.origin = "provisioned"
        self._run_streamed(f"vagrant up {self.spec.vagrantfile}", provision=True)
        self.wait_ready()
        if self.cache_key is not None:
            self._fill_cache(self.cache_key)

    def _fill_cache(self, cache_key: str) -> None:
        """Halt, copy the disk into a cache entry, boot again: commit once that boot is ready."""
        source = Path(self.machine.box_directory) if self.machine and \
            self.machine.box_directory else None
        with vmcache.Writer(cache_key, source, self.log_path) as writer:
            self._cache_writer = writer  # destroy removes what an interrupted write left
            self.stop()
            with self.progress.step("vm: copying the provisioned disk into the VM cache"):
                writer.add_disk(self._disk_path(), self.cancelled)
                writer.add_box_files(machine_key=self._inserted_key())
            self.start()  # the boot that proves the cached state boots
            writer.add_boot_files(self._definition(), self._ssh_config.read_text())
            self.cache_entry = writer.commit({
                "box": self.machine.box if self.machine else None,
                "vagrantfile": str(self.spec.vagrantfile), "session": self.spec.session_id},
                self.spec.vm_cache_bytes)
        self.origin = f"provisioned, then cached as {cache_key[:12]}"

    # --- saved running VMs (vmsaved): restored instead of booted ----------------------------

    def _take_slot(self) -> None:
        assert self.cache_entry is not None
        variant = (f"ports={sorted({22, *self.spec.guest_ports})} cache={self.spec.disk_cache} "
                   f"driver={self.accel.libvirt_driver}")
        taken = vmsaved.take(self.cache_entry.key, variant)
        if taken is not None:
            self.slot, self._slot_lock = taken

    def _forwards(self) -> dict[int, int]:
        return {22: self.ssh_port, **self.host_ports}

    def _save_into_slot(self) -> None:
        """``virsh save`` of the VM just booted and ready, its disk kept beside the state, then
        restored at once: this run goes on as later runs will start."""
        slot = self.slot
        assert slot is not None
        with self.progress.step(f"vm: saving the ready VM for later runs ({slot.id})"):
            ssh_config = self._ssh_config.read_text() if self._ssh_config.exists() \
                else self.vagrant.ssh_config()
            disk = self._disk_path()
            slot.begin()
            # The definition Vagrant made: the restored VM is defined with it, so that a
            # later vagrant up (a warm boot) finds the domain as it made it.
            slot.definition.write_text(self._definition())
            saved = libvirt.run_virsh("save", self.resource_name, str(slot.state))
            if saved.returncode != 0:  # the VM runs on, booted; the slot stays empty
                slot.forget()
                self.progress.say(f"vm: not saved ({saved.stderr.strip()}); it runs on as booted")
                return
            self._host = None
            # The state file holds the definition; the restore defines the domain again.
            libvirt.run_virsh("undefine", self.resource_name, "--nvram")
            shutil.move(disk, slot.disk)  # a rename where the pool and VMC_HOME share a disk
            libvirt.run_virsh("pool-refresh", libvirt.pool_name())
            slot.ssh_config.write_text(ssh_config)
            slot.commit({"domain": self.resource_name, "session": self.spec.session_id,
                         "vagrantfile": str(self.spec.vagrantfile)})
        if not self._restored():  # the state just saved does not restore here: boot again
            self._run_streamed("vagrant up --no-provision (the restore failed)", provision=False)
            self.wait_ready()

    def _restored(self) -> bool:
        """Restore the slot's saved VM; False (nothing left of the attempt, the slot emptied)
        when libvirt refuses, so the caller boots instead."""
        slot = self.slot
        assert slot is not None
        try:
            with self.progress.step(f"vm: restoring the saved VM ({slot.id}, "
                                    f"{self.mode.upper()})"):
                self._restore_domain(slot)
            self.wait_ready()  # a saved state that does not serve is not trusted again
        except Cancelled:
            raise  # teardown stopped the restore: the saved state is fine
        except VmcError as error:
            self.progress.say(f"vm: restore failed, booting instead: {error}")
            self._remove_machine()
            slot.forget()
            return False
        self.origin = "restored from the VM cache"
        # Every restore continues one saved boot: stir the kernel's pool with host randomness.
        self.run(f"echo {secrets.token_hex(64)} > /dev/urandom")
        return True

    def _restore_domain(self, slot: vmsaved.Slot) -> None:
        self._remove_machine()  # what a crashed run of this slot left
        overlay = self._overlay_of(slot.disk)
        saved = libvirt.run_virsh("save-image-dumpxml", "--security-info", str(slot.state))
        running, defined = self.spec.workdir / "restore.xml", self.spec.workdir / "define.xml"
        boxes = self._vagrant_home() / "boxes"
        running.write_text(domainxml.restore_xml(saved.stdout, overlay, self._forwards(), boxes))
        defined.write_text(domainxml.restore_xml(slot.definition.read_text(), overlay,
                                               self._forwards(), boxes))
        for args in (("restore", str(slot.state), "--xml", str(running)),
                     ("define", str(defined))):  # persistent: a halt keeps it
            result = libvirt.run_virsh(*args)
            if result.returncode != 0:
                raise TargetError(f"virsh {args[0]} failed: {result.stderr.strip()}",
                                  "python -m pytest_vmcontainer clean removes saved VMs")
        self._adopt_domain(slot.ssh_config, boxes)
        wait_for(lambda: libvirt.run_virsh("domtime", self.resource_name, "--now")
                 .returncode == 0, timeout=30, what="the guest clock set through the agent")

    # --- VMs started from a kept definition, without Vagrant (domainxml) -------------------

    def _boot_from_cache(self, entry: vmcache.Entry) -> None:
        """A new domain from the entry's kept definition, booted through libvirt: what
        ``vagrant up --no-provision`` does, without Ruby, the guest agent's IP round trip or
        the pauses between its SSH attempts. An entry written before definitions were kept
        boots through Vagrant."""
        if entry.boot_files is None:
            self._run_streamed(f"vagrant up --no-provision (VM cache {entry.key[:12]})",
                               provision=False)
            return
        definition, ssh_config = entry.boot_files
        with self.progress.step(f"vm: booting from the VM cache {entry.key[:12]} (libvirt, "
                                f"{self.mode.upper()})"):
            self._remove_machine()  # what a crashed run under this name left
            overlay = self._overlay_of(libvirt.pool_path() / entry.volume_name())
            boxes = self._vagrant_home() / "boxes"
            defined = self.spec.workdir / "define.xml"
            defined.write_text(domainxml.boot_xml(
                definition.read_text(), self.resource_name, overlay, self._forwards(), boxes,
                self.mac, self.accel.libvirt_driver, self.spec.disk_cache))
            self._virsh("define", str(defined))
            self._adopt_domain(ssh_config, boxes)
            self._boot_defined()

    def _boot_defined(self) -> None:
        """Start the defined, shut-off domain; return once its SSH server answers."""
        self.check_cancelled()
        self._virsh("start", self.resource_name)

        def answers() -> bool:
            self.check_cancelled()
            return ssh_banner(self.ssh_port)()

        try:
            wait_for(answers, timeout=self.spec.boot_timeout, what="SSH", interval=0.2)
        except WaitTimeout:
            raise TargetError(
                f"the VM did not answer SSH within its boot timeout "
                f"({self.spec.boot_timeout:.0f}s, {self.mode.upper()})",
                "raise the boot timeout (pytest --vmc-boot-timeout, up --boot-timeout), or "
                f"check the guest in /var/log/libvirt/qemu/{self.resource_name}.log") from None

    def _overlay_of(self, backing: Path) -> Path:
        """A new copy-on-write disk over ``backing``, in the pool, named after this VM."""
        overlay = libvirt.pool_path() / f"{self.resource_name}.img"
        if procs.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                      str(backing), str(overlay)], self.cancelled) != 0:
            raise TargetError(f"qemu-img could not make an overlay of {backing}",
                              f"check the free space in {overlay.parent}")
        libvirt.run_virsh("pool-refresh", libvirt.pool_name())
        return overlay

    def _adopt_domain(self, ssh_config: Path, boxes: Path) -> None:
        """Vagrant's machine directory for a domain the harness defined, so that vagrant
        halt/up/ssh find it, and its SSH config on this VM's port."""
        uuid = libvirt.run_virsh("domuuid", self.resource_name).stdout.strip()
        machine_dir = self.dotfile_path / "machines" / self._machine_name / "libvirt"
        machine_dir.mkdir(parents=True, exist_ok=True)
        (machine_dir / "id").write_text(uuid)
        self._ssh_config.write_text(domainxml.ssh_config_on(
            ssh_config.read_text(), self.ssh_port, boxes))

    def _virsh(self, *args: str) -> None:
        result = libvirt.run_virsh(*args)
        if result.returncode != 0:
            raise TargetError(f"virsh {args[0]} failed: {result.stderr.strip()}",
                              f"see /var/log/libvirt/qemu/{self.resource_name}.log")

    def _definition(self) -> str:
        """The domain's persistent definition as libvirt holds it (what a later VM starts
        from: ``domainxml``)."""
        return libvirt.run_virsh("dumpxml", "--inactive", "--security-info",
                                 self.resource_name).stdout

    @property
    def _machine_name(self) -> str:
        return self.machine.name if self.machine else "default"

    def disk_cache_mode(self) -> str | None:
        """The cache mode libvirt runs the VM's disk with (read back from the domain: what
        ran, not what was asked for); None when libvirt leaves QEMU's default."""
        from xml.etree import ElementTree

        xml = libvirt.run_virsh("dumpxml", self.resource_name).stdout
        if not xml.strip():
            return None
        driver = ElementTree.fromstring(xml).find("./devices/disk[@device='disk']/driver")
        return driver.get("cache") if driver is not None else None

    def _disk_path(self) -> Path:
        blocks = libvirt.run_virsh("domblklist", self.resource_name, "--details").stdout
        disks = [line.split()[-1] for line in blocks.splitlines() if " disk " in f" {line} "]
        if not disks:
            raise TargetError(f"libvirt lists no disk for {self.resource_name}",
                              f"see {self.log_path}")
        return Path(disks[0])

    def _inserted_key(self) -> Path | None:
        """The key pair Vagrant made at the first boot of a box with the insecure key."""
        name = self.machine.name if self.machine else "default"
        key = self.dotfile_path / "machines" / name / "libvirt" / "private_key"
        return key if key.exists() else None

    def state(self) -> dict[str, Any]:
        return {**super().state(), "ssh_port": self.ssh_port, "mac": self.mac,
                "machine": asdict(self.machine) if self.machine else None,
                "slot": asdict(self.slot) if self.slot else None}

    def _restore(self, state: dict[str, Any]) -> None:
        self.ssh_port, self.mac = int(state["ssh_port"]), str(state["mac"])
        self.host_ports = {int(g): int(h) for g, h in state["forwards"].items()}
        machine = state.get("machine")
        self.machine = MachineConfig.from_json(machine) if machine else None
        slot = state.get("slot")  # a restored VM runs under its slot's name
        self.slot = vmsaved.Slot(str(slot["cache_key"]), str(slot["id"])) if slot else None
        self._vagrant = None  # made again with the saved ports

    @classmethod
    def attach(cls, spec: TargetSpec, state: dict[str, Any]) -> VagrantTarget:
        target = cls(spec, accel=accellib.Accel(state["mode"], state.get("mode_reason", "")))
        target._restore(state)
        target.was_ready = True
        return target

    def shell(self, command: list[str] | None = None) -> tuple[list[str], dict[str, str] | None,
                                                            Path | None]:
        argv = ["vagrant", "ssh"] + (["-c", shlex.join(command)] if command else [])
        return argv, self._env(), self.spec.vagrantfile.parent

    def resume(self) -> bool:
        """Bring back this session's VM (a reused target); False if there is none."""
        try:
            saved = json.loads((self.spec.workdir / self.STATE_FILE).read_text())
        except (OSError, ValueError):
            return False
        if not self.dotfile_path.exists():
            return False
        self._restore(saved)
        state = self.vagrant.status()[0].state
        if state == "running":
            self.wait_ready()
        elif state in ("shutoff", "poweroff", "stopped"):
            self.start()
        else:
            return False
        return True

    def stop(self) -> None:
        """A graceful shutdown through libvirt, as ``vagrant halt`` does (the guest agent or
        ACPI, then a power-off after its timeout), without starting Ruby (5-10 s)."""
        with self.progress.step("vm: shutdown (libvirt)"):
            libvirt.run_virsh("shutdown", self.resource_name)
            try:
                wait_for(lambda: self._domain_state() == "shut off", timeout=GRACEFUL_HALT_S,
                         what="the guest's shutdown", interval=0.2)
            except WaitTimeout:
                libvirt.run_virsh("destroy", self.resource_name)
        self._host = None

    def start(self) -> None:
        """Boot the halted VM: through libvirt when its domain is defined and its SSH config
        known (every VM the harness halts), else with ``vagrant up --no-provision``."""
        if self._domain_state() == "shut off" and self._ssh_config.exists():
            with self.progress.step(f"vm: start (libvirt, {self.mode.upper()})"):
                self._boot_defined()
        else:
            self._run_streamed("vagrant up --no-provision", provision=False)
        self.wait_ready()

    def destroy(self) -> None:
        """The domain and its volumes go through libvirt directly, then Vagrant's machine
        directory: what ``vagrant destroy`` does, without starting Ruby for every instance
        (5-10 s each under TCG). Callers stop our running vagrant command first
        (``procs.stop_all``)."""
        self._remove_machine()
        if self._slot_lock is not None:  # after the domain: the sweep may take it from here
            self._slot_lock.release()
            self._slot_lock = None
        if self.exported:
            remove_app_boxes(self.app_box_name)
        if self._cache_lock is not None:
            self._cache_lock.close()
            self._cache_lock = None
        if self._cache_writer is not None:
            self._cache_writer.discard()
        self._host = None

    def _remove_machine(self) -> None:
        """The domain and its volumes (through libvirt), then Vagrant's machine directory."""
        remove_libvirt_leftovers(self.domain_prefix)
        shutil.rmtree(self.dotfile_path, ignore_errors=True)

    def _domain_state(self) -> str:
        """libvirt's word for the domain's state ("running", "shut off"); "" when it is gone."""
        return libvirt.run_virsh("domstate", self.resource_name).stdout.strip()

    def alive(self) -> str | None:
        state = self._domain_state()
        if state == "running":
            return None
        return (f"the VM {self.resource_name} is {state or 'gone'}" +
                ("" if state else " (its libvirt domain no longer exists)"))

    # --- export, instances, measurements ---------------------------------------------------

    @property
    def app_box_name(self) -> str:
        return f"{resource_prefix(self.spec.session_id)}app"

    @property
    def _app_vagrantfile(self) -> Path:
        return self.spec.workdir.parent / "app-vm" / "Vagrantfile"

    def export(self, directory: Path, timer: Timer | None = None) -> Export:
        """The provisioned VM as a libvirt box. With the VM cache, that box is the cache entry
        (the provisioned disk, flattened by qemu-img, in a tar as vagrant package writes it),
        and new instances start from the entry. Without it, ``vagrant package`` (timed alone;
        it runs virt-sysprep and virt-sparsify): the box is then added for new instances,
        and the VM, which vagrant package halts, is started again."""
        path = directory / "app.box"
        if self.cache_entry is not None:
            entry = self.cache_entry
            command = ["tar", "-C", str(entry.directory),
                       *(f"--exclude={name}" for name in vmcache.HARNESS_FILES),
                       "-cf", str(path), "."]

            def pack() -> None:
                with self.progress.step(f"vm: packing the cached disk -> {path.name}"):
                    if procs.run(command, self.cancelled) != 0:
                        raise TargetError("tar could not pack the VM cache entry",
                                          f"check the free space under {directory}")

            seconds = time_once(pack, timer)
            return Export(path, path.stat().st_size, seconds,
                          "libvirt box of the provisioned disk (qemu-img convert, tar)",
                          starts_warm=True)
        try:
            seconds = time_once(lambda: self.package(path), timer)
        except VmcError:
            try:
                self.start()  # vagrant package halts the VM before it can fail
            except VmcError:
                pass  # the export's error is the one to show
            raise
        with self.progress.step(f"vm: vagrant box add {self.app_box_name}"):
            self.exported = True  # from here on, destroy removes the box
            self.vagrant.add_box(self.app_box_name, path)
        self._write_app_vagrantfile()
        self.start()
        return Export(path, path.stat().st_size, seconds,
                      "vagrant package (libvirt box, gzip tar)")

    def _write_app_vagrantfile(self) -> None:
        memory, cpus = self.memory_and_cpus()
        self._app_vagrantfile.parent.mkdir(exist_ok=True)
        self._app_vagrantfile.write_text(
            'Vagrant.configure("2") do |config|\n'
            f'  config.vm.box = "{self.app_box_name}"\n'
            '  config.vm.provider "libvirt" do |lv|\n'
            f"    lv.memory = {memory}\n"
            f"    lv.cpus = {cpus}\n"
            "  end\n"
            "end\n")

    def instance_from_export(self, spec: TargetSpec) -> VagrantTarget:
        if self.cache_entry is not None:  # the same path as a VM started from the cache
            instance = VagrantTarget(spec, self.progress, accel=self.accel)
            instance.machine, instance.cache_entry = self.machine, self.cache_entry
            return instance
        return VagrantTarget(replace(spec, vagrantfile=self._app_vagrantfile), self.progress,
                             accel=self.accel)

    def package(self, output: Path) -> None:
        """``vagrant package`` (it halts the VM first), with the box's kernel and plumbing
        when the VM comes from the pytest-vmcontainer box."""
        box = bases.box_dir()
        include = [box / name for name in ("vmlinuz", "initrd.img", "vagrant_key")]
        embedded = box / "Vagrantfile"
        ours = embedded.exists() and all(p.exists() for p in include) and (
            self.machine is not None and self.machine.box == bases.BOX_NAME)
        self._host = None
        with self.progress.step(f"vm: vagrant package -> {output.name}"):
            try:
                self.vagrant.package_box(output, include if ours else [],
                                         embedded if ours else None)
            except subprocess.CalledProcessError:
                raise self._explain_package_failure() from None

    def memory_and_cpus(self) -> tuple[int, int]:
        """(memory MiB, vCPUs) of the running domain, for instances made from its export."""
        info = libvirt.run_virsh("dominfo", self.resource_name).stdout
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        return int(fields["Max memory"].split()[0]) // 1024, int(fields["CPU(s)"])

    def footprint(self) -> dict[str, Any]:
        """Disk bytes allocated to the VM's volume and the box volume under it (qemu-img)."""
        local = self.local_box  # a box from elsewhere has no build record here
        record = bases.BuildRecord.load(local.kind) if local else None
        disk = self._disk_bytes()
        return {"footprint_bytes": disk, "disk_bytes": disk,
                "box_bytes": record.artifact_bytes if record else None}

    def _disk_bytes(self) -> int:
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--backing-chain",
                                          "--output=json", str(self._disk_path())],
                                         capture_output=True, text=True, check=True).stdout)
        return sum(int(layer["actual-size"]) for layer in info)

    def usage(self) -> tuple[int, float]:
        """The QEMU process's RSS and CPU time."""
        import psutil

        pid = int(Path(f"/run/libvirt/qemu/{self.resource_name}.pid").read_text().strip())
        process = psutil.Process(pid)
        cpu = process.cpu_times()
        return int(process.memory_info().rss), cpu.user + cpu.system

    def _explain_package_failure(self) -> TargetError:
        tail = self.log_tail(40)
        tool = next((name for name in ("virt-sysprep", "virt-sparsify")
                     if f"No such file or directory - {name}" in tail), None)
        if tool is not None:
            return TargetError(f"vagrant package needs {tool}, which is not installed",
                               "run 'python -m pytest_vmcontainer setup' (it installs "
                               "libguestfs-tools)", detail=tail)
        return TargetError("vagrant package failed", f"see {self.log_path}", detail=tail)

    def _explain_failure(self) -> TargetError:
        tail = self.log_tail(40)
        box = self.machine.box if self.machine else None
        if box and "could not be found or" in tail and "remote catalog" in tail:
            cause, remedy = bases.unavailable_base(box, "box")
            return TargetError(cause, remedy, detail=tail)
        if "Timed out while waiting for the machine to boot" in tail:
            return TargetError(
                f"the VM did not answer SSH within its boot timeout "
                f"({self.spec.boot_timeout:.0f}s, {self.mode.upper()})",
                "raise the boot timeout (pytest --vmc-boot-timeout, up --boot-timeout), or "
                "check the guest in "
                f"/var/log/libvirt/qemu/{self.resource_name}.log", detail=tail)
        if "non-zero exit status" in tail or "provisioner" in tail.lower():
            return TargetError("provisioning failed in the VM (the shell provisioner exited "
                               "non-zero)",
                               f"fix the provisioning script; the log is {self.log_path}",
                               detail=tail)
        if "address already in use" in tail.lower() or "Could not set up host forwarding" in tail:
            return PortInUse(detail=tail)
        return TargetError("vagrant up failed", f"see {self.log_path}", detail=tail)

    def save_state(self) -> None:
        """Also the SSH config, once SSH answers: what ``attach`` (another process, an xdist
        worker) connects with, without a vagrant command of its own."""
        super().save_state()
        if self.was_ready and not self._ssh_config.exists():  # readiness wrote it, usually
            self._ssh_config.write_text(self.vagrant.ssh_config())

    @property
    def _ssh_config(self) -> Path:
        return self.spec.workdir / "ssh_config"

    def _make_host(self) -> Any:
        import testinfra

        if not self._ssh_config.exists():
            self._ssh_config.write_text(self.vagrant.ssh_config())
        return testinfra.get_host("paramiko://default", ssh_config=str(self._ssh_config),
                                 sudo=True)  # root on both: containers run as root

    def facts(self) -> dict[str, Any]:
        facts = super().facts()
        facts.update(accel_reason=self.accel.reason, domain=self.resource_name)
        return facts
