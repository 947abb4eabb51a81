"""A forward's port that another program binds after the harness picked it, on the real
engines: Docker's proxy and QEMU's user-mode network fail to bind it, and each target starts
again on new ports instead of failing the run (the restored VM keeps its saved state).

The other program is a socket listening here; the harness is handed its port as the first
pick of each target, the way a port taken in the window between pick and bind looks."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from pytest_vmcontainer.harness import Harness, HarnessConfig
from pytest_vmcontainer.host import ports
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.runtime.waiting import http_get
from tests.integration.conftest import ROOT, leftovers

pytestmark = pytest.mark.vm


def test_a_port_taken_after_the_pick_is_picked_again(docker_client: Any, shipped_vm: None,
                                                     leak_check: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        taken = other_program.getsockname()[1]
        picks: list[int] = []
        lock, real_pick = threading.Lock(), ports.free_port

        def first_picks_taken() -> int:
            with lock:
                picks.append(taken if len(picks) < 2 else real_pick())
                return picks[-1]

        monkeypatch.setattr(ports, "free_port", first_picks_taken)
        said: list[str] = []
        config = HarnessConfig(vagrantfile=ROOT / "Vagrantfile", dockerfile=ROOT / "Dockerfile",
                               provision_inputs=(ROOT / "fixtures",))
        harness = Harness(config, Progress(write=said.append))
        try:
            harness.start(["vm", "container"])
            vm, container = harness.get("vm"), harness.get("container")
            for target in (vm, container):
                assert target.host_ports[80] != taken
                assert http_get(target.url("/")).status == 200
        finally:
            harness.teardown()
    for kind in ("vm", "container"):
        assert f"[vmcontainer] {kind}: port {taken} on 127.0.0.1 is already in use, taken " \
            "since it was picked; starting again on new ports" in said, said
    assert "restored from the VM cache" in vm.origin, vm.origin  # its saved state kept
    assert picks[:2] == [taken, taken]
    assert leftovers(harness.session_id) == []
