"""What a restored VM needs before its tests, through the guest agent: the clock set and the
kernel's pool stirred; SSH stirs it when the agent refuses file writes."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from pytest_vmcontainer.host import libvirt
from pytest_vmcontainer.targets.vagrant import domain as domainlib


class FakeVirsh:
    """virsh as the agent answers it: ``refuse`` lists the agent commands that fail."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.refuse = refuse
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        if args[0] == "domtime":
            return subprocess.CompletedProcess(args, 0, "", "")
        request = json.loads(args[2])
        if request["execute"] in self.refuse:
            return subprocess.CompletedProcess(args, 1, "", "error: command is disabled")
        answers = {"guest-file-open": 7, "guest-file-close": {},
                   "guest-file-write": {"count": len(base64.b64decode(
                       request["arguments"].get("buf-b64", "")))}}
        return subprocess.CompletedProcess(args, 0, json.dumps(
            {"return": answers[request["execute"]]}), "")


@pytest.fixture
def virsh(monkeypatch: pytest.MonkeyPatch) -> FakeVirsh:
    fake = FakeVirsh()
    monkeypatch.setattr(libvirt, "run_virsh", fake)
    return fake


def test_the_clock_is_set_then_the_bytes_go_to_urandom(virsh: FakeVirsh, tmp_path: Path) -> None:
    domain = domainlib.LibvirtDomain("vmc-s1-default", tmp_path / "log")
    assert domain.continue_saved_boot(b"\x01" * 64)
    assert virsh.calls[0] == ("domtime", "vmc-s1-default", "--now")
    requests = [json.loads(call[2]) for call in virsh.calls[1:]]
    assert [r["execute"] for r in requests] == ["guest-file-open", "guest-file-write",
                                                 "guest-file-close"]
    assert requests[0]["arguments"] == {"path": "/dev/urandom", "mode": "w"}
    assert base64.b64decode(requests[1]["arguments"]["buf-b64"]) == b"\x01" * 64
    assert requests[1]["arguments"]["handle"] == requests[2]["arguments"]["handle"] == 7


@pytest.mark.parametrize("refused", ["guest-file-open", "guest-file-write"])
def test_an_agent_that_refuses_file_writes_says_so(virsh: FakeVirsh, tmp_path: Path,
                                                   refused: str) -> None:
    virsh.refuse = (refused,)
    domain = domainlib.LibvirtDomain("vmc-s1-default", tmp_path / "log")
    assert not domain.continue_saved_boot(b"\x01" * 64)
    executed = [json.loads(call[2])["execute"] for call in virsh.calls[1:]]
    if refused == "guest-file-write":  # an opened handle is closed all the same
        assert executed[-1] == "guest-file-close"


class FakeVm:
    def __init__(self, lazy: bool) -> None:
        self.memory_lazy = lazy
        self.calls: list[str] = []

    def stop(self) -> None:
        self.calls.append("stop")

    def start(self) -> None:
        self.calls.append("start")


def test_a_resumed_vm_is_booted_before_its_memory_is_measured() -> None:
    """A restored QEMU maps the guest's memory lazily: its RSS would depend on the start."""
    from pytest_vmcontainer.targets.vagrant.starts import booted_for_memory

    resumed = FakeVm(lazy=True)
    said = booted_for_memory(resumed)  # type: ignore[arg-type]
    assert resumed.calls == ["stop", "start"] and not resumed.memory_lazy
    assert said.startswith("booted for this measurement (it had resumed from a saved state")
    booted = FakeVm(lazy=False)
    assert booted_for_memory(booted) == "booted" and booted.calls == []  # type: ignore[arg-type]
