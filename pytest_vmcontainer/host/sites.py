"""Which machine each target's engine runs on, read from the settings alone.

The container runs where ``DOCKER_HOST`` points (this host, or another one over SSH); the
VM where ``VMC_LIBVIRT_URI`` points. A comparison is fair only with both on one machine, so
it is refused before anything starts when they differ (``runstate.comparison_refusal``).
Nothing here connects anywhere: a place is named by the host and SSH port the URL gives.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from pytest_vmcontainer.errors import HostSetupError
from pytest_vmcontainer.host import engine, libvirt

THIS_HOST = "this host"


@dataclass(frozen=True)
class Place:
    """Where one kind of target runs: ``machine`` is empty for this host, else the host and
    port it is reached at (the user does not count: two users of one host share its CPUs)."""

    machine: str
    shown: str  # for one-line messages and the report: "this host" or the engine's URL

    @property
    def here(self) -> bool:
        return not self.machine


def container_place() -> Place:
    current = engine.current()
    if not current.over_ssh:
        return Place("", THIS_HOST)
    return Place(current.ssh_machine, f"the Docker engine at {current.shown}")


def vm_place() -> Place:
    uri = libvirt.libvirt_uri()
    parts = urllib.parse.urlsplit(uri)
    if not parts.hostname:
        return Place("", THIS_HOST)
    default_port = engine.SSH_PORT if parts.scheme.endswith("+ssh") else 0
    return Place(f"{parts.hostname.lower()}:{parts.port or default_port}",
                 f"libvirt at {engine.shown(uri)}")


PLACES = {"vm": vm_place, "container": container_place}


def split(kinds: tuple[str, ...] | list[str]) -> str | None:
    """How the targets of ``kinds`` are spread over machines, when they are not on one
    (``"the vm on this host, the container on the Docker engine at ssh://..."``). A URL that
    does not parse says nothing here: the target's own start names it in one line."""
    try:
        places = {kind: PLACES[kind]() for kind in kinds if kind in PLACES}
    except (HostSetupError, ValueError):
        return None
    if len({place.machine for place in places.values()}) <= 1:
        return None
    return ", ".join(f"the {kind} on {place.shown}" for kind, place in places.items())
