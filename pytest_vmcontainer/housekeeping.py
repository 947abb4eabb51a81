"""Removing what the tool made: one kept target (``destroy``) or everything (``clean``).

``clean`` keeps the caches unless asked (``--caches``): a VM cache entry takes minutes under
TCG to make again, and nothing about a kept target's removal needs it gone. Both say what they
removed and how much space that freed, measured as the change in free space of the disks
that hold the home and Docker's data (so it counts what the engines released, too).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_vmcontainer import lifecycle, targets
from pytest_vmcontainer.errors import UsageError
from pytest_vmcontainer.host import paths, space
from pytest_vmcontainer.host.space import human_bytes

DOCKER_DATA = Path("/var/lib/docker")  # a local engine's data; absent with a remote one


@dataclass
class Removal:
    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    kept: str = ""  # what was left on purpose, and how to remove it

    def summary(self) -> str:
        text = "removed: " + (", ".join(self.removed) if self.removed else "nothing")
        text += f"\nfreed {human_bytes(self.freed_bytes)}"
        return text + (f"\n{self.kept}" if self.kept else "")


def _free_space() -> dict[int, int]:
    """Free bytes per device, for the devices that hold the home and Docker's data."""
    free: dict[int, int] = {}
    for path in (paths.home(), DOCKER_DATA):
        if path.exists():
            free[os.stat(path).st_dev] = space.free_bytes(path)
    return free


def _freed(before: dict[int, int]) -> int:
    after = _free_space()
    return max(0, sum(after.get(device, 0) - free for device, free in before.items()))


def clean(caches: bool) -> Removal:
    """Every target and leftover of this home, kept and reused ones included; the caches too
    when ``caches``."""
    before = _free_space()
    result = Removal(lifecycle.sweep(targets.default_leftovers(), include_marked=True))
    if caches:
        result.removed += targets.clean_caches(live_runs=len(lifecycle.live_sessions()))
    else:
        count, size = targets.cache_usage()
        if count:
            result.kept = (f"kept the VM cache: {count} entr{'y' if count == 1 else 'ies'}, "
                           f"{human_bytes(size)} (remove it with clean --caches)")
    result.freed_bytes = _freed(before)
    return result


def table_lines(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """``rows`` (the first one the header) in columns as wide as their widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(width) for cell, width in
                               zip(row, widths, strict=True)).rstrip() for row in rows]


def cache_lines(now: float, budget: str) -> list[str]:
    """What the caches of this home hold, for ``list``: the VM cache's entries (least recently
    used first, the first to go beyond ``budget``, the size setting as the user sees it) and
    the kept Vagrant configs."""
    found, configs, folder = targets.cache_contents()
    total = sum(entry["bytes"] for entry in found)
    lines = [f"VM cache: {len(found)} entr{'y' if len(found) == 1 else 'ies'}, "
             f"{human_bytes(total)} (the least recently used go first beyond {budget}; "
             "clean --caches removes them)"]
    rows = [("key", "made from", "box", "on disk", "saved VMs", "last used")] + [
        (entry["key"][:12] + ("" if entry["proven"] else " (unproven)"),
         entry["vagrantfile"] or "-", entry["box"] or "-",
         human_bytes(entry["bytes"]) + (f" on {entry['there']}" if entry.get("there") else ""),
         str(entry["saved_vms"]), f"{age(now - entry['last_used'])} ago") for entry in found]
    if found:
        lines += table_lines(rows, indent="  ")
    lines.append(f"kept Vagrant configs: {configs} ({folder})")
    return lines


def age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _chosen(kind: str | None, session: str | None) -> list[lifecycle.SavedTarget]:
    saved = [item for item in lifecycle.saved_targets() if kind in (None, item.kind)]
    chosen = [item for item in saved if session in (None, item.session_id)]
    what = f"{kind} target" if kind else "target"
    if not chosen:
        known = ", ".join(sorted({item.session_id for item in saved})) or "none"
        where = f"session {session} has no {what}" if session else f"no kept or reused {what}"
        raise UsageError(f"{where} to destroy (sessions with one: {known})",
                         "run 'python -m pytest_vmcontainer list' to see what is kept")
    sessions = sorted({item.session_id for item in chosen})
    if len(sessions) > 1:
        raise UsageError(f"{len(sessions)} sessions have a {what} ({', '.join(sessions)})",
                         "pick one with --session")
    if any(item.status == "live run" for item in chosen):
        raise UsageError(f"session {sessions[0]} is a run in progress",
                         "it removes its own targets when it ends; stop that run first")
    lifecycle.require_its_engines(sessions[0], "destroy")
    return chosen


def destroy(kind: str | None, session: str | None) -> Removal:
    """One session's kept or reused targets (only those of ``kind``, when given). The session
    goes too once no target of it is left; caches are never touched."""
    chosen = _chosen(kind, session)
    session_id = chosen[0].session_id
    before = _free_space()
    result = Removal()
    for item in chosen:
        source = targets.backend(item.kind).leftovers()
        if source is not None:
            result.removed += source.remove(session_id)
        shutil.rmtree(item.workdir, ignore_errors=True)
    session_dir = paths.sessions_dir() / session_id
    if not any(session_dir.glob("*/target.json")):
        result.removed += lifecycle.sweep(targets.default_leftovers(), include_marked=True,
                                          only={session_id}, orphans=False)
    result.freed_bytes = _freed(before)
    return result
