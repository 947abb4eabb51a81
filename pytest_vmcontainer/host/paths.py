"""Where pytest-vmcontainer keeps its caches and per-session state.

Everything lives under one home directory (``VMC_HOME``). Its directories stay
world-traversable on purpose: QEMU runs as ``libvirt-qemu`` and must read the
kernel and initrd unpacked from the box under ``vagrant.d``.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

HOME_ENV = "VMC_HOME"


def home() -> Path:
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).resolve()
    if os.geteuid() == 0:
        return Path("/var/lib/pytest-vmcontainer")
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "pytest-vmcontainer"


def machine_lock_dir() -> Path:
    return Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())


@contextmanager
def machine_lock(name: str, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """An exclusive flock(2) of the machine's, whatever ``VMC_HOME`` each run uses: for what
    every run on it shares (its packages and daemons, the Docker engine's images).
    ``waiting``, if given, is called again and again while another process holds it: it
    waits a moment, and may raise to give up (a cancelled run, a deadline).

    The holder removes the lock file as it lets go, so that one per image build does not
    pile up in /run/lock; a process that got the lock of a file removed meanwhile takes the
    lock again, on the file the path names now."""
    path = machine_lock_dir() / f"pytest-vmcontainer-{name}.lock"
    while True:
        lock = open(path, "a")  # noqa: SIM115 - closed below, or when the holder lets go
        try:
            if waiting is None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            else:
                while not _took(lock):
                    waiting()
            if names_open_file(path, lock):
                break
        except BaseException:
            lock.close()
            raise
        lock.close()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        lock.close()


def names_open_file(path: Path, handle: IO[str]) -> bool:
    """``path`` still names the file ``handle`` has open: a lock taken on a file that its
    last holder removed meanwhile is no one's lock."""
    try:
        return path.stat().st_ino == os.fstat(handle.fileno()).st_ino
    except OSError:
        return False


def _took(lock: IO[str]) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def builds_dir() -> Path:
    """Built bases: the Docker base recipe stamp and the packaged Vagrant box."""
    return ensure_dir(ensure_dir(home()) / "builds")


def vagrant_home() -> Path:
    """VAGRANT_HOME for every vagrant command the harness runs."""
    return ensure_dir(ensure_dir(home()) / "vagrant.d")


def sessions_dir() -> Path:
    """One directory per live or crashed session (locks, vagrant dotfiles, logs)."""
    return ensure_dir(ensure_dir(home()) / "sessions")


def pool_dir() -> Path:
    """The libvirt storage pool that holds box base volumes and VM disks. (Before each home
    had a pool of its own, one pool named pytest-vmcontainer used ``pool``: a new
    directory keeps the two apart on a machine that still has that pool.)"""
    return ensure_dir(ensure_dir(home()) / "libvirt-pool")
