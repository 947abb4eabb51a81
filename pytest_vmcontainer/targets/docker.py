"""The container target: the user's Dockerfile, built and run through the docker SDK."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from pytest_vmcontainer import hashing
from pytest_vmcontainer.errors import BuildError, TargetError
from pytest_vmcontainer.progress import Progress
from pytest_vmcontainer.targets.base import OWNER, OWNER_LABEL, SESSION_LABEL, Target, TargetSpec

APP_REPOSITORY = "pytest-vmcontainer/app"
DOCKERFILE_LABEL = "pytest-vmcontainer.dockerfile"


def connect() -> Any:
    """A docker client, or a one-line error saying how to get the engine running."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception as exc:
        raise TargetError(f"no Docker engine reachable ({type(exc).__name__})",
                          "start dockerd (python -m pytest_vmcontainer setup does it as root) "
                          "or set DOCKER_HOST") from None


def image_tag(spec: TargetSpec) -> str:
    """Name the app image by its Dockerfile's path and the content of its inputs.

    The path is part of the name because the image is labelled with it: two
    projects with identical files would otherwise take the tag from each other
    and leave dangling images behind.
    """
    dockerfile = spec.dockerfile
    inputs = [dockerfile, *spec.provision_inputs]
    if (dockerfile.parent / ".dockerignore").exists():
        inputs.append(dockerfile.parent / ".dockerignore")
    return f"{APP_REPOSITORY}:{hashing.content_hash(inputs, extra=[str(dockerfile)])[:16]}"


def remove_orphaned_images(client: Any) -> list[str]:
    """App images built from a Dockerfile that no longer exists (a deleted project)."""
    removed = []
    for image in client.images.list(filters={"label": f"{OWNER_LABEL}={OWNER}"}):
        dockerfile = (image.labels or {}).get(DOCKERFILE_LABEL)
        if dockerfile and not Path(dockerfile).exists():
            try:
                client.images.remove(image.id, force=False)
                removed.append(f"image {', '.join(image.tags) or image.short_id}")
            except docker.errors.APIError:
                pass  # a container (kept or reused) still uses it
    return removed


class DockerTarget(Target):
    kind = "container"

    def __init__(self, spec: TargetSpec, progress: Progress | None = None,
                 client: Any = None) -> None:
        super().__init__(spec, progress)
        self._client = client
        self.container: Any = None
        self._state_lock = threading.Lock()  # creation and teardown never interleave
        self.image: str | None = None
        self.build_seconds: float | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect()
        return self._client

    @property
    def mode(self) -> str:
        return "container"

    # --- build -----------------------------------------------------------------------------

    def build(self) -> str:
        """Build the app image from the Dockerfile (docker's layer cache makes repeats cheap)."""
        dockerfile = self.spec.dockerfile
        tag = image_tag(self.spec)
        started = time.monotonic()
        with self.progress.step(f"container: docker build {dockerfile}") as note, \
                open(self.log_path, "a") as log:
            stream = self.client.api.build(
                path=str(dockerfile.parent), dockerfile=dockerfile.name, tag=tag, rm=True,
                forcerm=True, decode=True,
                labels={OWNER_LABEL: OWNER, DOCKERFILE_LABEL: str(dockerfile)})
            for chunk in stream:
                self.check_cancelled()  # leaving the stream closes it: dockerd stops the build
                text = chunk.get("stream", "")
                log.write(text)
                if text.startswith("Step "):
                    note(text.strip())
                elif text.strip():
                    self.progress.detail(text)
                if "error" in chunk:
                    log.write(chunk["error"] + "\n")
                    log.flush()
                    raise BuildError(
                        f"provisioning failed in the container: {chunk['error'].strip()}",
                        f"fix the step in {dockerfile} or the script it runs (log {self.log_path})",
                        detail=self.log_tail())
        self.build_seconds = time.monotonic() - started
        self._drop_superseded_images(tag)
        self.image = tag
        return tag

    def _drop_superseded_images(self, current: str) -> None:
        """Older app images of the same Dockerfile are stale: remove those no container uses."""
        stale = self.client.images.list(
            filters={"label": f"{DOCKERFILE_LABEL}={self.spec.dockerfile}"})
        for image in stale:
            if current in image.tags:
                continue
            try:
                self.client.images.remove(image.id, noprune=False)
            except docker.errors.APIError:
                pass  # still used by a container (a kept or reused target)

    # --- lifecycle -------------------------------------------------------------------------

    def up(self) -> None:
        image = self.image or self.build()
        self.host_ports = self.spec.pick_host_ports()
        with self.progress.step(f"container: starting {self.resource_name}"):
            try:
                with self._state_lock:
                    self.check_cancelled()
                    self.container = self.client.containers.run(
                        image, detach=True, name=self.resource_name,
                        labels={OWNER_LABEL: OWNER, SESSION_LABEL: self.spec.session_id},
                        ports={f"{guest}/tcp": ("127.0.0.1", host)
                               for guest, host in self.host_ports.items()})
            except docker.errors.APIError as exc:
                explanation = str(getattr(exc, "explanation", exc))
                if "already allocated" in explanation or "address already in use" in explanation:
                    raise TargetError(f"a port for the container is already in use ({explanation})",
                                      "free the port or let the harness pick one") from None
                raise
            self._wait_running_and_ready()

    def resume(self) -> bool:
        """Adopt this session's existing container (a reused target); False if there is none."""
        try:
            container = self.client.containers.get(self.resource_name)
        except docker.errors.NotFound:
            return False
        self.container = container
        self.image = container.attrs["Config"]["Image"]
        bindings = container.attrs["HostConfig"]["PortBindings"] or {}
        self.host_ports = {int(key.split("/")[0]): int(value[0]["HostPort"])
                           for key, value in bindings.items() if value}
        if container.status != "running":
            self.start()
        return True

    def _wait_running_and_ready(self) -> None:
        self.container.reload()
        if self.container.status not in ("running", "created"):
            logs = self.container.logs(tail=20).decode(errors="replace")
            raise TargetError(f"the container exited right after start ({self.container.status})",
                              f"check the CMD of {self.spec.dockerfile}", detail=logs)
        self.wait_ready()

    def stop(self) -> None:
        if self.container is not None:
            self.container.stop(timeout=10)

    def start(self) -> None:
        self.container.start()
        self._wait_running_and_ready()

    def destroy(self) -> None:
        with self._state_lock:
            try:
                container = self.container or self.client.containers.get(self.resource_name)
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            self.container = None
            self._host = None

    def _make_host(self) -> Any:
        import testinfra

        if self.container is None:
            raise TargetError("the container is not running", "bring it up first")
        return testinfra.get_host(f"docker://{self.container.id}")

    def facts(self) -> dict[str, Any]:
        facts = super().facts()
        if self.container is not None:
            facts.update(container_id=self.container.id[:12], image=self.image)
        return facts
