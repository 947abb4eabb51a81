"""A VM booting from a kept definition (starts.boot_defined): a domain that stops or goes
while the harness waits for SSH fails the start at once, not at the boot timeout; a libvirt
that cannot answer for a moment (a restarting libvirtd) does not."""

from __future__ import annotations

import subprocess
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_vmcontainer.errors import TargetError
from pytest_vmcontainer.host import libvirt
from pytest_vmcontainer.targets.vagrant import starts


def _vm(boot_timeout: float) -> Any:
    return SimpleNamespace(
        check_cancelled=lambda: None, memory_lazy=True, ssh_port=2222, mode="tcg",
        resource_name="vmc-x-default", spec=SimpleNamespace(boot_timeout=boot_timeout),
        domain=SimpleNamespace(name="vmc-x-default", start=lambda: None))


def _refused() -> bool:
    raise ConnectionRefusedError  # QEMU's forward with nothing listening behind it yet


@pytest.fixture
def domstate(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, str]]:
    """What ``virsh domstate`` answers, one after another (the last one stays)."""
    answers: list[tuple[int, str, str]] = []

    def run_virsh(*args: str) -> subprocess.CompletedProcess[str]:
        assert args[0] == "domstate"
        code, out, err = answers.pop(0) if len(answers) > 1 else answers[0]
        return subprocess.CompletedProcess(args, code, out, err)

    monkeypatch.setattr(libvirt, "run_virsh", run_virsh)
    monkeypatch.setattr(starts, "DOMAIN_CHECK_S", 0.0)
    monkeypatch.setattr(starts, "ssh_banner", lambda port: _refused)
    return answers


@pytest.mark.parametrize(("answer", "said"), [
    ((1, "", "error: failed to get domain 'vmc-x-default'"), "is gone"),
    ((0, "shut off\n", ""), "was shut off"),
    ((0, "crashed\n", ""), "crashed"),
])
def test_a_domain_that_ends_while_it_boots_fails_the_start_at_once(
        domstate: list[tuple[int, str, str]], answer: tuple[int, str, str], said: str) -> None:
    domstate.extend([(0, "running\n", ""), answer])
    with pytest.raises(TargetError) as raised:
        starts.boot_defined(_vm(boot_timeout=600))
    assert raised.value.cause == f"the VM's domain vmc-x-default {said} while it booted"


def test_a_libvirt_that_cannot_answer_is_not_the_domains_end(
        domstate: list[tuple[int, str, str]]) -> None:
    domstate.append((1, "", "error: failed to connect to the hypervisor"))
    with pytest.raises(TargetError) as raised:
        starts.boot_defined(_vm(boot_timeout=0.5))
    assert "did not answer SSH within its boot timeout" in raised.value.cause
