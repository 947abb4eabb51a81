"""The VM target: the user's Vagrantfile, driven through python-vagrant (libvirt provider).

Machine state (VAGRANT_DOTFILE_PATH) lives in the target's work directory, not
next to the Vagrantfile, so two sessions on one machine never share a VM. The
box's embedded Vagrantfile reads the loopback forwards, the accelerator and the
libvirt names from the environment set here.

Imported only when a VM target is made (see ``targets.make``): python-vagrant,
which prints a warning at import when Vagrant is not installed yet, is not loaded
with the plugin.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

from pytest_vmcontainer.errors import PortInUse, TargetError, VmcError
from pytest_vmcontainer.host import accel as accellib
from pytest_vmcontainer.host import bases, libvirt, paths
from pytest_vmcontainer.host.ports import free_port
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.runtime.timing import Timer, time_once
from pytest_vmcontainer.targets.base import Export, Leftovers, Target, TargetSpec, resource_prefix
from pytest_vmcontainer.targets.vagrantcli import TrackedVagrant, vagrant_env

# Lines of `vagrant up` worth showing as progress (the rest goes to the log).
_PROGRESS_LINE = re.compile(r"^==> \w+: (Creating|Starting|Waiting|Machine booted|Running provis|"
                            r"Halting|Destroying|Removing)")
_RESOURCE_NAME = re.compile(r"^vmc-([0-9a-z]+)-")


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


class VagrantTarget(Target):
    kind = "vm"
    host_needs = ("libvirt",)

    def __init__(self, spec: TargetSpec, progress: Progress | None = None,
                 accel: accellib.Accel | None = None) -> None:
        super().__init__(spec, progress)
        self.accel = accel or accellib.Accel("tcg", "not probed")
        self.host_ports = spec.pick_host_ports()
        self.ssh_port = spec.pinned_ports.get(22) or free_port()
        self._vagrant: TrackedVagrant | None = None
        self.exported = False  # an app box was added from this VM (removed at destroy)

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
        """The box, when the Vagrantfile names ours; then KVM or TCG, probed on its kernel."""
        if bases.references(self.spec.vagrantfile, bases.BOX_NAME):
            bases.ensure_box(self.progress, self.spec.rebuild_bases, self.cancelled)
        self.accel = accellib.detect(bases.box_kernel())

    @property
    def resource_name(self) -> str:
        """The libvirt domain: vagrant-libvirt names it prefix + machine name."""
        return f"{self.domain_prefix}default"

    @property
    def domain_prefix(self) -> str:
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
        """A VAGRANT_HOME of this target's own, sharing only the boxes.

        Vagrant processes that share a VAGRANT_HOME touch each other's entries in
        its machine index and fail at random with "the machine is locked" when they
        run at once (density, concurrent sessions); a home per target avoids that.
        """
        home = self.spec.workdir / "vagrant.d"
        boxes = home / "boxes"
        if not boxes.is_symlink():
            home.mkdir(parents=True, exist_ok=True)
            boxes.symlink_to(paths.ensure_dir(paths.vagrant_home() / "boxes"))
        return home

    def _env(self) -> dict[str, str]:
        forwards = ",".join(f"{g}:{h}" for g, h in self.host_ports.items())
        return vagrant_env({
            "VAGRANT_HOME": str(self._vagrant_home()),
            "VAGRANT_VAGRANTFILE": self.spec.vagrantfile.name,
            "VAGRANT_DOTFILE_PATH": str(self.dotfile_path),
            "VMC_SSH_PORT": str(self.ssh_port),
            "VMC_FORWARDS": forwards,
            "VMC_DRIVER": self.accel.libvirt_driver,
            "VMC_DOMAIN_PREFIX": self.domain_prefix,
            "VMC_STORAGE_POOL": libvirt.POOL_NAME,
            "VMC_BOOT_TIMEOUT": str(int(self.spec.boot_timeout)),
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

    @property
    def _ports_file(self) -> Path:
        return self.spec.workdir / "ports.json"

    def up(self) -> None:
        # Saved first: a reused VM must come back on the same forwards.
        self._ports_file.write_text(json.dumps({"ssh": self.ssh_port, "forwards": {
            str(guest): host for guest, host in self.host_ports.items()}}))
        self._run_streamed(f"vagrant up {self.spec.vagrantfile}", provision=True)
        self.wait_ready()

    def resume(self) -> bool:
        """Bring back this session's VM (a reused target); False if there is none."""
        try:
            saved = json.loads(self._ports_file.read_text())
        except (OSError, ValueError):
            return False
        if not self.dotfile_path.exists():
            return False
        self.ssh_port = int(saved["ssh"])
        self.host_ports = {int(g): int(h) for g, h in saved["forwards"].items()}
        self._vagrant = None  # rebuilt with the saved ports
        state = self.vagrant.status()[0].state
        if state == "running":
            self.wait_ready()
        elif state in ("shutoff", "poweroff", "stopped"):
            self.start()
        else:
            return False
        return True

    def stop(self) -> None:
        with self.progress.step("vm: vagrant halt"):
            self.vagrant.halt()
        self._host = None

    def start(self) -> None:
        self._run_streamed("vagrant up --no-provision", provision=False)
        self.wait_ready()

    def destroy(self) -> None:
        """Callers stop our running vagrant command first (``procs.stop_all``)."""
        if self.dotfile_path.exists():
            cleanup = TrackedVagrant(self.spec.vagrantfile.parent, self._env(), self.log_path)
            try:
                cleanup.destroy()
            except subprocess.CalledProcessError:
                pass  # the libvirt sweep below removes what vagrant could not
        remove_libvirt_leftovers(self.domain_prefix)
        if self.exported:
            remove_app_boxes(self.app_box_name)
        self._host = None

    # --- export, instances, measurements ---------------------------------------------------

    @property
    def app_box_name(self) -> str:
        return f"{resource_prefix(self.spec.session_id)}app"

    @property
    def _app_vagrantfile(self) -> Path:
        return self.spec.workdir.parent / "app-vm" / "Vagrantfile"

    def export(self, directory: Path, timer: Timer | None = None) -> Export:
        """``vagrant package`` (timed alone); the box is then added for new instances, and the
        VM, which vagrant package halts, is started again."""
        path = directory / "app.box"
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
        return VagrantTarget(replace(spec, vagrantfile=self._app_vagrantfile), self.progress,
                             accel=self.accel)

    def package(self, output: Path) -> None:
        """``vagrant package`` (it halts the VM first), with the box's kernel and plumbing
        when the VM comes from the pytest-vmcontainer box."""
        box = bases.box_dir()
        include = [box / name for name in ("vmlinuz", "initrd.img", "vagrant_key")]
        embedded = box / "Vagrantfile"
        ours = embedded.exists() and all(p.exists() for p in include) and bases.references(
            self.spec.vagrantfile, bases.BOX_NAME)
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
        record = bases.BuildRecord.load("box")
        disk = self._disk_bytes()
        return {"footprint_bytes": disk, "disk_bytes": disk,
                "box_bytes": record.artifact_bytes if record else None}

    def _disk_bytes(self) -> int:
        blocks = libvirt.run_virsh("domblklist", self.resource_name, "--details").stdout
        disks = [line.split()[-1] for line in blocks.splitlines() if " disk " in f" {line} "]
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--backing-chain",
                                          "--output=json", disks[0]], capture_output=True,
                                         text=True, check=True).stdout)
        return sum(int(layer["actual-size"]) for layer in info)

    def usage(self) -> tuple[int, float]:
        """The QEMU process's RSS and CPU time."""
        import psutil

        pid = int(Path(f"/run/libvirt/qemu/{self.resource_name}.pid").read_text().strip())
        process = psutil.Process(pid)
        cpu = process.cpu_times()
        return int(process.memory_info().rss), cpu.user + cpu.system

    def describe_kept(self) -> str:
        return (f"vm {self.resource_name}: VAGRANT_HOME={paths.vagrant_home()} "
                f"VAGRANT_DOTFILE_PATH={self.dotfile_path} vagrant ssh "
                f"(from {self.spec.vagrantfile.parent})")

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

    def _make_host(self) -> Any:
        import testinfra

        ssh_config = self.spec.workdir / "ssh_config"
        ssh_config.write_text(self.vagrant.ssh_config())
        return testinfra.get_host("paramiko://default", ssh_config=str(ssh_config),
                                 sudo=True)  # root on both: containers run as root

    def facts(self) -> dict[str, Any]:
        facts = super().facts()
        facts.update(accel_reason=self.accel.reason, domain=self.resource_name)
        return facts
