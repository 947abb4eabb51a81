"""The container target: the user's Dockerfile, built and run through the docker SDK.

Imported only when a container target is made (see ``targets.make``): the docker
SDK is not loaded with the plugin. The image build is ``images``, the export ``export``,
what the sweep finds ``leftovers``, the engine's client ``client``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from pytest_vmcontainer.errors import PortInUse, TargetError
from pytest_vmcontainer.host import bases, engine, paths, space
from pytest_vmcontainer.runtime import procnet
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.runtime.timing import Timer
from pytest_vmcontainer.runtime.waiting import NotReady, wait_for
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
from pytest_vmcontainer.targets.docker import export, images
from pytest_vmcontainer.targets.docker.client import (
    connect,
    local_dockerd_pid_file,
    local_dockerd_started,
)
from pytest_vmcontainer.targets.docker.leftovers import DockerLeftovers
from pytest_vmcontainer.targets.remote import ForwardLeftovers, Reach, Together

ENGINE_BACK_WAIT = 30.0  # seconds teardown waits for a dockerd that stopped to answer again


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
        return Together(ForwardLeftovers("container"), DockerLeftovers())

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

    def build(self) -> str:
        """Build the app image from the Dockerfile (``images.build``)."""
        return images.build(self)

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
        with self.progress.step(f"container: starting {self.resource_name}"):
            self.on_picked_ports(lambda: self._run(image), self._remove_container_and_volumes)
            self.save_state()
            self.reach.connect(self.container, self.host_ports, self.spec.ready_timeout)
            self._wait_running_and_ready()

    def _run(self, image: str) -> None:
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
        if pid and local_dockerd_pid_file() is not None and tables[0].exists():
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
        restarted = local_dockerd_started()
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
                self._remove_container_and_volumes()
            except requests.exceptions.ConnectionError:
                # dockerd stopped (a build or a test failed with it): a supervisor or the
                # next setup starts it again within seconds; wait once, else the session is
                # left to the next run's sweep.
                wait_for(self._engine_answers, timeout=ENGINE_BACK_WAIT,
                         what="the Docker engine to answer again")
                self._remove_container_and_volumes()
            self.container = None
            self._host = None

    def _remove_container_and_volumes(self) -> None:
        """This target's container (by name: one a failed start left created counts too) and
        its named volumes."""
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

    def _engine_answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except (requests.exceptions.RequestException, docker.errors.APIError):
            raise NotReady("dockerd does not answer yet") from None

    def _make_host(self) -> Any:
        import testinfra

        if self.container is None:
            raise TargetError("the container is not running", "bring it up first")
        return testinfra.get_host(f"docker://{self.container.id}")

    # --- export, instances, measurements ---------------------------------------------------

    def export(self, directory: Path, timer: Timer | None = None) -> Export:
        """``docker save`` of the app image into a tar; only the save is timed."""
        return export.export(self, directory, timer)

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

    def memory_as_booted(self) -> str:
        return "started by docker run"  # a container starts one way

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
