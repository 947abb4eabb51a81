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

``XdistRole`` is which part this process plays (a worker, or the owner of the
targets), kept in the run's state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vmcontainer import targets
from pytest_vmcontainer.bringup import STATUS_SUFFIX
from pytest_vmcontainer.errors import TargetError
from pytest_vmcontainer.runtime.waiting import wait_for
from pytest_vmcontainer.targets.base import Target

if TYPE_CHECKING:
    import pytest

SESSION_KEY = "vmc_session_dir"  # in xdist's workerinput
WAIT_SECONDS = 7200.0  # a cold start may build both bases and provision the VM first


@dataclass
class XdistRole:
    """This process's part in the run: an xdist worker, or the owner of the targets.

    A worker (``worker`` set) owns no target: it attaches to the controller's, found in
    ``shared_dir``. The controller and a run without workers have neither, and own theirs.
    """

    worker: str | None = None  # the xdist worker id ("gw0") in a worker, else None
    shared_dir: Path | None = None  # in a worker: the controller's session directory
    attached: dict[str, Target] = field(default_factory=dict)  # a worker's targets, by kind

    @classmethod
    def from_config(cls, config: pytest.Config) -> XdistRole:
        """From ``workerinput``, which pytest-xdist sets in its workers only."""
        workerinput = getattr(config, "workerinput", None)
        if workerinput is None:
            return cls()
        shared_dir = workerinput.get(SESSION_KEY)
        return cls(worker=str(workerinput.get("workerid", "gw?")),
                   shared_dir=Path(shared_dir) if shared_dir else None)

    @property
    def in_worker(self) -> bool:
        return self.worker is not None

    def publish_needed(self, kinds: set[str]) -> None:
        """In a worker, after collection: the kinds its tests need, for the controller."""
        if self.shared_dir is not None and self.worker is not None:
            publish_needed(self.shared_dir, self.worker, kinds)


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
