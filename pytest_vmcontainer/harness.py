"""One run's targets: host setup, bases, concurrent bring-up, and a teardown that always runs.

Used by the pytest plugin (fixtures) and by the command line (``up``). Both
targets come up in background threads so they overlap; the main thread only
waits, so Ctrl-C and SIGTERM reach it and trigger ``teardown``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_vmcontainer import (
    accel,
    background,
    hashing,
    hostsetup,
    images,
    lifecycle,
    paths,
    probes,
    procs,
)
from pytest_vmcontainer.errors import VmcError
from pytest_vmcontainer.progress import Progress
from pytest_vmcontainer.targets.base import Target, TargetSpec
from pytest_vmcontainer.targets.docker import DockerTarget, connect
from pytest_vmcontainer.targets.vagrant import VagrantTarget, remove_app_boxes

KINDS = ("vm", "container")
KEEP_CHOICES = ("never", "on-failure", "always")


@dataclass
class HarnessConfig:
    vagrantfile: Path
    dockerfile: Path
    provision_inputs: tuple[Path, ...] = ()
    guest_ports: tuple[int, ...] = (80,)
    ready_path: str | None = "/"
    boot_timeout: float = 600.0
    rebuild_bases: bool = False
    keep: str = "never"
    reuse: bool = False
    setup_host: bool = True
    pinned_ports: dict[str, dict[int, int]] = field(default_factory=dict)  # kind -> ports

    def reuse_key(self) -> str:
        """Reused targets are keyed by everything that provisions them: never stale."""
        inputs = [self.vagrantfile, self.dockerfile, *self.provision_inputs]
        return hashing.content_hash(inputs, extra=[images.box_recipe_hash(),
                                                   images.docker_recipe_hash(),
                                                   repr(self.guest_ports)])[:12]


@dataclass(frozen=True)
class Artifact:
    """A provisioned target exported with its standard tool (docker save, vagrant package)."""

    path: Path
    bytes: int
    seconds: float
    format: str


class Harness:
    """Owns a session and its targets."""

    def __init__(self, config: HarnessConfig, progress: Progress) -> None:
        self.config = config
        self.progress = progress
        self.session: lifecycle.Session | None = None
        self.targets: dict[str, Target] = {}
        self.accel: accel.Accel | None = None
        self.swept: list[str] | None = None  # what the start-of-run sweep removed
        self._jobs: dict[str, background.Job[Target]] = {}
        self.extras: list[Target] = []  # more instances, made by probes from the exports
        self._made: list[Target] = []  # every extra instance ever made, discarded or not
        self.exports: dict[str, Artifact] = {}
        self.export_errors: dict[str, VmcError] = {}
        self._docker: Any = None
        self._lock = threading.Lock()
        self._torn_down = False

    @property
    def docker_client(self) -> Any:
        """The docker client, once a container target was started (else None)."""
        return self._docker

    @property
    def session_id(self) -> str:
        assert self.session is not None, "start() opens the session"
        return self.session.id

    # --- bring-up ------------------------------------------------------------------------

    def start(self, kinds: list[str]) -> None:
        """Start bringing up ``kinds`` (in the background); idempotent per kind."""
        with self._lock:
            wanted = [k for k in kinds if k not in self._jobs]
            if not wanted:
                return
            if self.session is None:
                self._open_session()
            if self.config.setup_host:
                hostsetup.ensure_host(self.progress, need_docker="container" in wanted,
                                      need_libvirt="vm" in wanted)
            if self._docker is None and "container" in wanted:
                self._docker = connect()
            if self.swept is None:
                self._sweep()
            for kind in wanted:
                self._jobs[kind] = background.Job(f"bring-up-{kind}", self._bring_up_work(kind))

    def _reuse_sources(self) -> dict[str, str]:
        return {"vagrantfile": str(self.config.vagrantfile),
                "dockerfile": str(self.config.dockerfile)}

    def _open_session(self) -> None:
        if self.config.reuse:
            self.session = lifecycle.Session.open(
                f"r{self.config.reuse_key()}", wait=True, marker=lifecycle.REUSE_MARKER,
                marker_text=json.dumps(self._reuse_sources()))
        else:
            self.session = lifecycle.Session.open()

    def _sweep(self) -> None:
        """Leftovers of crashed runs go; so do reusable targets made from older file contents."""
        swept = lifecycle.sweep(self._docker)
        if self.config.reuse:
            stale = lifecycle.stale_reuse_sessions(self._reuse_sources(), self.session_id)
            if stale:
                swept += lifecycle.sweep(self._docker, include_marked=True, only=stale)
        if swept:
            self.progress.say(f"swept: {', '.join(swept)}")
        self.swept = swept

    def _spec(self, kind: str) -> TargetSpec:
        assert self.session is not None
        return TargetSpec(
            session_id=self.session.id, workdir=self.session.dir / kind,
            vagrantfile=self.config.vagrantfile, dockerfile=self.config.dockerfile,
            provision_inputs=self.config.provision_inputs, guest_ports=self.config.guest_ports,
            ready_path=self.config.ready_path, boot_timeout=self.config.boot_timeout,
            pinned_ports=self.config.pinned_ports.get(kind, {}), log_dir=self._log_dir())

    @staticmethod
    def _log_dir(keep: int = 40) -> Path:
        """Target logs outlive their run (errors point at them); only the newest are kept."""
        directory = paths.ensure_dir(paths.home() / "logs")
        logs = sorted(directory.glob("*-vm.log")) + sorted(directory.glob("*-container.log"))
        for old in sorted(logs, key=lambda p: p.stat().st_mtime)[:-keep]:
            old.unlink(missing_ok=True)
        return directory

    def _bring_up_work(self, kind: str) -> Any:
        target: Target
        if kind == "container":
            target = DockerTarget(self._spec(kind), self.progress, client=self._docker)
        else:
            target = VagrantTarget(self._spec(kind), self.progress)
        self.targets[kind] = target  # registered before anything can fail: teardown sees it

        def work() -> Target:
            if kind == "container":
                if images.references(self.config.dockerfile, images.DOCKER_BASE_REPOSITORY):
                    images.ensure_docker_base(self.progress, self._docker,
                                              self.config.rebuild_bases, target.cancelled)
            else:
                assert isinstance(target, VagrantTarget)
                if images.references(self.config.vagrantfile, images.BOX_NAME):
                    images.ensure_box(self.progress, self.config.rebuild_bases, target.cancelled)
                self.accel = target.accel = accel.detect(images.box_kernel())
            started = time.monotonic()
            if self.config.reuse and target.resume():
                self.progress.say(f"{kind}: reusing {target.resource_name}")
            else:
                target.up()
            target.up_seconds = time.monotonic() - started
            return target

        return work

    def get(self, kind: str, on_wait: Callable[[], None] | None = None) -> Target:
        """Wait for ``kind`` to be up; raises its bring-up error (the same one each time).

        ``on_wait`` runs about twice a second in the waiting (main) thread, e.g. to
        show progress lines the background bring-ups produced.
        """
        self.start([kind])
        job = self._jobs[kind]
        while True:
            try:
                return job.wait(timeout=0.5)
            except background.StillRunning:
                if on_wait is not None:
                    on_wait()

    def started(self, kind: str) -> bool:
        return kind in self._jobs

    # --- exports and extra instances (comparison probes) -------------------------------------

    @property
    def app_box_name(self) -> str:
        return f"vmc-{self.session_id}-app"

    def export(self, kind: str, timer: probes.Timer | None = None) -> Artifact:
        """Export the provisioned target once per run (docker save, or vagrant package); only
        the export itself is timed. A VM's package is then added as a box for new instances,
        and the VM (which vagrant package halts) is started again."""
        if kind in self.exports:
            return self.exports[kind]
        if kind in self.export_errors:
            raise self.export_errors[kind]  # one attempt per run: every export user fails alike
        target = self.get(kind)
        directory = paths.ensure_dir(target.spec.workdir.parent / "export")
        if isinstance(target, DockerTarget):
            path, form = directory / "app-image.tar", "docker save (tar)"

            def export() -> None:
                with self.progress.step(f"container: docker save -> {path.name}"), \
                        open(path, "wb") as out:
                    for chunk in target.client.images.get(target.image).save(named=True):
                        out.write(chunk)
        else:
            assert isinstance(target, VagrantTarget)
            path, form = directory / "app.box", "vagrant package (libvirt box, gzip tar)"

            def export() -> None:
                target.package(path)

        try:
            seconds = (timer or probes.plain_timer(1, 0))(export, rounds=1, warmup=0)[-1]
        except VmcError as error:
            self.export_errors[kind] = error
            if isinstance(target, VagrantTarget):
                with contextlib.suppress(VmcError):  # the export's error is the one to show
                    target.start()  # vagrant package halts the VM before it can fail
            raise
        artifact = Artifact(path, path.stat().st_size, seconds, form)
        if isinstance(target, VagrantTarget):
            with self.progress.step(f"vm: vagrant box add {self.app_box_name}"):
                target.vagrant.add_box(self.app_box_name, path)
            self._write_app_vagrantfile(target)
            target.start()
        self.exports[kind] = artifact
        return artifact

    def _app_vagrantfile(self) -> Path:
        assert self.session is not None
        return self.session.dir / "app-vm" / "Vagrantfile"

    def _write_app_vagrantfile(self, vm: VagrantTarget) -> None:
        memory, cpus = vm.memory_and_cpus()
        path = self._app_vagrantfile()
        path.parent.mkdir(exist_ok=True)
        path.write_text(
            'Vagrant.configure("2") do |config|\n'
            f'  config.vm.box = "{self.app_box_name}"\n'
            '  config.vm.provider "libvirt" do |lv|\n'
            f"    lv.memory = {memory}\n"
            f"    lv.cpus = {cpus}\n"
            "  end\n"
            "end\n")

    def extra(self, kind: str, label: str) -> Target:
        """A new instance of ``kind`` from its export, destroyed at teardown at the latest."""
        base = self.get(kind)
        self.export(kind)
        spec = replace(self._spec(kind), name_suffix=label, poll_max=0.1,
                       workdir=base.spec.workdir.parent / f"{kind}-{label}")
        target: Target
        if isinstance(base, DockerTarget):
            target = DockerTarget(spec, self.progress, client=self._docker)
            target.image = base.image
        else:
            target = VagrantTarget(replace(spec, vagrantfile=self._app_vagrantfile()),
                                   self.progress, accel=self.accel)
        with self._lock:
            self.extras.append(target)
            self._made.append(target)
        return target

    def primed(self, kind: str) -> bool:
        """Whether an instance was already made from this run's export of ``kind``."""
        return any(t.kind == kind and t.was_ready for t in self._made)

    def discard(self, target: Target) -> None:
        target.destroy()
        with self._lock:
            if target in self.extras:
                self.extras.remove(target)

    # --- teardown ------------------------------------------------------------------------

    def teardown(self, failed: bool = False) -> list[str]:
        """Remove everything the run created, unless it is kept; returns what was kept."""
        with self._lock:
            if self._torn_down or self.session is None:
                return []
            self._torn_down = True
        keep = self.config.reuse or self.config.keep == "always" or (
            self.config.keep == "on-failure" and failed)
        for target in self.targets.values():
            target.cancelled.set()
        if keep:
            self._wait_for_bring_ups()
            kept = [self._describe_kept(t) for t in self.targets.values()]
            if not self.config.reuse:
                self.session.mark(lifecycle.KEPT_MARKER, "\n".join(kept))
            self.session.close(remove=False)
            return kept
        procs.stop_all()
        errors = []
        for target in [*self.extras, *self.targets.values()]:
            try:
                target.destroy()
            except Exception as error:  # keep going: the other target must go too
                errors.append(f"{target.resource_name}: {error}")
        if "vm" in self.exports:
            remove_app_boxes(f"vmc-{self.session_id}-")
        self.session.close(remove=True)
        if errors:
            raise VmcError("teardown could not remove everything ("
                           + "; ".join(errors) + ")",
                           "run 'python -m pytest_vmcontainer clean'")
        return []

    def _wait_for_bring_ups(self) -> None:
        for job in self._jobs.values():
            try:
                job.wait()
            except BaseException:
                pass

    def _describe_kept(self, target: Target) -> str:
        if isinstance(target, VagrantTarget):
            return (f"vm {target.resource_name}: VAGRANT_HOME={paths.vagrant_home()} "
                    f"VAGRANT_DOTFILE_PATH={target.dotfile_path} vagrant ssh "
                    f"(from {self.config.vagrantfile.parent})")
        return f"container {target.resource_name}: docker exec -it {target.resource_name} bash"
