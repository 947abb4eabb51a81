"""The docker SDK's client for the engine ``DOCKER_HOST`` names (see ``host.engine``)."""

from __future__ import annotations

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
