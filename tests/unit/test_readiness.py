"""Readiness of a target whose app does not come up: a stopped target ends the wait at once."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.errors import TargetError, TargetStopped
from pytest_vmcontainer.targets.base import Target, TargetSpec


class _Exited(Target):
    """A container whose command exited at once: nothing answers inside it."""

    kind = "container"
    polls = 0

    @property
    def mode(self) -> str:
        return "container"

    def listening_ports(self) -> dict[int, set[str]]:
        self.polls += 1
        raise RuntimeError("409 Conflict: the container is not running")

    def alive(self) -> str | None:
        return "the container vmc-1a2b-container is exited (exit code 1)"

    def service_log(self) -> str:
        return "No module named 'http'"

    def up(self) -> None: ...
    def stop(self) -> None: ...
    def start(self, ready_path: str | None = None) -> None: ...
    def destroy(self) -> None: ...

    def _make_host(self) -> Any:
        return None


def test_a_target_that_stopped_fails_readiness_at_once_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as forward:  # the engine's proxy accepts whether or not the app runs
        forward.bind(("127.0.0.1", 0))
        forward.listen()
        target = _Exited(TargetSpec("1a2b", tmp_path / "work", tmp_path / "Vagrantfile",
                                    tmp_path / "Dockerfile", guest_ports=(8080,),
                                    ready_timeout=600, log_dir=tmp_path))
        target.host_ports = {8080: forward.getsockname()[1]}
        with pytest.raises(TargetStopped) as stopped:
            target.wait_ready()  # not after 600 s: at the first poll
    assert target.polls == 1
    error = stopped.value
    assert isinstance(error, TargetError)
    assert error.cause == ("the container stopped before port 8080 served: the container "
                           "vmc-1a2b-container is exited (exit code 1)")
    assert "No module named 'http'" in error.detail


def test_a_spec_cannot_change_under_its_target(tmp_path: Path) -> None:
    spec = TargetSpec("1a2b", tmp_path / "work", tmp_path / "Vagrantfile", tmp_path / "Dockerfile")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.ready_path = "/"  # type: ignore[misc]
    assert dataclasses.replace(spec, ready_path="/").ready_path == "/"
    assert spec.ready_path is None
