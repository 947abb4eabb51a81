"""The VM target: the user's Vagrantfile, driven through python-vagrant (libvirt provider).

Machine state (VAGRANT_DOTFILE_PATH) lives in the target's work directory, not
next to the Vagrantfile, so two sessions on one machine never share a VM. The
plumbing Vagrantfile in the target's own VAGRANT_HOME (``data/vagrant/Vagrantfile``)
reads the loopback forwards, the accelerator and the libvirt names from the
environment set here, so any libvirt box works, not only the ones built here.

``VagrantTarget`` coordinates; the parts are modules of this package: ``config`` (the
machine Vagrant merged, checked), ``environment`` (what every vagrant command runs with),
``domain`` (every virsh call), ``starts`` and ``restore`` (one start path per way a VM
comes up, each with its own locks and writers), ``export`` and ``failures``.

Imported only when a VM target is made (see ``targets.make``): python-vagrant,
which prints a warning at import when Vagrant is not installed yet, is not loaded
with the plugin.
"""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from pytest_vmcontainer.host import accel as accellib
from pytest_vmcontainer.host import bases, libvirt, libvirthost, paths, space
from pytest_vmcontainer.host.ports import free_port
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.runtime.timing import Timer
from pytest_vmcontainer.targets import vmcache, vmsaved
from pytest_vmcontainer.targets.base import Export, Leftovers, Target, TargetSpec, resource_prefix
from pytest_vmcontainer.targets.capabilities import Attaching, Exporting, Measuring, Shell
from pytest_vmcontainer.targets.remote import ForwardLeftovers, Together
from pytest_vmcontainer.targets.vagrant import configcache
from pytest_vmcontainer.targets.vagrant import export as exporting
from pytest_vmcontainer.targets.vagrant.config import (
    CONFIG_MARKER,
    MachineConfig,
    check_machine,
    read_with_vagrant,
    vm_cache_key,
)
from pytest_vmcontainer.targets.vagrant.domain import (
    GRACEFUL_HALT_S,
    LibvirtDomain,
    libvirt_names,
    remove_libvirt_leftovers,
)
from pytest_vmcontainer.targets.vagrant.environment import PLUMBING, environment
from pytest_vmcontainer.targets.vagrant.failures import libvirt_daemons_named
from pytest_vmcontainer.targets.vagrant.hostforwards import HostForwards, login_argv
from pytest_vmcontainer.targets.vagrant.leftovers import (
    _RESOURCE_NAME,
    LibvirtLeftovers,
    remove_app_boxes,
)
from pytest_vmcontainer.targets.vagrant.restore import start_path
from pytest_vmcontainer.targets.vagrant.starts import (
    Provision,
    StartPath,
    boot_defined,
    booted_for_memory,
    vagrant_up,
)
from pytest_vmcontainer.targets.vagrantcli import TrackedVagrant

__all__ = ["CONFIG_MARKER", "GRACEFUL_HALT_S", "PLUMBING", "_RESOURCE_NAME", "LibvirtLeftovers",
           "MachineConfig", "VagrantTarget", "libvirt_names", "remove_app_boxes",
           "remove_libvirt_leftovers"]

def _new_mac() -> str:
    """A MAC in QEMU's locally administered 52:54:00 range, one per VM."""
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


class VagrantTarget(Target, Exporting, Measuring, Attaching, Shell):
    """Picks a start path (``starts``, ``restore``) and runs the VM's lifecycle through
    Vagrant and its libvirt domain."""

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
        self.start_path: StartPath = Provision(self, None)  # prepare picks the real one
        # When libvirtd and virtlogd started, as up began: a restart under it is named.
        self.libvirt_daemons_before: dict[str, str | None] = {}
        self.memory_lazy = False  # resumed from a saved state (resume), not booted since
        self.host_forwards = HostForwards()  # libvirt on another machine: its ports here

    @property
    def mode(self) -> str:
        return self.accel.mode

    @property
    def mode_reason(self) -> str:
        return libvirthost.placed(self.accel.reason)

    @classmethod
    def leftovers(cls) -> Leftovers:
        return Together(ForwardLeftovers(cls.kind), LibvirtLeftovers())

    def prepare(self) -> None:
        """Read the merged machine config, check it, build the box if it is one of those built
        here (``bases.LOCAL_BOXES``), then probe KVM or TCG on the box's kernel (or the
        host's: a box that boots through a boot loader carries none beside its disk); last,
        pick the start path by the VM cache."""
        self.machine = self.read_config()
        check_machine(self.machine, self.spec.vagrantfile)
        local = self.local_box
        if local is not None:
            if self.spec.rebuild_bases or not local.current():
                space.require([space.Need(paths.home(), space.BOX_BUILD, "the box build")])
            bases.ensure_box(self.progress, self.spec.rebuild_bases, self.cancelled, local)
        box_dir = Path(self.machine.box_directory or (local or bases.PROJECT_BOX).box_dir())
        self.accel = libvirthost.accel(box_dir / "vmlinuz", bases.box_kernel())
        if self.spec.vm_cache:
            if self.machine.box_directory is None:  # the box was just built: look it up
                self.machine = self.read_config()
            cache_key = vm_cache_key(self.machine, self.spec)
            self.start_path = start_path(self, cache_key,
                                         vmcache.lookup(cache_key, self.progress.say))
            space.require(self.start_path.space_needed())

    @property
    def local_box(self) -> bases.BoxRecipe | None:
        """The recipe of the machine's box when it is built here, else None."""
        return bases.LOCAL_BOXES.get(self.machine.box or "") if self.machine else None

    def declared_ports(self) -> tuple[int, ...]:
        return self.machine.declared_ports if self.machine else ()

    def read_config(self) -> MachineConfig:
        """The machine as Vagrant merged it: kept from an earlier read of the same inputs
        (``configcache``), else read with ``vagrant vmc-config`` in the project."""
        return configcache.read(self.spec.vagrantfile, lambda: read_with_vagrant(self))

    # --- names and places --------------------------------------------------------------------

    @property
    def resource_name(self) -> str:
        """The libvirt domain: vagrant-libvirt names it prefix + machine name."""
        return f"{self.domain_prefix}{self.machine_name}"

    @property
    def domain_prefix(self) -> str:
        slot = self.start_path.slot
        if slot is not None:  # libvirt restores a saved VM only under its saved name
            return resource_prefix(slot.id)
        suffix = f"{self.spec.name_suffix}-" if self.spec.name_suffix else ""
        return resource_prefix(self.spec.session_id) + suffix

    @property
    def domain(self) -> LibvirtDomain:
        return LibvirtDomain(self.resource_name, self.log_path)

    @property
    def machine_name(self) -> str:
        return self.machine.name if self.machine else "default"

    @property
    def dotfile_path(self) -> Path:
        return self.spec.workdir / ".vagrant"

    @property
    def ssh_config_path(self) -> Path:
        return self.spec.workdir / "ssh_config"

    def forwards(self) -> dict[int, int]:
        return {22: self.ssh_port, **self.host_ports}

    def inserted_key(self) -> Path | None:
        """The key pair Vagrant made at the first boot of a box with the insecure key."""
        key = self.dotfile_path / "machines" / self.machine_name / "libvirt" / "private_key"
        return key if key.exists() else None

    @property
    def vagrant(self) -> TrackedVagrant:
        """Vagrant for bring-up commands: refuses to start once teardown cancelled it."""
        if self._vagrant is None:
            self._vagrant = TrackedVagrant(self.spec.vagrantfile.parent, environment(self),
                                           self.log_path, self.cancelled)
        return self._vagrant

    # --- lifecycle -------------------------------------------------------------------------

    def up(self) -> None:
        """Run the start path ``prepare`` picked: from the VM cache when it has this VM's key
        (restored, or booted with no provisioning); else ``vagrant up`` with the provisioners,
        then the provisioned disk goes into the cache."""
        self.ssh_config_path.unlink(missing_ok=True)  # a new machine: new ports, maybe a new key
        self.libvirt_daemons_before = libvirt.daemons_started()
        with libvirt_daemons_named(self, f"the start of {self.resource_name}"):
            self.start_path.hold()
            self.on_picked_ports(self._start_on_picked_ports, self._undo_start)

    def _start_on_picked_ports(self) -> None:
        self._vagrant = None  # made again with the forwards just picked
        self.save_state()  # first: a reused VM must come back on the same forwards and MAC
        self.host_forwards.open(self)
        self.start_path.run()

    def _undo_start(self) -> None:
        """What a start whose forward's port was taken made; the SSH forward's port too is
        picked again (unless pinned)."""
        self.remove_machine()
        self.host_forwards.close()
        self.ssh_config_path.unlink(missing_ok=True)
        self.ssh_port = self.spec.pinned_ports.get(22) or free_port()

    def resume(self) -> bool:
        """Bring back this session's VM (a reused target); False if there is none."""
        try:
            saved = json.loads((self.spec.workdir / self.STATE_FILE).read_text())
        except (OSError, ValueError):
            return False
        if not self.dotfile_path.exists():
            return False
        self._restore(saved)
        self.host_forwards.open(self)
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
            self.domain.halt()
        self._host = None

    def start(self, ready_path: str | None = None) -> None:
        """Boot the halted VM: through libvirt when its domain is defined and its SSH config
        known (every VM the harness halts), else with ``vagrant up --no-provision``."""
        if self.domain.state() == "shut off" and self.ssh_config_path.exists():
            with self.progress.step(f"vm: start (libvirt, {self.mode.upper()})"):
                boot_defined(self)
        else:
            vagrant_up(self, "vagrant up --no-provision", provision=False)
        self.wait_ready(ready_path)

    def destroy(self) -> None:
        """The domain and its volumes go through libvirt directly, then Vagrant's machine
        directory: what ``vagrant destroy`` does, without starting Ruby for every instance
        (5-10 s each under TCG). Callers stop our running vagrant command first
        (``procs.stop_all``)."""
        self.remove_machine()
        self.host_forwards.close()
        self.start_path.release()  # after the domain: the sweep may take a slot from here
        if self.exported:
            remove_app_boxes(exporting.app_box_name(self.spec.session_id))
        self._host = None

    def remove_machine(self) -> None:
        """The domain and its volumes (through libvirt), then Vagrant's machine directory."""
        remove_libvirt_leftovers(self.domain_prefix)
        shutil.rmtree(self.dotfile_path, ignore_errors=True)

    def settle(self) -> None:
        self.start_path.settle()

    def drop_host(self) -> None:
        """Forget the connection: the VM it reached is going (halted, saved)."""
        self._host = None

    def alive(self) -> str | None:
        state = self.domain.state()
        if state == "running":
            return None
        return (f"the VM {self.resource_name} is {state or 'gone'}" +
                ("" if state else " (its libvirt domain no longer exists)"))

    # --- export, instances, measurements ---------------------------------------------------

    def export(self, directory: Path, timer: Timer | None = None) -> Export:
        self.start_path.settle()  # a cold run's entry may still be written: it is the export
        return exporting.export(self, directory, timer)

    def instance_from_export(self, spec: TargetSpec) -> VagrantTarget:
        self.start_path.settle()  # a cold run's entry may still be written
        entry = self.start_path.entry
        if entry is not None:  # the same path as a VM started from the cache
            instance = VagrantTarget(spec, self.progress, accel=self.accel)
            instance.machine = self.machine
            instance.start_path = start_path(instance, entry.key, entry)
            return instance
        return VagrantTarget(replace(spec, vagrantfile=exporting.app_vagrantfile(self)),
                             self.progress, accel=self.accel)

    def footprint(self) -> dict[str, Any]:
        local = self.local_box  # a box from elsewhere has no build record here
        record = bases.BuildRecord.load(local.kind) if local else None
        return {**self.domain.footprint(), "box_bytes": record.artifact_bytes if record else None}

    def usage(self) -> tuple[int, float]:
        return self.domain.usage()

    def memory_as_booted(self) -> str:
        return booted_for_memory(self)

    def disk_cache_mode(self) -> str | None:
        return self.domain.disk_cache_mode()

    # --- saved state: reuse, attach, login --------------------------------------------------

    def save_state(self) -> None:
        """Also the SSH config, once SSH answers: what ``attach`` (another process, an xdist
        worker) connects with, without a vagrant command of its own."""
        super().save_state()
        if self.was_ready and not self.ssh_config_path.exists():  # readiness wrote it, usually
            self.ssh_config_path.write_text(self.vagrant.ssh_config())

    def state(self) -> dict[str, Any]:
        slot = self.start_path.slot
        return {**super().state(), "ssh_port": self.ssh_port, "mac": self.mac,
                "machine": asdict(self.machine) if self.machine else None,
                "slot": asdict(slot) if slot else None}

    def _restore(self, state: dict[str, Any]) -> None:
        self.ssh_port, self.mac = int(state["ssh_port"]), str(state["mac"])
        self.host_ports = {int(g): int(h) for g, h in state["forwards"].items()}
        machine = state.get("machine")
        self.machine = MachineConfig.from_json(machine) if machine else None
        slot = state.get("slot")  # a restored VM runs under its slot's name
        self.start_path.slot = vmsaved.Slot(str(slot["cache_key"]), str(slot["id"])) \
            if slot else None
        self._vagrant = None  # made again with the saved ports

    @classmethod
    def attach(cls, spec: TargetSpec, state: dict[str, Any]) -> VagrantTarget:
        target = cls(spec, accel=accellib.Accel(state["mode"], state.get("mode_reason", "")))
        target._restore(state)
        target.was_ready = True
        return target

    def shell(self, command: list[str] | None = None) -> tuple[list[str], dict[str, str] | None,
                                                            Path | None]:
        argv = login_argv(self, command) or \
            ["vagrant", "ssh"] + (["-c", shlex.join(command)] if command else [])
        return argv, environment(self), self.spec.vagrantfile.parent

    def _make_host(self) -> Any:
        import testinfra

        if not self.ssh_config_path.exists():
            self.ssh_config_path.write_text(self.vagrant.ssh_config())
        return testinfra.get_host("paramiko://default", ssh_config=str(self.ssh_config_path),
                                 sudo=True)  # root on both: containers run as root

    def facts(self) -> dict[str, Any]:
        facts = super().facts()
        facts.update(accel_reason=self.accel.reason, domain=self.resource_name,
                     **libvirthost.engine_facts())
        return facts
