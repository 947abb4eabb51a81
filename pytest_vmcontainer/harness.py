"""One run's targets: a session, bring-up, extra instances, teardown.

Used by the pytest plugin (fixtures) and by the command line (``up``). Both
targets come up in background threads so they overlap (what each thread does is
``bringup``); the main thread only waits, so Ctrl-C and SIGTERM reach it and
trigger ``teardown``.

The harness asks its targets for everything that differs by backend; it knows
neither Docker nor Vagrant, nor the comparison's rows and probes. The comparison
reaches it through ``export``, ``extra``, ``primed`` and ``discard``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_vmcontainer import bringup, lifecycle, targets
from pytest_vmcontainer.errors import TargetError, VmcError
from pytest_vmcontainer.host import bases, paths, setup
from pytest_vmcontainer.runtime import background, hashing, procs
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.runtime.timing import Timer
from pytest_vmcontainer.targets.base import (
    DEFAULT_VM_CACHE_BYTES,
    Export,
    Leftovers,
    Target,
    TargetSpec,
)


def prune_logs(directory: Path, keep: int = 40) -> None:
    """Target logs outlive their run (errors point at them); only the newest ``keep`` stay.
    Runs at once on one machine prune the same directory: a log another run removed between
    the listing and its stat is simply gone already."""
    dated = []
    for log in [*directory.glob("*-vm.log"), *directory.glob("*-container.log")]:
        try:
            dated.append((log.stat().st_mtime, log.name, log))
        except FileNotFoundError:
            continue
    for _mtime, _name, old in sorted(dated)[:-keep]:
        old.unlink(missing_ok=True)


@dataclass
class HarnessConfig:
    vagrantfile: Path
    dockerfile: Path
    provision_inputs: tuple[Path, ...] = ()
    guest_ports: tuple[int, ...] = ()  # forwarded on top of the ports the files declare
    ready_path: str | None = None  # HTTP path that must answer 200 (None: TCP only)
    ready_port: int | None = None  # the guest port it applies to (None: 80 or the only one)
    boot_timeout: float = 600.0
    ready_timeout: float = 120.0
    rebuild_bases: bool = False
    keep: str = "never"
    reuse: bool = False
    vm_cache: bool = True
    vm_cache_bytes: int = DEFAULT_VM_CACHE_BYTES
    vm_restore: bool = True
    setup_host: bool = True
    pinned_ports: dict[str, dict[int, int]] = field(default_factory=dict)  # kind -> ports

    def reuse_key(self) -> str:
        """Reused targets are keyed by everything that provisions them (the same inputs hash
        as the reports) and the extra ports: never stale."""
        inputs = bases.inputs_hash(self.vagrantfile, self.dockerfile, self.provision_inputs)
        return hashing.content_hash([], extra=[inputs, repr(self.guest_ports)])[:12]

    @property
    def restores(self) -> bool:
        """Whether VMs may be restored from saved states: not for targets that outlive the
        run (kept, reused), whose saved state the next run could not restore while they live."""
        return self.vm_cache and self.vm_restore and self.keep == "never" and not self.reuse

    def target_spec(self, kind: str, session: lifecycle.Session, log_dir: Path) -> TargetSpec:
        """The spec of the run's target of ``kind`` (its guest ports: the extra ones only, until
        its bring-up adds what the files declare)."""
        return TargetSpec(
            session_id=session.id, workdir=session.dir / kind, vagrantfile=self.vagrantfile,
            dockerfile=self.dockerfile, provision_inputs=self.provision_inputs,
            guest_ports=self.guest_ports, ready_path=self.ready_path, ready_port=self.ready_port,
            boot_timeout=self.boot_timeout, ready_timeout=self.ready_timeout,
            pinned_ports=self.pinned_ports.get(kind, {}), log_dir=log_dir,
            rebuild_bases=self.rebuild_bases, vm_cache=self.vm_cache,
            vm_cache_bytes=self.vm_cache_bytes, vm_restore=self.restores)


MakeTarget = Callable[[str, TargetSpec, Progress], Target]
TeardownHook = Callable[[Target, bool], None]


@dataclass
class HarnessHooks:
    """Where the plugin's hookspecs plug in; the command line uses the defaults."""

    make_target: MakeTarget = targets.make
    ready: Callable[[Target], bool] | None = None  # app-specific readiness, polled
    teardown: TeardownHook | None = None  # each target, before it is removed or kept


class Harness:
    """Owns a session and its targets."""

    def __init__(self, config: HarnessConfig, progress: Progress,
                 hooks: HarnessHooks | None = None) -> None:
        self.config = config
        self.progress = progress
        self.hooks = hooks or HarnessHooks()
        self.session: lifecycle.Session | None = None
        self.targets: dict[str, Target] = {}
        self._unions: list[bringup.PortUnion] = []
        self._sweeping: background.Job[None] | None = None
        self._jobs: dict[str, background.Job[Target]] = {}
        self.extras: list[Target] = []  # more instances, made from the exports
        self._made: list[Target] = []  # every extra instance ever made, discarded or not
        self.exports: dict[str, Export] = {}
        self.export_errors: dict[str, VmcError] = {}
        self._lock = threading.Lock()
        self._torn_down = False

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
            self.open_session()
            made = [self._make(kind) for kind in wanted]
            if self.config.setup_host:
                needs = {need for target in made for need in target.host_needs}
                if needs:
                    setup.ensure_host(self.progress, needs)
            if self._sweeping is None:
                # Beside the bring-ups, not before them: it touches only dead sessions.
                self._sweeping = background.Job("sweep", lambda: self._sweep(made))
            union = bringup.PortUnion([target.kind for target in made], self.config.guest_ports)
            self._unions.append(union)
            for target in made:
                self._jobs[target.kind] = background.Job(f"bring-up-{target.kind}",
                                                         self._bring_up_work(target, union))

    def _make(self, kind: str) -> Target:
        target = self.hooks.make_target(kind, self._spec(kind), self.progress)
        if self.hooks.ready is not None:
            target.extra_ready = self.hooks.ready
        return target

    def _reuse_sources(self) -> dict[str, str]:
        return {"vagrantfile": str(self.config.vagrantfile),
                "dockerfile": str(self.config.dockerfile)}

    def open_session(self) -> lifecycle.Session:
        """The run's session (opened once): its id names everything the run creates."""
        if self.session is None:
            self._open_session()
        assert self.session is not None
        return self.session

    def _open_session(self) -> None:
        if self.config.reuse:
            self.session = lifecycle.Session.open(
                f"r{self.config.reuse_key()}", wait=True, marker=lifecycle.REUSE_MARKER,
                marker_text=json.dumps(self._reuse_sources()))
        else:
            self.session = lifecycle.Session.open()
        self.session.mark(lifecycle.INPUTS_FILE, json.dumps(
            {"hash": self.config.reuse_key(), **self._reuse_sources()}))
        # A reused session's last run published its outcome: not this run's.
        for stale in self.session.dir.glob(f"*{bringup.STATUS_SUFFIX}"):
            stale.unlink()

    def _sweep(self, made: list[Target]) -> None:
        """Leftovers of crashed runs go; so do reusable targets made from older file contents.
        Orphaned images wait for the teardown: a build beside this sweep may be reusing
        their layers from docker's cache ("No such image" halfway through the build)."""
        sources = self._leftover_sources(made)
        swept = lifecycle.sweep(sources, orphans=False)
        if self.config.reuse:
            stale = lifecycle.stale_reuse_sessions(self._reuse_sources(), self.session_id)
            if stale:
                swept += lifecycle.sweep(sources, include_marked=True, only=stale)
        if swept:
            self.progress.say(f"swept: {', '.join(swept)}")

    @staticmethod
    def _leftover_sources(made: Iterable[Target]) -> list[Leftovers]:
        found = (type(target).leftovers() for target in made)
        return [source for source in found if source is not None]

    def _remove_orphans(self) -> None:
        """What belongs to no session any more (images of deleted projects), once this run's
        builds are over; a failure is the next run's to retry."""
        for source in self._leftover_sources(self.targets.values()):
            try:
                removed = source.remove_orphans()
            except Exception as error:  # cleanup of others' leftovers must not fail the run
                self.progress.say(f"removing orphaned images failed: {error}")
                continue
            if removed:
                self.progress.say(f"removed: {', '.join(removed)}")

    def _spec(self, kind: str) -> TargetSpec:
        assert self.session is not None
        return self.config.target_spec(kind, self.session, self._log_dir())

    @staticmethod
    def _log_dir() -> Path:
        directory = paths.ensure_dir(paths.home() / "logs")
        prune_logs(directory)
        return directory

    def _bring_up_work(self, target: Target, union: bringup.PortUnion) -> Callable[[], Target]:
        self.targets[target.kind] = target  # registered before anything can fail: teardown sees it

        def work() -> Target:
            try:
                brought_up = bringup.bring_up(target, union, self.config.reuse, self.progress)
            except BaseException as error:
                self._publish(target.kind, error)
                raise
            self._publish(target.kind, None)
            return brought_up

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

    def _publish(self, kind: str, error: BaseException | None) -> None:
        if self.session is not None:
            bringup.publish(self.session.dir, kind, error)

    def publish_failure(self, kinds: list[str], error: VmcError) -> None:
        """Kinds that could not even start (host setup failed) fail the same way everywhere."""
        for kind in kinds:
            self._publish(kind, error)

    @property
    def declared_ports(self) -> dict[str, tuple[int, ...]]:
        """Kind -> the guest ports its files declare (known once it is prepared)."""
        return {kind: ports for union in self._unions for kind, ports in union.declared.items()}

    def started(self, kind: str) -> bool:
        return kind in self._jobs

    # --- exports and extra instances (what the comparison asks for) --------------------------

    def export(self, kind: str, timer: Timer | None = None) -> Export:
        """Export the provisioned target once per run (docker save, or vagrant package); only
        the export itself is timed. One attempt per run: every user of a failed export fails
        with the same error."""
        if kind in self.exports:
            return self.exports[kind]
        if kind in self.export_errors:
            raise self.export_errors[kind]
        target = self.get(kind)
        directory = paths.ensure_dir(target.spec.workdir.parent / "export")
        try:
            self.exports[kind] = targets.capabilities.as_exporting(target).export(directory, timer)
        except VmcError as error:
            self.export_errors[kind] = error
            raise
        return self.exports[kind]

    def extra(self, kind: str, label: str, **overrides: Any) -> Target:
        """A new instance of ``kind`` from its export, destroyed at teardown at the latest;
        ``overrides`` are TargetSpec fields for this instance (``volumes``, ``disk_cache``,
        ``ready_path``, ``vm_restore``: off unless asked for, as a measured start must boot)."""
        base = self.get(kind)
        self.export(kind)
        overrides["vm_restore"] = bool(overrides.get("vm_restore")) and self.config.restores
        spec = replace(self._spec(kind), name_suffix=label, poll_max=0.1,
                       guest_ports=base.spec.guest_ports,
                       workdir=base.spec.workdir.parent / f"{kind}-{label}", **overrides)
        target = targets.capabilities.as_exporting(base).instance_from_export(spec)
        if self.hooks.ready is not None:
            target.extra_ready = self.hooks.ready
        with self._lock:
            self.extras.append(target)
            self._made.append(target)
        return target

    def primed(self, kind: str) -> bool:
        """Whether a new instance from this run's export of ``kind`` starts as later ones will:
        the export says so (``Export.starts_warm``), or an instance was already made from it."""
        export = self.exports.get(kind)
        if export is not None and export.starts_warm:
            return True
        return any(t.kind == kind and t.was_ready for t in self._made)

    def discard(self, target: Target) -> None:
        target.destroy()
        with self._lock:
            if target in self.extras:
                self.extras.remove(target)

    def scratch_dir(self, name: str) -> Path:
        """A directory of this session's, removed at teardown (host-side measurements)."""
        assert self.session is not None
        return paths.ensure_dir(self.session.dir / name)

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
        for target in self.targets.values():
            target.settle()  # e.g. a VM cache entry written in the background
        if keep and self.targets:
            self._wait_for_bring_ups()
            self._run_teardown_hooks(self.targets.values(), kept=True)
            kept = [target.describe_kept() for target in self.targets.values()]
            if not self.config.reuse:
                self.session.mark(lifecycle.KEPT_MARKER, "\n".join(kept))
            self.session.close(remove=False)
            return kept
        procs.stop_all()
        self._wait_for_sweep()
        errors = []
        everything = [*self.extras, *self.targets.values()]
        self._run_teardown_hooks(self.targets.values(), kept=False)
        for target in everything:
            try:
                target.destroy()
            except Exception as error:  # keep going: the other target must go too
                errors.append(f"{target.resource_name}: {error}")
        # A session whose targets could not all go keeps its directory: the sweep of a later
        # run (or clean) finds the dead session and removes the rest.
        self.session.close(remove=not errors)
        self._remove_orphans()
        if errors:
            raise TargetError("teardown could not remove everything ("
                              + "; ".join(errors) + ")",
                              "run 'python -m pytest_vmcontainer clean'")
        return []

    def _run_teardown_hooks(self, ready: Any, kept: bool) -> None:
        if self.hooks.teardown is None:
            return
        for target in ready:
            if target.was_ready:
                try:
                    self.hooks.teardown(target, kept)
                except Exception as error:  # a hook must not stop the teardown
                    self.progress.say(f"teardown hook failed on the {target.kind}: {error}")

    def _wait_for_sweep(self) -> None:
        if self._sweeping is not None:
            try:
                self._sweeping.wait()
            except Exception as error:  # a failed sweep is the next run's to retry
                self.progress.say(f"the sweep of dead sessions failed: {error}")

    def _wait_for_bring_ups(self) -> None:
        self._wait_for_sweep()
        for job in self._jobs.values():
            try:
                job.wait()
            except BaseException:
                pass
