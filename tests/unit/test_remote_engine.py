"""A container on an engine over SSH: ports published on that host's loopback, reached here
through forwards, and the forwards of a killed run found and stopped by the sweep."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer import lifecycle
from pytest_vmcontainer.host import paths
from pytest_vmcontainer.host.engine import Engine
from pytest_vmcontainer.runtime import procs, sshforward
from pytest_vmcontainer.targets import remote
from pytest_vmcontainer.targets.base import Leftovers

LOCAL = Engine.parse("unix:///var/run/docker.sock")
OVER_SSH = Engine.parse("ssh://root@127.0.0.1:2222")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    return tmp_path / "home"


def _reach(engine: Engine, tmp_path: Path) -> remote.Reach:
    return remote.Reach(engine, tmp_path, tmp_path / "log", threading.Event())


def test_a_local_engine_publishes_on_loopback_at_the_chosen_ports(tmp_path: Path) -> None:
    assert _reach(LOCAL, tmp_path).publish({80: 41000}) == {"80/tcp": ("127.0.0.1", 41000)}


def test_an_engine_over_ssh_publishes_on_its_own_loopback(tmp_path: Path) -> None:
    # The engine picks a free port of its host; never an address other networks reach.
    assert _reach(OVER_SSH, tmp_path).publish({80: 41000, 8080: 41001}) == {
        "80/tcp": ("127.0.0.1", None), "8080/tcp": ("127.0.0.1", None)}


class _Container:
    def __init__(self, status: str, ports: dict[str, Any]) -> None:
        self.status = status
        self.attrs = {"NetworkSettings": {"Ports": ports}}

    def reload(self) -> None:
        pass


def test_the_engine_ports_are_read_from_inspect() -> None:
    attrs = {"NetworkSettings": {"Ports": {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}], "53/udp": None,
        "443/tcp": None}}}
    assert remote.engine_ports(attrs) == {80: 32768}
    assert remote.engine_ports({}) == {}


def test_forwards_go_from_the_chosen_port_to_the_engines(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[list[str], dict[int, int]]] = []

    class Forwards:
        def __init__(self, destination: list[str], ports: dict[int, int], *rest: Any) -> None:
            opened.append((destination, ports))

        def open(self, timeout: float) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(sshforward, "SshForwards", Forwards)
    reach = _reach(OVER_SSH, tmp_path)
    reach.connect(_Container("running", {"80/tcp": [{"HostPort": "32768"}]}), {80: 41000}, 5)
    assert opened == [(["-l", "root", "-p", "2222", "--", "127.0.0.1"], {41000: 32768})]
    # A container that stopped at once has no ports to forward: readiness says why.
    reach.connect(_Container("exited", {}), {80: 41000}, 5)
    _reach(LOCAL, tmp_path).connect(_Container("running", {}), {80: 41000}, 5)
    assert len(opened) == 1


def test_the_sweep_stops_the_forwards_of_a_dead_session_only(
        home: Path, started: list[subprocess.Popen[bytes]]) -> None:
    """A killed run's ssh is found through its record; a live run's is left alone."""
    forwarders = {}
    for session in ("dead", "live"):
        workdir = paths.sessions_dir() / session / "container"
        workdir.mkdir(parents=True)
        process = procs.spawn(["sleep", "60"])  # stands for the ssh the run left
        started.append(process)
        forwarders[session] = process
        (workdir / remote.FORWARDS_RECORD).write_text(json.dumps(
            {"pid": process.pid, "start": sshforward.start_time(process.pid)}))
    live = lifecycle.Session.open("live")  # holds the live session's lock
    try:
        source = remote.ForwardLeftovers("container")
        assert remote.ForwardLeftovers("vm").by_session() == {}  # each backend its own
        assert source.by_session() == {
            "dead": [f"ssh forward {forwarders['dead'].pid}"],
            "live": [f"ssh forward {forwarders['live'].pid}"]}
        removed = lifecycle.sweep([source])
        assert f"ssh forward {forwarders['dead'].pid}" in removed
        assert forwarders["dead"].wait(timeout=10) == -signal.SIGTERM
        assert forwarders["live"].poll() is None
    finally:
        live.close()


class _Named(Leftovers):
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[str] = []

    def by_session(self) -> dict[str, list[str]]:
        return {"s1": [self.name]}

    def remove(self, session_id: str) -> list[str]:
        self.calls.append(session_id)
        return [self.name]

    def remove_orphans(self) -> list[str]:
        return [f"orphan of {self.name}"]


def test_together_is_one_source_in_order() -> None:
    first, second = _Named("ssh forward 1"), _Named("container c")
    together = remote.Together(first, second)
    assert together.by_session() == {"s1": ["ssh forward 1", "container c"]}
    assert together.remove("s1") == ["ssh forward 1", "container c"]
    assert together.remove_orphans() == ["orphan of ssh forward 1", "orphan of container c"]


def test_orphaned_images_are_left_alone_on_an_engine_over_ssh(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Other runners build there from paths this host does not have: not orphans of ours."""
    from pytest_vmcontainer.targets.docker import images as docker_images

    class NoListing:
        class api:
            @staticmethod
            def images(**_: object) -> list[object]:
                raise AssertionError("listed the images of a remote engine")

    monkeypatch.setenv("DOCKER_HOST", "ssh://ci@build-7")
    assert docker_images.remove_orphaned_images(NoListing()) == []
