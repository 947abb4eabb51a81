"""The VM's ports when it runs on libvirt on another machine (``host.libvirthost``).

QEMU there forwards each guest port to that host's 127.0.0.1, at the port picked here; one
``ssh -L`` (``runtime.sshforward``) brings them all to this host's 127.0.0.1 at the same
ports. It opens before the boot, as Vagrant's own SSH to the guest goes through it. Its
record in the target's work directory lets the sweep stop it after a SIGKILL.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from pytest_vmcontainer.host import libvirthost
from pytest_vmcontainer.runtime import sshforward
from pytest_vmcontainer.targets.remote import FORWARDS_RECORD

if TYPE_CHECKING:
    from pytest_vmcontainer.targets.vagrant import VagrantTarget

OPEN_TIMEOUT = 60.0


class HostForwards:
    """Open for a VM on another machine (none for this host's libvirt); close is idempotent."""

    def __init__(self) -> None:
        self._ssh: sshforward.SshForwards | None = None

    def open(self, vm: VagrantTarget) -> None:
        remote = libvirthost.current()
        if remote is None:
            return
        self.close()
        ports = sorted(set(vm.forwards().values()))
        self._ssh = sshforward.SshForwards(
            remote.ssh_destination(), {port: port for port in ports},
            vm.spec.workdir / FORWARDS_RECORD,
            vm.log_path.with_name(f"{vm.log_path.stem}-ssh.log"), vm.cancelled)
        with vm.progress.step(f"vm: forwarding {len(ports)} ports from {remote.hostname} to "
                              "this host's 127.0.0.1 (ssh -L)"):
            self._ssh.open(timeout=OPEN_TIMEOUT)

    def close(self) -> None:
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None


def login_argv(vm: VagrantTarget, command: list[str] | None) -> list[str] | None:
    """On libvirt on another machine: ssh to the guest through that host (``ProxyCommand``
    ``ssh -W`` to QEMU's forward on its 127.0.0.1), not through a kept VM's ``ssh -L``,
    which a dropped connection or a reboot here ends; None for this host's libvirt
    (``vagrant ssh``)."""
    remote = libvirthost.current()
    if remote is None:
        return None
    if not vm.ssh_config_path.exists():
        vm.ssh_config_path.write_text(vm.vagrant.ssh_config())
    *options, _, hostname = remote.ssh_destination()  # [options..., "--", host]
    proxy = shlex.join(["ssh", "-o", "BatchMode=yes", *options, "-W", "%h:%p", "--", hostname])
    guest = vm.machine_name  # the Host of ``vagrant ssh-config``
    return ["ssh", "-F", str(vm.ssh_config_path), "-o", f"ProxyCommand={proxy}",
            *(["-t", guest] if command is None else ["-T", guest, shlex.join(command)])]
