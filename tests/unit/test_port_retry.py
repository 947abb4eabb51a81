"""A picked port that another program binds before the engine does: the start is undone and
tried again on new ports; a pinned port that is taken stays the user's error. (For real, on
Docker and QEMU: tests/integration/test_port_taken.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.errors import PortInUse
from pytest_vmcontainer.host import ports
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.targets.base import PORT_ATTEMPTS, Target, TargetSpec


class Recording(Target):
    kind = "container"
    mode = "container"

    def up(self) -> None:
        raise AssertionError("started through on_picked_ports here")

    def start(self, ready_path: str | None = None) -> None:
        self.up()

    stop = destroy = up

    def _make_host(self) -> Any:
        raise AssertionError("no host here")


class Said(Progress):
    def __init__(self) -> None:
        self.lines: list[str] = []
        super().__init__(write=self.lines.append)


def _target(tmp_path: Path, pinned: dict[int, int] | None = None) -> tuple[Recording, Said]:
    said = Said()
    spec = TargetSpec("s1", tmp_path / "work", tmp_path / "Vagrantfile",
                      tmp_path / "Dockerfile", guest_ports=(80, 443), pinned_ports=pinned or {})
    return Recording(spec, said), said


@pytest.mark.parametrize(("message", "port"), [
    ("internal error: process exited while connecting to monitor: qemu-system-x86_64: "
     "Could not set up host forwarding rule 'tcp:127.0.0.1:23456-:80'", 23456),
    ("-netdev user,id=vmcfwd,hostfwd=tcp:127.0.0.1:22222-:22,hostfwd=tcp:127.0.0.1:23459-:80: "
     "Could not set up host forwarding rule 'tcp:127.0.0.1:23459-:80'", 23459),
    ("driver failed programming external connectivity on endpoint vmc-x-container: Error "
     "starting userland proxy: listen tcp4 127.0.0.1:23457: bind: address already in use", 23457),
    ("Bind for 127.0.0.1:23458 failed: port is already allocated", 23458),
    ("vagrant up failed", None),
])
def test_the_taken_port_is_read_from_the_engines_message(message: str,
                                                         port: int | None) -> None:
    assert PortInUse(detail=message).port == port
    assert PortInUse(8080).port == 8080


def test_a_taken_picked_port_is_undone_and_started_again_on_new_ports(tmp_path: Path) -> None:
    target, said = _target(tmp_path)
    seen: list[dict[int, int]] = []
    undone: list[dict[int, int]] = []

    def start() -> None:
        seen.append(dict(target.host_ports))
        if len(seen) == 1:
            raise PortInUse(detail=f"listen tcp4 127.0.0.1:{target.host_ports[80]}: bind: "
                            "address already in use")

    target.on_picked_ports(start, lambda: undone.append(dict(target.host_ports)))
    assert len(seen) == 2 and undone == [seen[0]]  # the failed attempt's, undone once
    assert seen[1][80] != seen[0][80] and target.host_ports == seen[1]
    assert said.lines == [f"[vmcontainer] container: port {seen[0][80]} on 127.0.0.1 is already "
                          "in use, taken since it was picked; starting again on new ports"]


def test_a_port_that_stays_taken_fails_after_the_last_attempt(tmp_path: Path) -> None:
    target, _ = _target(tmp_path)
    attempts: list[int] = []

    def start() -> None:
        attempts.append(target.host_ports[80])
        raise PortInUse(target.host_ports[80])

    undone: list[int] = []
    with pytest.raises(PortInUse):
        target.on_picked_ports(start, lambda: undone.append(1))
    assert len(attempts) == PORT_ATTEMPTS and len(undone) == PORT_ATTEMPTS - 1


def test_a_taken_pinned_port_is_the_users_error_at_once(tmp_path: Path) -> None:
    pinned = ports.free_port()
    target, said = _target(tmp_path, {80: pinned})
    undone: list[int] = []

    def start() -> None:
        raise PortInUse(detail=f"Bind for 127.0.0.1:{pinned} failed: port is already allocated")

    with pytest.raises(PortInUse) as raised:
        target.on_picked_ports(start, lambda: undone.append(1))
    assert raised.value.port == pinned and undone == [] and said.lines == []
