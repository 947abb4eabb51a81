"""Why a vagrant command failed, read from the tail of the target's log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pytest_vmcontainer.errors import Cancelled, EngineStopped, PortInUse, TargetError, VmcError
from pytest_vmcontainer.host import bases, libvirt

if TYPE_CHECKING:
    from pytest_vmcontainer.targets.vagrant import VagrantTarget


def boot_timeout(vm: VagrantTarget, detail: str = "") -> TargetError:
    return TargetError(
        f"the VM did not answer SSH within its boot timeout "
        f"({vm.spec.boot_timeout:.0f}s, {vm.mode.upper()})",
        "raise the boot timeout (pytest --vmc-boot-timeout, up --boot-timeout), or "
        f"check the guest in /var/log/libvirt/qemu/{vm.resource_name}.log", detail=detail)


def libvirt_daemon_gone(vm: VagrantTarget, step: str, error: VmcError) -> EngineStopped | None:
    """When libvirtd or virtlogd stopped or restarted under ``step`` since the VM's start
    began: the daemon's fault, not the project's, in one line; else None."""
    if isinstance(error, EngineStopped | PortInUse | Cancelled):
        return None  # named already, another program's port, or an interrupt
    gone = libvirt.daemon_went_away(vm.libvirt_daemons_before,
                                    f"{error.cause}\n{error.detail}")
    if gone is None:
        return None
    daemon, now = gone
    said = " ".join(error.cause.split())
    return EngineStopped(
        f"{daemon} stopped during {step} ({daemon} {now}; the step said: {said})",
        f"run again once {daemon} answers (python -m pytest_vmcontainer setup starts it); "
        "check what stopped it", detail=error.detail)


@contextmanager
def libvirt_daemons_named(vm: VagrantTarget, step: str) -> Iterator[None]:
    """A failure of ``step`` that a libvirt daemon's stop or restart caused says so."""
    try:
        yield
    except VmcError as error:
        gone = libvirt_daemon_gone(vm, step, error)
        if gone is None:
            raise
        raise gone from None


def explain_up_failure(vm: VagrantTarget) -> TargetError:
    tail = vm.log_tail(40)
    box = vm.machine.box if vm.machine else None
    if box and "could not be found or" in tail and "remote catalog" in tail:
        cause, remedy = bases.unavailable_base(box, "box")
        return TargetError(cause, remedy, detail=tail)
    if "Timed out while waiting for the machine to boot" in tail:
        return boot_timeout(vm, detail=tail)
    if "non-zero exit status" in tail or "provisioner" in tail.lower():
        return TargetError("provisioning failed in the VM (the shell provisioner exited "
                           "non-zero)",
                           f"fix the provisioning script; the log is {vm.log_path}",
                           detail=tail)
    if "address already in use" in tail.lower() or "Could not set up host forwarding" in tail:
        return PortInUse(detail=tail)
    return TargetError("vagrant up failed", f"see {vm.log_path}", detail=tail)


def explain_package_failure(vm: VagrantTarget) -> TargetError:
    tail = vm.log_tail(40)
    tool = next((name for name in ("virt-sysprep", "virt-sparsify")
                 if f"No such file or directory - {name}" in tail), None)
    if tool is not None:
        return TargetError(f"vagrant package needs {tool}, which is not installed",
                           "run 'python -m pytest_vmcontainer setup' (it installs "
                           "libguestfs-tools)", detail=tail)
    return TargetError("vagrant package failed", f"see {vm.log_path}", detail=tail)
