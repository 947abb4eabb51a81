"""The environment every vagrant command of a VM target runs in: its own VAGRANT_HOME, with the
plumbing Vagrantfile, and the settings the plumbing reads (``VMC_PLUMBING``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_vmcontainer.host import bases, libvirt, paths
from pytest_vmcontainer.targets.vagrant.domain import boot_files_there, booted_box
from pytest_vmcontainer.targets.vagrantcli import vagrant_env

if TYPE_CHECKING:
    from pytest_vmcontainer.targets.vagrant import VagrantTarget

PLUMBING = bases.DATA / "vagrant" / "Vagrantfile"


def vagrant_home(workdir: Path) -> Path:
    """A VAGRANT_HOME of the target's own, sharing only the boxes, with the plumbing.

    Vagrant processes that share a VAGRANT_HOME touch each other's entries in
    its machine index and fail at random with "the machine is locked" when they
    run at once (density, concurrent sessions); a home per target avoids that.
    Its Vagrantfile is the plumbing (``data/vagrant/Vagrantfile``), which Vagrant
    layers between the box's and the project's.
    """
    home = workdir / "vagrant.d"
    boxes = home / "boxes"
    if not boxes.is_symlink():
        home.mkdir(parents=True, exist_ok=True)
        boxes.symlink_to(paths.ensure_dir(paths.vagrant_home() / "boxes"))
    shutil.copyfile(PLUMBING, home / "Vagrantfile")
    return home


def plumbing(vm: VagrantTarget, read: bool = False) -> dict[str, Any]:
    """What the plumbing Vagrantfile layers around the project's (see its comments)."""
    machine = vm.machine
    started_from = vm.start_path.started_from
    return {
        "ssh_port": vm.ssh_port, "mac": vm.mac, "driver": vm.accel.libvirt_driver,
        "cpu_model": vm.accel.tcg_cpu_model, "cpu_features": list(vm.accel.tcg_cpu_features),
        "domain_prefix": vm.domain_prefix, "pool": libvirt.pool_name(),
        "libvirt_uri": None if libvirt.on_this_host() else libvirt.libvirt_uri(),
        **{setting: there for setting, (_, there)
           in boot_files_there(booted_box(machine, started_from)).items()},
        "boot_timeout": int(vm.spec.boot_timeout),
        "forwards": {str(guest): host for guest, host in vm.host_ports.items()},
        # The project's own forwards are replaced by the harness's (free ports, no
        # SSH tunnels); a read sees them as declared.
        "disable_forwards": [] if read or machine is None else machine.user_forwards,
        "disk_cache": vm.spec.disk_cache,
        # A VM started from the cache: the cached box, and the key Vagrant inserted at
        # the first boot of a box that uses Vagrant's key replacement.
        "box": started_from.box_name if started_from else None,
        "ssh_key": str(started_from.machine_key)
        if started_from and started_from.machine_key else None,
    }


def environment(vm: VagrantTarget, read: bool = False) -> dict[str, str]:
    return vagrant_env({
        "VAGRANT_HOME": str(vagrant_home(vm.spec.workdir)),
        "VAGRANT_VAGRANTFILE": vm.spec.vagrantfile.name,
        "VAGRANT_DOTFILE_PATH": str(vm.dotfile_path),
        "VMC_PLUMBING": json.dumps(plumbing(vm, read)),
        # vagrant package always runs virt-sysprep and virt-sparsify; their libguestfs
        # appliance must not try a KVM that cannot boot a guest (it hangs there).
        **({"LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"} if vm.accel.mode == "tcg" else {}),
    })
