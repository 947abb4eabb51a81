"""Free disk space, checked before a run writes something large (a base, a VM cache entry, a
saved VM), so that a full disk is named up front instead of as a failed write halfway.

The sizes are estimates, measured on the shipped bases under TCG (README, "Faults"): a box
build peaks at about 1.5 GiB in ``VMC_HOME`` (root file system, raw and qcow2 disks, the box
file, Vagrant's copy, the pool's volume); provisioning grows the VM's overlay and then writes
the cache entry (about 0.6 GiB each for the shipped nginx); a saved VM is about its guest's
memory in use (0.2 to 0.5 GiB). A user's box or app may need more: the check only stops runs
that cannot fit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_vmcontainer.errors import HostSetupError

GIB = 2**30
BOX_BUILD = 3 * GIB // 2
PROVISION_AND_CACHE = 6 * GIB // 5
SAVED_VM = GIB // 2
DOCKER_BASE_BUILD = GIB // 2


@dataclass(frozen=True)
class Need:
    """``size`` bytes that a step will write under ``path``."""

    path: Path
    size: int
    what: str


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    stat = os.statvfs(_existing(path))
    return stat.f_bavail * stat.f_frsize


def require(needs: Sequence[Need]) -> None:
    """Raise, naming the disk, what it has and what the run needs, when ``needs`` do not fit
    in the free space of the file systems they write to (needs on one disk add up)."""
    by_device: dict[int, list[Need]] = {}
    for need in needs:
        by_device.setdefault(os.stat(_existing(need.path)).st_dev, []).append(need)
    for group in by_device.values():
        total, free = sum(need.size for need in group), free_bytes(group[0].path)
        if free < total:
            parts = ", ".join(f"{need.what} {human_bytes(need.size)}" for need in group)
            raise HostSetupError(
                f"not enough free disk space: {group[0].path} has {human_bytes(free)} free, "
                f"this run needs about {human_bytes(total)} there ({parts})",
                "free some space on that disk (python -m pytest_vmcontainer clean --caches "
                "removes the VM cache), or set VMC_HOME to a directory on a larger disk")


NO_SPACE = "No space left on device"  # strerror(ENOSPC), as qemu-img and libvirt print it


def filled_up(output: str) -> bool:
    """A write that failed because its disk filled up halfway (another job's files, a small
    disk): the up-front check cannot foresee what others write meanwhile."""
    return NO_SPACE in output


FILLED_UP_REMEDY = ("free some space there (python -m pytest_vmcontainer clean --caches removes "
                    "the VM cache), or set VMC_HOME to a directory on a larger disk")


def filled_up_cause(path: Path, what: str, size: int | None = None) -> str:
    """The cause for such a write, once its partial file went: where, how much is free now and
    how much the write needs, where known (``FILLED_UP_REMEDY`` is the remedy)."""
    needed = f", about {human_bytes(size)} needed" if size is not None else ""
    return (f"the disk under {_existing(path)} filled up while writing {what} "
            f"({human_bytes(free_bytes(path))} free now{needed}; nothing half-written was kept)")
