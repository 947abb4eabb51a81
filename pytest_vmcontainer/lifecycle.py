"""Sessions, and the sweep of what crashed sessions left behind.

Every run holds an exclusive lock on its own directory under ``sessions/`` for
as long as its process lives; every container, libvirt domain and volume it
creates carries its session id (a label, a name prefix). A session whose lock
can be taken is dead, so its leftovers can be removed without touching a run
still in progress. Only sessions of this ``VMC_HOME`` are judged: the containers
and domains of another home's sessions are left to that home. A dead session is judged
only by a run on the engines it ran on (``DOCKER_HOST``, ``VMC_LIBVIRT_URI``): only they
reach what it left, and another run would remove its directory and leave its targets to
no one. Kept targets
(--vmc-keep) and reusable targets (--vmc-reuse) are marked and left alone;
``python -m pytest_vmcontainer clean`` removes those too.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pytest_vmcontainer.errors import UsageError
from pytest_vmcontainer.host import engine, libvirt, paths
from pytest_vmcontainer.runtime import procs

if TYPE_CHECKING:
    from pytest_vmcontainer.targets.base import Leftovers

KEPT_MARKER = "kept"
REUSE_MARKER = "reuse"
INPUTS_FILE = "inputs.json"  # the content hash of what provisions the session's targets
META_FILE = "meta.json"  # who made the session, and on which engines


def current_engines() -> dict[str, str]:
    """The engines a run reaches now, as the settings name them (not parsed: a URL that
    does not parse is its target's error, not the session's)."""
    return {"docker": os.environ.get("DOCKER_HOST") or engine.DEFAULT_DOCKER_HOST,
            "libvirt": libvirt.libvirt_uri()}


def new_session_id() -> str:
    return secrets.token_hex(4)


@dataclass
class Session:
    """A run's id and state directory, locked while the run lives."""

    id: str
    dir: Path
    _lock: IO[str] | None = field(default=None, repr=False)

    @classmethod
    def open(cls, session_id: str | None = None, wait: bool = False,
             marker: str | None = None, marker_text: str = "") -> Session:
        """Create (or, for a reuse id, enter) the session directory and lock it.

        A new directory is prepared under a dot name and renamed once locked,
        so a concurrent sweep never sees it unlocked.
        """
        session_id = session_id or new_session_id()
        directory = paths.sessions_dir() / session_id
        if not directory.is_dir():
            staging = paths.sessions_dir() / f".new-{session_id}-{os.getpid()}"
            staging.mkdir()
            lock = open(staging / "lock", "w")  # noqa: SIM115 - held for the session's life
            fcntl.flock(lock, fcntl.LOCK_EX)
            if marker:
                (staging / marker).write_text(marker_text)
            staging.rename(directory)
        else:
            lock = open(directory / "lock", "a")  # noqa: SIM115 - held for the session's life
            try:
                fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                raise
            if marker:
                (directory / marker).write_text(marker_text)
        meta = {"pid": os.getpid(), "started": time.time(), "argv": sys.argv, "cwd": os.getcwd(),
                "engines": current_engines()}
        (directory / META_FILE).write_text(json.dumps(meta))
        return cls(session_id, directory, lock)

    def mark(self, marker: str, text: str = "") -> None:
        (self.dir / marker).write_text(text)

    def close(self, remove: bool = True) -> None:
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _claim_if_dead(session_dir: Path, claims: list[IO[str]],
                   ignore_markers: bool = False) -> bool:
    """True when no process holds the session's lock and (unless ``ignore_markers``) it
    was not kept or reused; the sweep then holds that lock itself (in ``claims``) until it
    has removed what the session left. A name can be taken again: a saved VM's slot is
    taken by the next run that restores it, under the same domain name, and a run that took
    it between the sweep's look and its removal lost its VM to the sweep.

    A session with no directory here is not this home's: another ``VMC_HOME`` on this
    machine made it (a CI job's, a test's), and only that home's runs judge it. Every run
    makes its directory before anything carrying its id, and keeps it until all of that
    is gone, so a crashed run of this home always leaves its directory behind.
    """
    if not session_dir.is_dir() or not _on_current_engines(session_dir):
        return False
    marked = (session_dir / KEPT_MARKER).exists() or (session_dir / REUSE_MARKER).exists()
    if marked and not ignore_markers:
        return False
    try:
        lock = open(session_dir / "lock", "a")  # noqa: SIM115 - closed by the sweep's end
    except OSError:
        return True  # a lock that cannot be opened is nobody's
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return False
    claims.append(lock)
    return True


def _on_current_engines(session_dir: Path) -> bool:
    """The session ran on the engines this run reaches (one that recorded none, too)."""
    return not engines_elsewhere(session_dir)


ENGINE_SETTINGS = {"docker": "DOCKER_HOST", "libvirt": libvirt.LIBVIRT_URI_ENV}


def engines_elsewhere(session_dir: Path) -> dict[str, str]:
    """The engines the session ran on that this process does not reach (by their settings'
    names): none for a session that recorded none."""
    try:
        recorded = json.loads((session_dir / META_FILE).read_text()).get("engines")
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(recorded, dict):
        return {}
    now = current_engines()
    return {ENGINE_SETTINGS[kind]: str(value) for kind, value in recorded.items()
            if kind in ENGINE_SETTINGS and value != now.get(kind)}


def require_its_engines(session_id: str, command: str) -> None:
    """A one-line ``UsageError`` when the session's targets are on engines this process does
    not reach: ``command`` would not find them there (``destroy`` would remove nothing and
    forget them)."""
    elsewhere = engines_elsewhere(paths.sessions_dir() / session_id)
    if elsewhere:
        settings = " ".join(f"{name}={engine.shown(value)}" for name, value in elsewhere.items())
        raise UsageError(f"session {session_id}'s targets are on engines this {command} "
                         f"does not reach ({settings})", f"run it with {settings}")


def _is_dead_and_unmarked(session_dir: Path, ignore_markers: bool = False) -> bool:
    """``_claim_if_dead``, letting the lock go at once."""
    claims: list[IO[str]] = []
    dead = _claim_if_dead(session_dir, claims, ignore_markers)
    for lock in claims:
        lock.close()
    return dead


def _is_live(session_dir: Path) -> bool:
    """A run holds the session's lock (a live process); a lock that cannot be opened is
    nobody's."""
    try:
        with open(session_dir / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
    except BlockingIOError:
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class SavedTarget:
    """A target a session saved (``Target.save_state``): kept, reused, or of a live run."""

    session_id: str
    kind: str
    workdir: Path
    status: str  # "kept", "reused" or "live run"
    inputs: str  # the inputs hash, "" when unknown
    saved_at: float


def live_sessions() -> list[str]:
    """The sessions of this home whose run is alive (it holds the session's lock)."""
    return [session_dir.name for session_dir in sorted(paths.sessions_dir().iterdir())
            if not session_dir.name.startswith(".") and session_dir.is_dir() and
            _is_live(session_dir)]


def saved_targets() -> list[SavedTarget]:
    """Every target of a kept, reusable or live session, oldest first (dead ones are left to
    the sweep)."""
    found = []
    for session_dir in sorted(paths.sessions_dir().iterdir()):
        if session_dir.name.startswith(".") or not session_dir.is_dir():
            continue
        if (session_dir / KEPT_MARKER).exists():
            status = "kept"
        elif (session_dir / REUSE_MARKER).exists():
            status = "reused"
        elif _is_live(session_dir):
            status = "live run"
        else:
            continue
        try:
            inputs = str(json.loads((session_dir / INPUTS_FILE).read_text()).get("hash", ""))
        except (OSError, ValueError):
            inputs = ""
        for state_file in session_dir.glob("*/target.json"):
            try:
                state = json.loads(state_file.read_text())
            except (OSError, ValueError):
                continue
            found.append(SavedTarget(session_dir.name, str(state.get("kind")), state_file.parent,
                                     status, inputs, float(state.get("saved_at", 0))))
    return sorted(found, key=lambda saved: saved.saved_at)


def stale_reuse_sessions(markers: dict[str, str], current: str) -> set[str]:
    """Reuse sessions made from the same files as ``current`` but from other contents."""
    stale = set()
    for marker in paths.sessions_dir().glob(f"r*/{REUSE_MARKER}"):
        session_id = marker.parent.name
        try:
            same_sources = json.loads(marker.read_text()) == markers
        except (OSError, ValueError):
            continue
        if same_sources and session_id != current:
            stale.add(session_id)
    return stale


def sweep(sources: Sequence[Leftovers], include_marked: bool = False,
          only: set[str] | None = None, orphans: bool = True) -> list[str]:
    """Remove what dead sessions left: containers, libvirt domains and volumes, state dirs.

    ``sources`` are the backends' ``Leftovers``: they find and remove things by
    session id; this function decides which sessions are dead. With
    ``include_marked`` kept and reusable targets go too (the ``clean`` command);
    ``only`` limits the sweep to those session ids. Sessions still running are
    never touched. ``orphans`` also removes what belongs to no session (images of
    deleted projects): not beside a build, which may be reusing their layers.
    """
    claims: list[IO[str]] = []  # the locks of the dead sessions, held until the end
    try:
        return _sweep(sources, include_marked, only, orphans, claims)
    finally:
        for lock in claims:
            lock.close()


def _sweep(sources: Sequence[Leftovers], include_marked: bool, only: set[str] | None,
           orphans: bool, claims: list[IO[str]]) -> list[str]:
    sessions = paths.sessions_dir()
    decided: dict[str, bool] = {}  # one decision per session, whatever carries its id

    def removable(session_id: str) -> bool:
        if session_id not in decided:
            decided[session_id] = (only is None or session_id in only) and \
                _claim_if_dead(sessions / session_id, claims, ignore_markers=include_marked)
        return decided[session_id]

    removed: list[str] = []
    for source in sources:
        for session_id in sorted(source.by_session()):
            if session_id and removable(session_id):
                removed += source.remove(session_id)
        if only is None and orphans:
            removed += source.remove_orphans()
    for directory in sorted(sessions.iterdir()):
        if directory.name.startswith(".new-") and only is None:
            pid = directory.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not procs.alive(int(pid)):
                shutil.rmtree(directory, ignore_errors=True)
            continue
        if directory.is_dir() and removable(directory.name):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(f"session dir {directory.name}")
    return removed


def leftovers(session_id: str, sources: Sequence[Leftovers]) -> list[str]:
    """Everything that still carries ``session_id`` (empty after a clean teardown)."""
    found = [name for source in sources for name in source.by_session().get(session_id, [])]
    if (paths.sessions_dir() / session_id).exists():
        found.append(f"session dir {session_id}")
    return found
