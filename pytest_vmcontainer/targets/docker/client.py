"""The docker SDK's client for the engine ``DOCKER_HOST`` names (see ``host.engine``)."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_vmcontainer.errors import TargetError, VmcError
from pytest_vmcontainer.host import engine


def connect() -> Any:
    """A docker client, or a one-line error saying how to get the engine running (for an
    engine over SSH, what failed: see ``host.engine``)."""
    try:
        client = engine.client(timeout=120)
        client.ping()
        return client
    except VmcError:
        raise
    except Exception as exc:
        raise TargetError(f"no Docker engine reachable ({type(exc).__name__})",
                          "start dockerd (python -m pytest_vmcontainer setup does it as root) "
                          "or set DOCKER_HOST") from None


def local_dockerd_pid_file() -> Path | None:
    """The pid file of the dockerd on this host, when that is the engine in use."""
    if os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock") != \
            "unix:///var/run/docker.sock":
        return None
    pid_file = Path("/var/run/docker.pid")
    return pid_file if pid_file.exists() else None


def local_dockerd_started() -> str | None:
    """When the local dockerd started (its pid file's time, ISO UTC), if it is local."""
    pid_file = local_dockerd_pid_file()
    if pid_file is None:
        return None
    try:
        started = pid_file.stat().st_mtime
    except OSError:  # dockerd stopped in between
        return None
    return datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat()


@dataclass(frozen=True)
class ListedImage:
    """An image as the engine lists it: no inspect per image, so one that another run
    removes meanwhile is simply absent (the SDK's ``images.list`` inspects each and raises
    ``ImageNotFound`` for it)."""

    id: str
    tags: tuple[str, ...]
    labels: dict[str, str]


def listed_images(client: Any, filters: dict[str, Any]) -> list[ListedImage]:
    return [ListedImage(raw["Id"],
                        tuple(t for t in raw.get("RepoTags") or () if t != "<none>:<none>"),
                        raw.get("Labels") or {})
            for raw in client.api.images(filters=filters)]
