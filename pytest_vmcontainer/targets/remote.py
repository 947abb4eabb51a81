"""A container on another host's Docker engine, with its ports on this host's 127.0.0.1.

With a local engine, ports are published on 127.0.0.1 at free ports the harness picks. With
an engine over SSH (``host.engine``), they are published on *that* host's loopback, at free
ports its engine picks (never on an address other networks reach), and one ``ssh -L``
(``runtime.sshforward``) brings each to the port the harness picked on this host's
127.0.0.1. Readiness, ``listening_ports`` (through the engine's exec API), the sweep and
``clean`` then work as they do locally: the engine is whichever ``DOCKER_HOST`` names.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pytest_vmcontainer.host import paths
from pytest_vmcontainer.host.engine import Engine
from pytest_vmcontainer.runtime import sshforward
from pytest_vmcontainer.runtime.waiting import LOOPBACK
from pytest_vmcontainer.targets.base import Leftovers

FORWARDS_RECORD = "ssh-forwards.json"  # in the target's workdir, inside its session


class Reach:
    """How one container's published ports are reached from this host."""

    def __init__(self, engine: Engine, workdir: Path, log: Path,
                 cancel: threading.Event) -> None:
        self.engine = engine
        self._workdir = workdir
        self._log = log.with_name(f"{log.stem}-ssh.log")  # kept with the build log
        self._cancel = cancel
        self.forwards: sshforward.SshForwards | None = None

    def publish(self, host_ports: dict[int, int]) -> dict[str, tuple[str, int | None]]:
        """The ``ports`` of ``containers.run``: guest port -> (address, port) on the engine's
        host; over SSH, a port its engine picks (``None``)."""
        over_ssh = self.engine.over_ssh
        return {f"{guest}/tcp": (LOOPBACK, None if over_ssh else host)
                for guest, host in host_ports.items()}

    def connect(self, container: Any, host_ports: dict[int, int], timeout: float) -> None:
        """Over SSH, forward each of ``host_ports`` (guest -> this host's port) to the port
        the engine published the guest port on; nothing to do for a local engine. A
        container that already stopped has no published ports: readiness says why."""
        if not self.engine.over_ssh:
            return
        container.reload()
        published = engine_ports(container.attrs)
        if container.status != "running" or not set(host_ports) <= set(published):
            return
        self.close()
        self.forwards = sshforward.SshForwards(
            self.engine.ssh_destination(),
            {host_ports[guest]: published[guest] for guest in host_ports},
            self._workdir / FORWARDS_RECORD, self._log, self._cancel)
        self.forwards.open(timeout)

    def close(self) -> None:
        if self.forwards is not None:
            self.forwards.close()
            self.forwards = None


def engine_ports(attrs: dict[str, Any]) -> dict[int, int]:
    """Guest TCP port -> the port the engine published it on (from the container's inspect
    data; the bindings a container was created with, when it is not running)."""
    bound = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    found = {}
    for key, bindings in bound.items():
        if key.endswith("/tcp") and bindings:
            found[int(key.split("/")[0])] = int(bindings[0]["HostPort"])
    return found


class ForwardLeftovers(Leftovers):
    """The ssh forwards of runs killed with SIGKILL (teardown stops a live run's own), of
    the targets of one ``kind`` (their work directories are named after it)."""

    def __init__(self, kind: str) -> None:
        self.pattern = f"{kind}*/{FORWARDS_RECORD}"

    def by_session(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for record in paths.sessions_dir().glob(f"*/{self.pattern}"):
            pid = sshforward.recorded_alive(record)
            if pid is not None:
                found.setdefault(record.parent.parent.name, []).append(f"ssh forward {pid}")
        return found

    def remove(self, session_id: str) -> list[str]:
        removed = []
        for record in (paths.sessions_dir() / session_id).glob(self.pattern):
            pid = sshforward.stop_recorded(record)
            if pid is not None:
                removed.append(f"ssh forward {pid}")
        return removed


class Together(Leftovers):
    """Several sources of one backend, as one: the forwards go before the containers."""

    def __init__(self, *sources: Leftovers) -> None:
        self.sources = sources

    def by_session(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for source in self.sources:
            for session_id, names in source.by_session().items():
                found.setdefault(session_id, []).extend(names)
        return found

    def remove(self, session_id: str) -> list[str]:
        return [name for source in self.sources for name in source.remove(session_id)]

    def remove_orphans(self) -> list[str]:
        return [name for source in self.sources for name in source.remove_orphans()]
