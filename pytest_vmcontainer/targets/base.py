"""The Target interface: one small base class, one module per backend (Docker, Vagrant).

A target is built from the user's Vagrantfile or Dockerfile, comes up with its
guest ports forwarded to free ports on 127.0.0.1, and is read through a
testinfra Host. ``destroy`` is idempotent and safe after a partial ``up``, so
callers register it before calling ``up``.

This is the core every backend has: what the harness needs to bring a target up,
test it and tear it down (including what a dead session left behind), so the
harness and the sweep never ask which backend they hold. What only some backends
can do (export, measure, attach from another process, open a shell) is an
optional capability a backend declares (``capabilities``); who needs one checks
for it before any work starts.
"""

from __future__ import annotations

import abc
import json
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_vmcontainer.errors import (
    Cancelled,
    PortInUse,
    TargetError,
    TargetStopped,
    WaitTimeout,
)
from pytest_vmcontainer.host import ports as portlib
from pytest_vmcontainer.runtime import logtail, procnet
from pytest_vmcontainer.runtime.progress import Progress, quiet
from pytest_vmcontainer.runtime.waiting import LOOPBACK, http_ok, tcp_open, wait_for
from pytest_vmcontainer.targets import capabilities

OWNER_LABEL = "pytest-vmcontainer.owner"
SESSION_LABEL = "pytest-vmcontainer.session"
OWNER = "pytest-vmcontainer"


def resource_prefix(session_id: str) -> str:
    """Every container, domain and volume of a session starts with this."""
    return f"vmc-{session_id}-"


DEFAULT_VM_CACHE_BYTES = 20 * 2**30  # the provisioned-VM cache's disk budget (--vmc-vm-cache-size)
PORT_ATTEMPTS = 3  # starts on newly picked ports when another program took a picked one


@dataclass(frozen=True)
class TargetSpec:
    """What to bring up and how; the same for both backends.

    Frozen: a spec never changes under a target that holds it. Who needs another one (the
    ports every target of a bring-up agreed on, an extra instance's overrides) makes it with
    ``dataclasses.replace`` and hands it over."""

    session_id: str
    workdir: Path  # per-target state: vagrant dotfiles, ssh config (removed at teardown)
    vagrantfile: Path
    dockerfile: Path
    provision_inputs: tuple[Path, ...] = ()  # files the provisioning reads (keys caches)
    guest_ports: tuple[int, ...] = (80,)  # forwarded to free loopback ports (see harness)
    ready_path: str | None = None  # HTTP path that must answer 200; None: TCP only
    ready_port: int | None = None  # the guest port ready_path applies to (None: the first)
    boot_timeout: float = 600.0
    ready_timeout: float = 120.0
    pinned_ports: dict[int, int] = field(default_factory=dict)  # guest port -> host port
    log_dir: Path | None = None  # where the build/provisioning log outlives the run
    name_suffix: str = ""  # tells apart extra instances of a kind (boot and density probes)
    poll_max: float = 1.0  # longest pause between readiness polls (short for boot timing)
    rebuild_bases: bool = False
    # Engine-managed volumes: a name local to the target -> the mount path inside. Made with
    # the target (labelled with the session), removed with it and by the sweep.
    volumes: dict[str, str] = field(default_factory=dict)
    # The VM's disk cache mode (libvirt's driver cache, e.g. "none": guest O_DIRECT I/O then
    # bypasses the host's page cache); None keeps the provider's default.
    disk_cache: str | None = None
    vm_cache: bool = True  # start a VM from the provisioned-VM cache when it has its inputs
    vm_cache_bytes: int = DEFAULT_VM_CACHE_BYTES  # what the VM cache may hold on disk
    # Restore a saved running VM of the cache entry instead of booting (targets.vmsaved):
    # for the run's VM and instances whose start is not what a row measures.
    vm_restore: bool = False

    def pick_host_ports(self) -> dict[int, int]:
        return {guest: portlib.ensure_free(self.pinned_ports[guest]) if guest in self.pinned_ports
                else portlib.free_port() for guest in self.guest_ports}


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Export:
    """A provisioned target exported with its standard tool (docker save, vagrant package)."""

    path: Path
    bytes: int
    seconds: float
    format: str
    # What moves to a host that already has the base the target was built from (for an
    # image, its layers above the base's), written beside ``path``; None: all of it moves.
    delta_path: Path | None = None
    delta_what: str = ""
    # True when a new instance's first start finds everything in place, as later ones do:
    # the export is the disk the target itself booted from, already in the libvirt pool and
    # the host's page cache (the VM cache entry). Otherwise the first one is not timed.
    starts_warm: bool = False


class Leftovers(abc.ABC):
    """What one backend's targets leave on the host, found and removed by session id.

    ``lifecycle.sweep`` goes through these: it decides which sessions are dead,
    the backends know where their containers, domains and volumes are.
    """

    @abc.abstractmethod
    def by_session(self) -> dict[str, list[str]]:
        """Session id -> what still carries it (e.g. "container vmc-1a2b-container")."""

    @abc.abstractmethod
    def remove(self, session_id: str) -> list[str]:
        """Remove everything of ``session_id``; returns what was removed."""

    def remove_orphans(self) -> list[str]:
        """Remove what belongs to no session any more (say, images of deleted projects)."""
        return []


class Target(abc.ABC):
    """A VM or a container brought up from the user's Vagrantfile or Dockerfile."""

    kind: str  # "vm" or "container": the test id and the name users see
    host_needs: tuple[str, ...] = ()  # what host setup must provide (of setup.ALL_NEEDS)

    def __init__(self, spec: TargetSpec, progress: Progress | None = None) -> None:
        self.spec = spec
        self.progress = progress or quiet()
        self.host_ports: dict[int, int] = {}
        # Start request (build and provisioning included) to ready, set by the harness.
        self.up_seconds: float | None = None
        self.origin = ""  # how it came up, in a few words ("from the VM cache", "reused")
        self.was_ready = False  # became ready at least once (see wait_ready)
        self._host: Any = None
        self._host_lock = threading.Lock()
        # Set by teardown: a bring-up in another thread must not create anything more.
        self.cancelled = threading.Event()
        # An app-specific readiness check (the pytest_vmcontainer_ready hook), polled last.
        self.extra_ready: Callable[[Target], bool] | None = None
        spec.workdir.mkdir(parents=True, exist_ok=True)

    def on_picked_ports(self, start: Callable[[], None], undo: Callable[[], None]) -> None:
        """``start`` on host ports picked now. When another program bound one of them between
        the pick and the engine's own bind, ``undo`` what the attempt made and start again on
        new ports (up to ``PORT_ATTEMPTS`` in all). A pinned port that is taken is the error."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.host_ports = self.spec.pick_host_ports()
            try:
                start()
                return
            except PortInUse as error:
                picked = portlib.was_picked(error, self.spec.pinned_ports)
                if attempt == PORT_ATTEMPTS or not picked:
                    raise
                self.progress.say(f"{self.kind}: {error.cause}, taken since it was picked; "
                                  "starting again on new ports")
                undo()

    @property
    def name(self) -> str:
        return self.kind

    @property
    def resource_name(self) -> str:
        suffix = f"-{self.spec.name_suffix}" if self.spec.name_suffix else ""
        return f"{resource_prefix(self.spec.session_id)}{self.kind}{suffix}"

    @property
    @abc.abstractmethod
    def mode(self) -> str:
        """How the target runs: "kvm" or "tcg" for a VM, "container" for a container."""

    @property
    def mode_reason(self) -> str:
        """Why this mode (for a VM: what the KVM probe found)."""
        return ""

    @property
    def log_path(self) -> Path:
        """Build and provisioning output; kept after teardown so errors can point at it."""
        directory = self.spec.log_dir or self.spec.workdir
        suffix = f"-{self.spec.name_suffix}" if self.spec.name_suffix else ""
        return directory / f"{self.spec.session_id}-{self.kind}{suffix}.log"

    # --- lifecycle -----------------------------------------------------------------------

    def prepare(self) -> None:  # noqa: B027 - optional step, nothing to do by default
        """Before ``up``: build the locally built base the user's file names, probe the host."""

    @abc.abstractmethod
    def up(self) -> None:
        """Build and provision if needed, start, and wait until ready."""

    def declared_ports(self) -> tuple[int, ...]:
        """Guest ports the user's file declares (after ``prepare``): EXPOSE, forwarded_port."""
        return ()

    def resume(self) -> bool:
        """Adopt a target kept from an earlier run of the same reuse session, if any."""
        return False

    def alive(self) -> str | None:
        """None while the target runs; else what happened to it, in a few words."""
        return None

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop without deleting (a halted VM, a stopped container)."""

    @abc.abstractmethod
    def start(self, ready_path: str | None = None) -> None:
        """Start a stopped target again, without provisioning, and wait until ready
        (``ready_path``: an HTTP path that must answer 200 instead of the spec's)."""

    @abc.abstractmethod
    def destroy(self) -> None:
        """Remove everything this target created; idempotent, safe after a partial up."""

    @abc.abstractmethod
    def _make_host(self) -> Any:
        """The testinfra Host for this target."""

    @classmethod
    def leftovers(cls) -> Leftovers | None:
        """What this backend's dead sessions may have left (None: it leaves nothing)."""
        return None

    # --- what differs by backend (optional capabilities: see ``capabilities``) -------------

    def disk_cache_mode(self) -> str | None:
        """The cache mode the target's disk runs with (None: the default, or no such thing):
        what the spec asked for, unless a backend reads back from its engine what ran."""
        return self.spec.disk_cache

    # --- saved state: reuse, login, exec, list (and xdist workers) ---------------------------

    STATE_FILE = "target.json"

    def state(self) -> dict[str, Any]:
        """What another process needs to reach this target again (``capabilities.Attaching``),
        as JSON data."""
        return {"kind": self.kind, "backend": f"{type(self).__module__}:{type(self).__name__}",
                "session": self.spec.session_id, "resource": self.resource_name,
                "vagrantfile": str(self.spec.vagrantfile), "dockerfile": str(self.spec.dockerfile),
                "forwards": {str(guest): host for guest, host in self.host_ports.items()},
                "mode": self.mode, "mode_reason": self.mode_reason, "saved_at": time.time()}

    def save_state(self) -> None:
        (self.spec.workdir / self.STATE_FILE).write_text(json.dumps(self.state(), indent=1))

    def login_command(self) -> str:
        """A shell command that opens a shell in this target (shown for kept targets); what
        is missing instead, for a backend without the capabilities login needs."""
        lacking = capabilities.lacks(self, ("attach", "shell"), "login")
        if lacking is not None:
            return lacking
        return f"python -m pytest_vmcontainer login {self.kind} --session {self.spec.session_id}"

    def settle(self) -> None:  # noqa: B027 - optional: most backends leave no such work
        """Finish background work before teardown stops tracked processes (none by default)."""

    def describe_kept(self) -> str:
        """One line for the end of a run that keeps this target."""
        return f"{self.kind} {self.resource_name}: {self.login_command()}"

    # --- access ----------------------------------------------------------------------------

    @property
    def host(self) -> Any:
        with self._host_lock:
            if self._host is None:
                self._host = self._make_host()
            return self._host

    def address(self, port: int | None = None) -> tuple[str, int]:
        """The loopback address where the guest's ``port`` is reachable (see ``default_port``)."""
        port = self.default_port() if port is None else port
        try:
            return (LOOPBACK, self.host_ports[port])
        except KeyError:
            raise TargetError(
                f"guest port {port} of the {self.kind} is not forwarded (forwarded: "
                f"{', '.join(map(str, sorted(self.host_ports))) or 'none'})",
                "declare it (EXPOSE in the Dockerfile, forwarded_port in the Vagrantfile) or "
                "add it with --vmc-ports") from None

    def default_port(self) -> int:
        """The guest port ``address()`` and ``url()`` use when none is given: 80 if forwarded,
        else the only forwarded port."""
        if 80 in self.host_ports or len(self.host_ports) != 1:
            return 80
        return next(iter(self.host_ports))

    def url(self, path: str = "/", port: int | None = None) -> str:
        host, host_port = self.address(port)
        return f"http://{host}:{host_port}/{path.lstrip('/')}"

    def run(self, command: str, *args: str) -> CommandResult:
        """Run a shell command inside the target as the login user (via testinfra)."""
        line = command if not args else command + " " + " ".join(shlex.quote(a) for a in args)
        result = self.host.run(line)
        return CommandResult(result.rc, result.stdout, result.stderr)

    def listening_ports(self) -> dict[int, set[str]]:
        """TCP ports in LISTEN inside the target, with their addresses (from /proc/net/tcp*)."""
        return procnet.listening(self.run(procnet.COMMAND).stdout)

    def _serves(self, guest_port: int) -> Callable[[], bool]:
        """Condition: the app listens on ``guest_port`` inside (on an address a forward reaches)
        and the forward from 127.0.0.1 accepts. Neither alone is enough: Docker's proxy and
        QEMU's user-mode forwards accept on the host side whether or not the guest listens."""
        forward = tcp_open(self.host_ports[guest_port])

        def condition() -> bool:
            try:
                inside = self.listening_ports().get(guest_port, set())
            except Exception:
                stopped = self.alive()  # asked only when the target does not answer
                if stopped is not None:
                    raise TargetStopped(f"the {self.kind} stopped before port {guest_port} "
                                        f"served: {stopped}", "see its log below") from None
                raise
            return procnet.reachable(inside) and forward()

        return condition

    def wait_ready(self, ready_path: str | None = None) -> None:
        """Wait strategies, in order: every forwarded port serves; the HTTP path answers 200 if
        one was asked for (``ready_path``, else the spec's); the ``pytest_vmcontainer_ready``
        hook says ready."""
        path = ready_path or self.spec.ready_path
        # Short first pauses: a container is often ready within tens of milliseconds.
        poll = {"timeout": self.spec.ready_timeout, "max_interval": self.spec.poll_max,
                "interval": min(0.02, self.spec.poll_max)}
        try:
            for guest_port in self.spec.guest_ports:
                wait_for(self._serves(guest_port), what=f"port {guest_port}", **poll)
            if path is not None:
                port = self.spec.ready_port or self.default_port()
                wait_for(http_ok(self.url(path, port)),
                         what=f"HTTP 200 at {path} on port {port}", **poll)
            if self.extra_ready is not None:
                check = self.extra_ready
                wait_for(lambda: check(self), what="the pytest_vmcontainer_ready hook", **poll)
            self.was_ready = True
        except WaitTimeout as timeout:
            raise self._not_ready(timeout) from None
        except TargetStopped as stopped:
            raise TargetStopped(stopped.cause, f"check what it ran (log {self.log_path})",
                                detail=self.service_log()) from None

    def _not_ready(self, timeout: WaitTimeout) -> TargetError:
        try:
            seen = procnet.describe(self.listening_ports())
        except Exception as error:  # the target may be what failed
            seen = f"an unknown set of ports ({error})"
        return TargetError(
            f"the {self.kind} is up but {timeout.cause}; inside it listens on {seen}",
            "declare the app's ports (EXPOSE in the Dockerfile, forwarded_port in the "
            "Vagrantfile, or --vmc-ports) and check that the service starts and listens "
            f"on 0.0.0.0 (log {self.log_path})", detail=self.service_log())

    def service_log(self) -> str:
        """What to show under a readiness failure: the target's own output where it has one."""
        return self.log_tail()

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled(f"the {self.kind} bring-up was cancelled by teardown")

    def log_tail(self, lines: int = 25) -> str:
        return logtail.tail(self.log_path, lines)

    def facts(self) -> dict[str, Any]:
        """What identifies this target in reports (overridden to add backend details)."""
        return {"kind": self.kind, "mode": self.mode, "ports": dict(self.host_ports)}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.resource_name} mode={self.mode}>"
