"""One VM and one container for all pytest-xdist workers of a run.

Each xdist worker is a pytest session of its own; left alone, each would bring
up its own targets. Instead the controller (which runs no tests) owns the
run's harness, exactly as a run without workers does:

1. it opens the run's session and hands its directory to every worker
   (``workerinput``);
2. each worker writes the kinds its collected tests need into that directory;
   when a worker's collection reaches the controller, the controller starts
   those bring-ups (idempotent per kind, concurrently, in its own threads);
3. the harness publishes each target's outcome in the session
   (``<kind>.status.json``: ready, or the one-line error); a worker's target
   fixture waits for it and attaches to the target from its saved state;
4. the controller tears down once, after the last worker, and Ctrl-C or
   SIGTERM there runs the same teardown as without workers.

Workers never start or stop a process, container or VM: whatever happens to
them, nothing of theirs is left to clean up. testinfra connections are per
worker. Compare pytest-xdist's FileLock recipe (the first worker to get the
lock brings the resource up): with it, the resource outlives every worker but
no one owns its teardown, which is why the controller owns it here.
"""

from __future__ import annotations

import json
from pathlib import Path

from pytest_vmcontainer import targets
from pytest_vmcontainer.bringup import STATUS_SUFFIX
from pytest_vmcontainer.errors import TargetError
from pytest_vmcontainer.runtime.waiting import wait_for
from pytest_vmcontainer.targets.base import Target

SESSION_KEY = "vmc_session_dir"  # in xdist's workerinput
WAIT_SECONDS = 7200.0  # a cold start may build both bases and provision the VM first


def needed_file(session_dir: Path, worker: str) -> Path:
    return session_dir / f"needed-{worker}.json"


def publish_needed(session_dir: Path, worker: str, kinds: set[str]) -> None:
    """In a worker, after collection: the kinds its tests need (read by the controller)."""
    path = needed_file(session_dir, worker)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(sorted(kinds)))
    partial.replace(path)


def read_needed(session_dir: Path, worker: str) -> list[str]:
    """On the controller, when the worker's collection arrives (written before it is sent)."""
    try:
        kinds: list[str] = json.loads(needed_file(session_dir, worker).read_text())
        return kinds
    except (OSError, ValueError):
        return []


def attach(session_dir: Path, kind: str, timeout: float = WAIT_SECONDS) -> Target:
    """In a worker: wait until the controller published ``kind``, then the target itself."""
    status_file = session_dir / f"{kind}{STATUS_SUFFIX}"

    def published() -> dict[str, str] | None:
        if not status_file.exists():
            return None
        status: dict[str, str] = json.loads(status_file.read_text())
        return status

    status = wait_for(published, timeout=timeout, interval=0.2, max_interval=1.0,
                      what=f"the {kind} from the xdist controller")
    if status.get("state") != "ready":
        raise TargetError(status.get("cause", f"the {kind} did not come up"),
                          status.get("remedy", "see the controller's output"),
                          detail=status.get("detail", ""))
    return targets.attach(session_dir / kind, "a pytest-xdist worker")
