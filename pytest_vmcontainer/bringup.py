"""One target's bring-up, run by the harness in a background thread of its own.

Each target of a bring-up is prepared first and declares the guest ports its files name
(EXPOSE, forwarded_port); it waits for the others' (``PortUnion``) so that all forward the
same ports, then comes up, or resumes the target a reusing run kept. Its outcome is
published in the session (``publish``) for processes that share the run's targets
(pytest-xdist workers, see ``shared``).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

from pytest_vmcontainer.errors import Cancelled, VmcError
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.targets.base import Target

STATUS_SUFFIX = ".status.json"  # a target's bring-up outcome, published in the session


class PortUnion:
    """The guest ports every target of one bring-up forwards: the union of what each one's
    files declare (EXPOSE, forwarded_port). One provisioning source, one app, the same
    ports; a target waits for the others' declarations before it starts."""

    def __init__(self, kinds: list[str], extra: tuple[int, ...]) -> None:
        self._waiting = set(kinds)
        self._ports = set(extra)
        self.declared: dict[str, tuple[int, ...]] = {}
        self._changed = threading.Condition()

    def declare(self, kind: str, ports: tuple[int, ...] | None) -> None:
        """``ports`` None: the target failed before it could say; the others go on."""
        with self._changed:
            if ports is not None:
                self.declared[kind] = ports
                self._ports.update(ports)
            self._waiting.discard(kind)
            self._changed.notify_all()

    def wait(self, cancelled: threading.Event) -> tuple[int, ...]:
        with self._changed:
            while self._waiting:
                if cancelled.is_set():
                    raise Cancelled("the bring-up was cancelled by teardown")
                self._changed.wait(timeout=0.5)
            return tuple(sorted(self._ports))


def bring_up(target: Target, union: PortUnion, reuse: bool, progress: Progress) -> Target:
    """Prepare ``target``, agree on the ports with the others of ``union``, then bring it up
    (or resume it, with ``reuse``); ``up_seconds`` counts all of it."""
    started = time.monotonic()
    declared: tuple[int, ...] | None = None
    try:
        target.prepare()
        declared = target.declared_ports()
    finally:
        union.declare(target.kind, declared)
    # The ports to forward are known once every target of this bring-up declared its own:
    # the prepared target gets a spec with them before it comes up.
    target.spec = replace(target.spec, guest_ports=union.wait(target.cancelled))
    if reuse and target.resume():
        target.origin = "reused"
        progress.say(f"{target.kind}: reusing {target.resource_name}")
    else:
        target.up()
    target.save_state()
    target.up_seconds = time.monotonic() - started
    return target


def publish(session_dir: Path, kind: str, error: BaseException | None) -> None:
    """``<kind>.status.json`` in the session: ready, or the one-line error, for processes
    that share the run's targets (pytest-xdist workers, see ``shared``)."""
    if error is None:
        status: dict[str, str] = {"state": "ready"}
    elif isinstance(error, VmcError):
        status = {"state": "failed", "cause": error.cause, "remedy": error.remedy,
                  "detail": error.detail}
    else:
        status = {"state": "failed", "cause": f"the {kind} bring-up stopped "
                  f"({type(error).__name__}: {error})", "remedy": "see the controller's output"}
    path = session_dir / f"{kind}{STATUS_SUFFIX}"
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(status))
    partial.replace(path)
