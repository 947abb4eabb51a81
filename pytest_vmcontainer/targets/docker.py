"""The container target: the user's Dockerfile, built and run through the docker SDK.

Imported only when a container target is made (see ``targets.make``): the docker
SDK is not loaded with the plugin.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from pytest_vmcontainer.errors import BuildError, PortInUse, TargetError, VmcError
from pytest_vmcontainer.host import bases, engine, paths, space
from pytest_vmcontainer.runtime import hashing, procnet
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.runtime.timing import Timer, time_once
from pytest_vmcontainer.targets.base import (
    OWNER,
    OWNER_LABEL,
    SESSION_LABEL,
    Export,
    Leftovers,
    Target,
    TargetSpec,
)
from pytest_vmcontainer.targets.capabilities import Attaching, Exporting, Measuring, Shell
from pytest_vmcontainer.targets.remote import ForwardLeftovers, Reach, Together

APP_REPOSITORY = "pytest-vmcontainer/app"
DOCKERFILE_LABEL = "pytest-vmcontainer.dockerfile"


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


def final_base(dockerfile: Path) -> str | None:
    """The image the Dockerfile's last stage builds FROM (through stage aliases), if any."""
    aliases: dict[str, str] = {}
    base = None
    for source, alias in bases.dockerfile_froms(dockerfile):
        base = aliases.get(source.lower(), source)
        if alias is not None:
            aliases[alias.lower()] = base
    return None if base in (None, "scratch") else base


def copy_layers(saved: Path, out: Path, skip: int) -> int:
    """Write ``out``: the config and the layers of ``saved`` (a docker save tar) after its
    first ``skip`` layers, with a manifest naming them; returns how many layers it holds.

    Works on both save formats (legacy ``<id>/layer.tar`` and OCI ``blobs/sha256/...``):
    manifest.json lists the layers in the image's order in both.
    """
    with tarfile.open(saved) as tar, tarfile.open(out, "w") as delta:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        entry = manifest[0]
        kept = entry["Layers"][skip:]
        for name in [entry["Config"], *kept]:
            data = tar.extractfile(name)  # a link to a layer stored once resolves to it
            if data is None:
                raise BuildError(f"docker save wrote {name} as something other than a file",
                                 "report this with the output of 'docker version'")
            info = tarfile.TarInfo(name)
            info.size = data.seek(0, io.SEEK_END)
            data.seek(0)
            delta.addfile(info, data)
        text = json.dumps([{**entry, "Layers": kept}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(text)
        delta.addfile(info, io.BytesIO(text))
    return len(kept)


def remove_orphaned_images(client: Any) -> list[str]:
    """App images built from a Dockerfile that no longer exists (a deleted project). Not on an
    engine over SSH: other runners' projects build there, from paths this host does not have."""
    removed: list[str] = []
    if engine.current().over_ssh:
        return removed
    for image in client.images.list(filters={"label": f"{OWNER_LABEL}={OWNER}"}):
        dockerfile = (image.labels or {}).get(DOCKERFILE_LABEL)
        if dockerfile and not Path(dockerfile).exists():
            try:
                client.images.remove(image.id, force=False)
                removed.append(f"image {', '.join(image.tags) or image.short_id}")
            except docker.errors.APIError:
                pass  # a container (kept or reused) still uses it
    return removed


def _local_dockerd_pid_file() -> Path | None:
    """The pid file of the dockerd on this host, when that is the engine in use."""
    import os

    if os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock") != \
            "unix:///var/run/docker.sock":
        return None
    pid_file = Path("/var/run/docker.pid")
    return pid_file if pid_file.exists() else None


def _local_dockerd_started() -> str | None:
    """When the local dockerd started (its pid file's time, ISO UTC), if it is local."""
    import datetime

    pid_file = _local_dockerd_pid_file()
    if pid_file is None:
        return None
    try:
        started = pid_file.stat().st_mtime
    except OSError:  # dockerd stopped in between
        return None
    return datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat()


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


class DockerTarget(Target, Exporting, Measuring, Attaching, Shell):
    kind = "container"
    host_needs = ("docker",)

    def __init__(self, spec: TargetSpec, progress: Progress | None = None,
                 client: Any = None) -> None:
        super().__init__(spec, progress)
        self._client = client
        self.container: Any = None
        self._state_lock = threading.Lock()  # creation and teardown never interleave
        self.image: str | None = None
        self.build_seconds: float | None = None
        # Published ports on the engine's host, reached here (SSH forwards for a remote one).
        self.reach = Reach(engine.current(), spec.workdir, self.log_path, self.cancelled)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect()
        return self._client

    @property
    def mode(self) -> str:
        return "container"

    @property
    def mode_reason(self) -> str:
        return self.reach.engine.described()

    @classmethod
    def leftovers(cls) -> Leftovers:
        return Together(ForwardLeftovers(), DockerLeftovers())

    def prepare(self) -> None:
        """The Debian base image when the Dockerfile builds FROM it, then the app image."""
        if bases.references(self.spec.dockerfile, bases.DOCKER_BASE_REPOSITORY):
            if self.spec.rebuild_bases or not bases.docker_base_current(self.client):
                space.require(self._base_build_needs())
            bases.ensure_docker_base(self.progress, self.client, self.spec.rebuild_bases,
                                     self.cancelled)
        if self.image is None:
            self.build()

    def _base_build_needs(self) -> list[space.Need]:
        """The base's root file system under VMC_HOME, and its image in a local engine's data
        (an engine on another machine checks its own disk)."""
        needs = [space.Need(paths.home(), space.DOCKER_BASE_BUILD, "the Docker base build")]
        root = Path(self.client.info().get("DockerRootDir") or "")
        if root.is_absolute() and root.exists() and self.client.api.base_url.startswith(
                ("http+docker://localhost", "http+docker://localunixsocket")):
            needs.append(space.Need(root, space.DOCKER_BASE_BUILD, "the Docker base image"))
        return needs

    def declared_ports(self) -> tuple[int, ...]:
        """The built image's exposed TCP ports (EXPOSE, including those of its bases)."""
        exposed = self.client.images.get(self.image).attrs["Config"].get("ExposedPorts") or {}
        return tuple(sorted(int(key.split("/")[0]) for key in exposed
                            if key.endswith("/tcp") or "/" not in key))

    # --- build -----------------------------------------------------------------------------

    def build(self) -> str:
        """Build the app image from the Dockerfile (docker's layer cache makes repeats cheap).

        Once more when an image the build took cached layers from was removed under it
        ("No such image": another run's cleanup, or ``docker image prune``)."""
        try:
            return self._build_once()
        except (docker.errors.ImageNotFound, BuildError) as error:
            if "no such image" not in str(error).lower():
                raise
            self.progress.say("container: an image the build reused was removed meanwhile "
                              "(another run's cleanup?); building again")
            return self._build_once()

    def _build_once(self) -> str:
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
                    unavailable = self._unavailable_base(chunk["error"])
                    if unavailable is not None:
                        raise BuildError(*unavailable, detail=self.log_tail())
                    raise BuildError(
                        f"provisioning failed in the container: {chunk['error'].strip()}",
                        f"fix the step in {dockerfile} or the script it runs (log {self.log_path})",
                        detail=self.log_tail())
        self.build_seconds = time.monotonic() - started
        self._drop_superseded_images(tag)
        self.image = tag
        return tag

    def _unavailable_base(self, error: str) -> tuple[str, str] | None:
        """(cause, remedy) when the build failed because a FROM image cannot be pulled."""
        pull_failed = any(marker in error for marker in (
            "pull access denied", "manifest unknown", "failed to resolve", "dial tcp",
            "no such host", "Temporary failure in name resolution", "connection refused",
            "i/o timeout", "TLS handshake timeout"))
        if not pull_failed:
            return None
        missing = [b for b in bases.dockerfile_bases(self.spec.dockerfile) if b in error]
        names = missing or bases.dockerfile_bases(self.spec.dockerfile)[:1] or ["its FROM image"]
        return bases.unavailable_base(names[0], "image")

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

    def volume_name(self, name: str) -> str:
        """The engine's name of the spec's volume ``name``: unique per target and session."""
        return f"{self.resource_name}-{name}"

    def _labels(self) -> dict[str, str]:
        return {OWNER_LABEL: OWNER, SESSION_LABEL: self.spec.session_id}

    def _create_volumes(self) -> dict[str, dict[str, str]]:
        """The spec's volumes, made now (labelled, so the sweep finds them after a crash)."""
        mounts = {}
        for name, path in self.spec.volumes.items():
            volume = self.client.volumes.create(name=self.volume_name(name),
                                                labels=self._labels())
            mounts[volume.name] = {"bind": path, "mode": "rw"}
        return mounts

    def up(self) -> None:
        image = self.image or self.build()
        self.host_ports = self.spec.pick_host_ports()
        with self.progress.step(f"container: starting {self.resource_name}"):
            try:
                with self._state_lock:
                    self.check_cancelled()
                    self.container = self.client.containers.run(
                        image, detach=True, name=self.resource_name, labels=self._labels(),
                        volumes=self._create_volumes(), ports=self.reach.publish(self.host_ports))
            except docker.errors.APIError as exc:
                explanation = str(getattr(exc, "explanation", exc))
                if "already allocated" in explanation or "address already in use" in explanation:
                    raise PortInUse(detail=explanation) from None
                raise
            self.save_state()
            self.reach.connect(self.container, self.host_ports, self.spec.ready_timeout)
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
        if self.reach.engine.over_ssh:  # the engine's host picked its ports: forwarded anew
            self.host_ports = self.spec.pick_host_ports()
        else:
            self.host_ports = {int(key.split("/")[0]): int(value[0]["HostPort"])
                               for key, value in bindings.items() if value}
        if container.status != "running":
            self.start()
        else:
            self.reach.connect(container, self.host_ports, self.spec.ready_timeout)
        return True

    def _wait_running_and_ready(self, ready_path: str | None = None) -> None:
        self.container.reload()
        if self.container.status not in ("running", "created"):
            logs = self.container.logs(tail=20).decode(errors="replace")
            raise TargetError(f"the container exited right after start ({self.container.status})",
                              f"check the CMD of {self.spec.dockerfile}", detail=logs)
        self.wait_ready(ready_path)

    def listening_ports(self) -> dict[int, set[str]]:
        """The container's own socket table. With a local engine it is read from the host, in
        ``/proc/<pid>/net`` of the container's process (microseconds, the same table the
        container sees); otherwise through the engine's exec API."""
        pid = int((self.container.attrs.get("State") or {}).get("Pid") or 0)
        tables = [Path(f"/proc/{pid}/net/{name}") for name in ("tcp", "tcp6")]
        if pid and _local_dockerd_pid_file() is not None and tables[0].exists():
            try:
                return procnet.listening("".join(t.read_text() for t in tables if t.exists()))
            except OSError:
                pass  # the process went away: ask the engine
        result = self.container.exec_run(["sh", "-c", procnet.COMMAND])
        return procnet.listening(result.output.decode("utf-8", "replace"))

    def service_log(self) -> str:
        if self.container is None:
            return self.log_tail()
        output = self.container.logs(tail=25).decode("utf-8", "replace").strip()
        return output or "(the container printed nothing)"

    def alive(self) -> str | None:
        if self.container is None:
            return "the container was never started"
        try:
            self.container.reload()
        except docker.errors.NotFound:
            return f"the container {self.resource_name} no longer exists"
        except docker.errors.DockerException as error:
            return f"the Docker engine does not answer ({type(error).__name__})"
        if self.container.status == "running":
            return None
        state = self.container.attrs.get("State", {})
        finished = str(state.get("FinishedAt", ""))[:19]
        why = ""
        restarted = _local_dockerd_started()
        if restarted is not None and finished and restarted[:19] >= finished:
            why = f", because its engine restarted (dockerd started {restarted[:19]} UTC)"
        return (f"the container {self.resource_name} is {self.container.status} (exit code "
                f"{state.get('ExitCode')} at {finished or '?'} UTC{why})")

    def stop(self) -> None:
        if self.container is not None:
            self.container.stop(timeout=10)

    def start(self, ready_path: str | None = None) -> None:
        self.container.start()
        self.reach.connect(self.container, self.host_ports, self.spec.ready_timeout)
        self._wait_running_and_ready(ready_path)

    def destroy(self) -> None:
        with self._state_lock:
            self.reach.close()
            try:
                container = self.container or self.client.containers.get(self.resource_name)
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            for name in self.spec.volumes:  # named volumes outlive their container otherwise
                try:
                    self.client.volumes.get(self.volume_name(name)).remove(force=True)
                except docker.errors.NotFound:
                    pass
            self.container = None
            self._host = None

    def _make_host(self) -> Any:
        import testinfra

        if self.container is None:
            raise TargetError("the container is not running", "bring it up first")
        return testinfra.get_host(f"docker://{self.container.id}")

    # --- export, instances, measurements ---------------------------------------------------

    def export(self, directory: Path, timer: Timer | None = None) -> Export:
        """``docker save`` of the app image into a tar; only the save is timed."""
        path = directory / "app-image.tar"

        def save() -> None:
            with self.progress.step(f"container: docker save -> {path.name}"), \
                    open(path, "wb") as out:
                for chunk in self.client.images.get(self.image).save(named=True):
                    out.write(chunk)

        seconds = time_once(save, timer)
        delta, what = self._app_layers(path, directory / "app-layers.tar")
        return Export(path, path.stat().st_size, seconds, "docker save (tar)", delta, what)

    def _app_layers(self, saved: Path, out: Path) -> tuple[Path, str]:
        """What a host that already has the Dockerfile's base image needs: the layers above
        the base's (when the base is not found locally, every layer)."""
        layers = list(self.client.images.get(self.image).attrs["RootFS"]["Layers"])
        reference = final_base(self.spec.dockerfile)
        below: list[str] = []
        if reference is not None:
            try:
                below = list(self.client.images.get(reference).attrs["RootFS"]["Layers"])
            except docker.errors.APIError:  # ImageNotFound included: e.g. an ARG in FROM
                below = []
        shared = len(below) if layers[:len(below)] == below else 0
        kept = copy_layers(saved, out, shared)
        base = (f"not in the base image {reference}" if shared else
                f"every layer: the base {reference or '(none)'} is not found locally")
        return out, f"{kept} of {len(layers)} layers and the image config, {base}"

    def instance_from_export(self, spec: TargetSpec) -> DockerTarget:
        instance = DockerTarget(spec, self.progress, client=self.client)
        instance.image = self.image
        return instance

    def footprint(self) -> dict[str, Any]:
        """Image size plus the container's writable layer."""
        image = self.client.images.get(self.image)
        size = int(image.attrs["Size"])
        base = bases.BuildRecord.load("docker-base")
        listed = self.client.api.containers(all=True, size=True,
                                            filters={"id": self.container.id})
        rw = int(listed[0].get("SizeRw") or 0)
        return {"footprint_bytes": size + rw, "image_bytes": size, "rw_bytes": rw,
                "unique_bytes": size - base.artifact_bytes if base else None,
                "parent": (image.attrs.get("Parent") or "")[:19]}

    def usage(self) -> tuple[int, float]:
        """The container's cgroup memory (without inactive file cache) and CPU time."""
        stats = self.container.stats(stream=False, one_shot=True)
        memory = stats["memory_stats"]
        detail = memory.get("stats", {})
        inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
        return (int(memory["usage"]) - int(inactive),
                int(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "image": self.image,
                "container_id": self.container.id if self.container is not None else None}

    @classmethod
    def attach(cls, spec: TargetSpec, state: dict[str, Any]) -> DockerTarget:
        target = cls(spec)
        target.image = state.get("image")
        target.host_ports = {int(g): int(h) for g, h in state["forwards"].items()}
        try:
            target.container = target.client.containers.get(state["resource"])
            target.was_ready = True
        except docker.errors.NotFound:
            target.container = None
        return target

    def shell(self, command: list[str] | None = None) -> tuple[list[str], dict[str, str] | None,
                                                            Path | None]:
        if command:
            return ["docker", "exec", self.resource_name, *command], None, None
        return (["docker", "exec", "-it", self.resource_name, "sh", "-c",
                 "command -v bash >/dev/null && exec bash || exec sh"], None, None)

    def facts(self) -> dict[str, Any]:
        facts = super().facts()
        if self.container is not None:
            facts.update(container_id=self.container.id[:12], image=self.image)
        if self.reach.engine.over_ssh:
            facts.update(engine=self.reach.engine.shown)
        return facts
