"""The machine a project's Vagrantfile defines: read through Vagrant, then checked."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_vmcontainer.errors import TargetError
from pytest_vmcontainer.targets import vmcache
from pytest_vmcontainer.targets.base import TargetSpec
from pytest_vmcontainer.targets.vagrant.environment import PLUMBING, environment
from pytest_vmcontainer.targets.vagrantcli import TrackedVagrant

if TYPE_CHECKING:
    from pytest_vmcontainer.targets.vagrant import VagrantTarget

CONFIG_MARKER = "VMC-CONFIG-JSON "  # how the plumbing's vmc-config command marks its line


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


def read_machine(reader: TrackedVagrant, vagrantfile: Path, log_path: Path,
                 log_tail: Callable[[int], str]) -> MachineConfig:
    """``vagrant vmc-config`` in the project: the machine as Vagrant merged it."""
    try:
        output = reader.run_command(["vmc-config"])
    except subprocess.CalledProcessError:
        tail = log_tail(15)
        raise TargetError(f"Vagrant cannot load {vagrantfile}",
                          "fix the Vagrantfile (vagrant validate shows the error); "
                          f"the log is {log_path}", detail=tail) from None
    line = next((x for x in output.splitlines() if x.startswith(CONFIG_MARKER)), None)
    if line is None:
        raise TargetError("vagrant vmc-config printed no machine config",
                          f"see {log_path}", detail=output[-2000:])
    machines = json.loads(line[len(CONFIG_MARKER):])
    if len(machines) != 1:
        names = ", ".join(m["name"] for m in machines) or "none"
        raise TargetError(f"{vagrantfile} defines {len(machines)} machines "
                          f"({names})", "give pytest-vmcontainer a Vagrantfile with one "
                          "machine (a multi-machine file is not supported yet)")
    return MachineConfig.from_json(machines[0])


def read_with_vagrant(vm: VagrantTarget) -> MachineConfig:
    """``vagrant vmc-config`` in ``vm``'s project (a Ruby start: 1.2 to 2.6 s here)."""
    with vm.progress.step(f"vm: reading {vm.spec.vagrantfile} (vagrant vmc-config)"):
        reader = TrackedVagrant(vm.spec.vagrantfile.parent, environment(vm, read=True),
                                vm.log_path, vm.cancelled)
        return read_machine(reader, vm.spec.vagrantfile, vm.log_path, vm.log_tail)


def check_machine(machine: MachineConfig, where: Path) -> None:
    """Refuse settings the harness cannot run: another provider only, a management network,
    no guest agent."""
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


def vm_cache_key(machine: MachineConfig, spec: TargetSpec) -> str:
    """The VM cache key of the provisioned machine (``vmcache.key``: every input)."""
    return vmcache.key(
        spec.vagrantfile, machine.provisioner_files(spec.vagrantfile.parent),
        spec.provision_inputs, machine.box,
        Path(machine.box_directory) if machine.box_directory else None,
        PLUMBING)
