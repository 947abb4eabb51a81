"""The provisioned VM as a libvirt box: the cache entry packed, or ``vagrant package``."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vmcontainer.errors import TargetError, VmcError
from pytest_vmcontainer.host import bases
from pytest_vmcontainer.runtime import procs
from pytest_vmcontainer.runtime.timing import Timer, time_once
from pytest_vmcontainer.targets import vmcache
from pytest_vmcontainer.targets.base import Export, resource_prefix
from pytest_vmcontainer.targets.vagrant.failures import explain_package_failure

if TYPE_CHECKING:
    from pytest_vmcontainer.targets.vagrant import VagrantTarget


def app_box_name(session_id: str) -> str:
    return f"{resource_prefix(session_id)}app"


def app_vagrantfile(vm: VagrantTarget) -> Path:
    """The Vagrantfile of instances made from a ``vagrant package`` export."""
    return vm.spec.workdir.parent / "app-vm" / "Vagrantfile"


def export(vm: VagrantTarget, directory: Path, timer: Timer | None) -> Export:
    """The provisioned VM as a libvirt box. With the VM cache, that box is the cache entry
    (the provisioned disk, flattened by qemu-img, in a tar as vagrant package writes it),
    and new instances start from the entry. Without it, ``vagrant package`` (timed alone;
    it runs virt-sysprep and virt-sparsify): the box is then added for new instances,
    and the VM, which vagrant package halts, is started again."""
    path = directory / "app.box"
    entry = vm.start_path.entry
    if entry is not None:
        return _pack_entry(vm, entry, path, timer)
    try:
        seconds = time_once(lambda: package(vm, path), timer)
    except VmcError:
        try:
            vm.start()  # vagrant package halts the VM before it can fail
        except VmcError:
            pass  # the export's error is the one to show
        raise
    name = app_box_name(vm.spec.session_id)
    with vm.progress.step(f"vm: vagrant box add {name}"):
        vm.exported = True  # from here on, destroy removes the box
        vm.vagrant.add_box(name, path)
    _write_app_vagrantfile(vm, name)
    vm.start()
    return Export(path, path.stat().st_size, seconds,
                  "vagrant package (libvirt box, gzip tar)")


def _pack_entry(vm: VagrantTarget, entry: vmcache.Entry, path: Path,
                timer: Timer | None) -> Export:
    command = ["tar", "-C", str(entry.directory),
               *(f"--exclude={name}" for name in vmcache.HARNESS_FILES),
               "-cf", str(path), "."]

    def pack() -> None:
        with vm.progress.step(f"vm: packing the cached disk -> {path.name}"):
            if procs.run(command, vm.cancelled) != 0:
                raise TargetError("tar could not pack the VM cache entry",
                                  f"check the free space under {path.parent}")

    seconds = time_once(pack, timer)
    return Export(path, path.stat().st_size, seconds,
                  "libvirt box of the provisioned disk (qemu-img convert, tar)",
                  starts_warm=True)


def _write_app_vagrantfile(vm: VagrantTarget, box_name: str) -> None:
    memory, cpus = vm.domain.memory_and_cpus()
    vagrantfile = app_vagrantfile(vm)
    vagrantfile.parent.mkdir(exist_ok=True)
    vagrantfile.write_text(
        'Vagrant.configure("2") do |config|\n'
        f'  config.vm.box = "{box_name}"\n'
        '  config.vm.provider "libvirt" do |lv|\n'
        f"    lv.memory = {memory}\n"
        f"    lv.cpus = {cpus}\n"
        "  end\n"
        "end\n")


def package(vm: VagrantTarget, output: Path) -> None:
    """``vagrant package`` (it halts the VM first), with the box's kernel and plumbing
    when the VM comes from the pytest-vmcontainer box."""
    box = bases.box_dir()
    include = [box / name for name in ("vmlinuz", "initrd.img", "vagrant_key")]
    embedded = box / "Vagrantfile"
    ours = embedded.exists() and all(p.exists() for p in include) and (
        vm.machine is not None and vm.machine.box == bases.BOX_NAME)
    vm.drop_host()
    with vm.progress.step(f"vm: vagrant package -> {output.name}"):
        try:
            vm.vagrant.package_box(output, include if ours else [],
                                   embedded if ours else None)
        except subprocess.CalledProcessError:
            raise explain_package_failure(vm) from None
