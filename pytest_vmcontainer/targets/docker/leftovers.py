"""What the sweep and ``clean`` find of the container target: containers and volumes by
session, app images of deleted projects; and whether the engine is this host's dockerd."""

from __future__ import annotations

from typing import Any

from pytest_vmcontainer.errors import VmcError
from pytest_vmcontainer.targets.base import OWNER, OWNER_LABEL, SESSION_LABEL, Leftovers
from pytest_vmcontainer.targets.docker.client import connect
from pytest_vmcontainer.targets.docker.images import remove_orphaned_images


class DockerLeftovers(Leftovers):
    """Containers and volumes labelled with a session id; app images of deleted projects."""

    def __init__(self) -> None:
        self._client: Any = None

    def _engine(self) -> Any:
        if self._client is None:
            try:
                self._client = connect()
            except VmcError:
                return None  # no engine there: nothing of ours can run in it
        return self._client

    def _containers(self, session_id: str | None = None) -> list[Any]:
        client = self._engine()
        if client is None:
            return []
        label = f"{SESSION_LABEL}={session_id}" if session_id else f"{OWNER_LABEL}={OWNER}"
        # ignore_removed: another run may remove one between docker's list and its inspect
        return list(client.containers.list(all=True, filters={"label": label},
                                           ignore_removed=True))

    def _volumes(self, session_id: str | None = None) -> list[Any]:
        client = self._engine()
        if client is None:
            return []
        label = f"{SESSION_LABEL}={session_id}" if session_id else f"{OWNER_LABEL}={OWNER}"
        return list(client.volumes.list(filters={"label": label}))

    def by_session(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for container in self._containers():
            session_id = container.labels.get(SESSION_LABEL, "")
            found.setdefault(session_id, []).append(f"container {container.name}")
        for volume in self._volumes():
            session_id = (volume.attrs.get("Labels") or {}).get(SESSION_LABEL, "")
            found.setdefault(session_id, []).append(f"volume {volume.name}")
        return found

    def remove(self, session_id: str) -> list[str]:
        removed = []
        for container in self._containers(session_id):
            container.remove(force=True, v=True)
            removed.append(f"container {container.name}")
        for volume in self._volumes(session_id):  # after the containers that mount them
            volume.remove(force=True)
            removed.append(f"volume {volume.name}")
        return removed

    def remove_orphans(self) -> list[str]:
        client = self._engine()
        return remove_orphaned_images(client) if client is not None else []
