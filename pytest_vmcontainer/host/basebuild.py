"""What every base build shares: the recipes' place and values, one builder per base at a
time, a work directory removed after (or after a builder that died), logged commands,
debootstrap from Debian's archive, the parity scan of a root filesystem and the build record.
The Docker base is built in ``dockerbase``, the Vagrant boxes in ``boxes`` and ``bases``."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from pytest_vmcontainer.errors import BuildError, DiskFilledUp
from pytest_vmcontainer.host import paths, space
from pytest_vmcontainer.runtime import logtail, procs

DATA = Path(__file__).resolve().parent.parent / "data"
BASE_RECIPE = DATA / "base"
SCAN_COLLECTOR = DATA / "scan" / "collect.sh"  # the parity scan's (pytest_vmcontainer.scan)
MIRROR_ENV = "VMC_DEBIAN_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def read_env(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def recipe() -> dict[str, str]:
    return read_env(BASE_RECIPE / "recipe.env")


@dataclass
class BuildRecord:
    """What a base build produced and how long it took (kept for the reports)."""

    kind: str
    recipe_hash: str
    artifact: str
    build_seconds: float
    artifact_bytes: int
    built_at: float

    @classmethod
    def load(cls, kind: str) -> BuildRecord | None:
        try:
            return cls(**json.loads((paths.builds_dir() / f"{kind}.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self) -> None:
        (paths.builds_dir() / f"{self.kind}.json").write_text(json.dumps(asdict(self), indent=2))


@contextmanager
def build_lock(kind: str) -> Iterator[None]:
    """One builder per base at a time; a second session waits, then finds the cache."""
    with open(paths.builds_dir() / f".{kind}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Delete a build directory, unmounting first what an interrupted debootstrap left mounted."""
    if not path.exists():
        return
    for mount_point in _mounts_under(path):
        subprocess.run(["umount", "-l", mount_point], check=False)
    shutil.rmtree(path, ignore_errors=True)


def _remove_abandoned_workdirs() -> None:
    """Work directories of builders that died (their pid is gone) are removed."""
    for work in paths.builds_dir().glob("work-*-*"):
        pid = work.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not procs.alive(int(pid)):
            remove_tree(work)


@contextmanager
def workdir(kind: str) -> Iterator[Path]:
    _remove_abandoned_workdirs()
    work = paths.builds_dir() / f"work-{kind}-{os.getpid()}"
    remove_tree(work)
    work.mkdir()
    try:
        yield work
    except BuildError as error:
        if isinstance(error, DiskFilledUp) or not space.filled_up(error.detail):
            raise
        remove_tree(work)  # before the free space is told
        raise DiskFilledUp(space.filled_up_cause(paths.builds_dir(), f"a base ({kind})"),
                           space.FILLED_UP_REMEDY, detail=error.detail) from None
    finally:
        remove_tree(work)


def run_logged(command: list[str], log: Path, what: str, remedy: str,
                cancel: threading.Event | None = None, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> None:
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(command)}\n".encode())
        out.flush()
        returncode = procs.run(command, cancel, stdout=out, stderr=subprocess.STDOUT, env=env,
                               cwd=cwd)
    if returncode != 0:
        raise BuildError(f"{what} failed (exit {returncode}, log {log})", remedy,
                         detail=logtail.tail(log, 12))


def debootstrap(rootfs: Path, include: str, log: Path, cancel: threading.Event | None) -> None:
    mirror = os.environ.get(MIRROR_ENV, DEFAULT_MIRROR)
    command = ["debootstrap", "--variant=minbase", f"--include={include}", recipe()["SUITE"],
               str(rootfs), mirror]
    try:
        run_logged(command, log, "debootstrap",
                    f"check that the Debian archive {mirror} is reachable "
                    f"(or set {MIRROR_ENV} to a reachable mirror), then retry", cancel)
    except BuildError as error:
        # When its disk fills up, debootstrap says "Couldn't download"; its own log says why.
        tail = f"{error.detail}\n{logtail.tail(rootfs / 'debootstrap' / 'debootstrap.log', 4)}"
        if space.filled_up(tail):
            raise BuildError(error.cause, error.remedy, detail=tail) from None  # see workdir
        if any(marker in tail for marker in ("Failed getting release file", "Couldn't download",
                                             "Temporary failure", "Could not resolve",
                                             "Connection refused")):
            raise BuildError(f"debootstrap could not reach the Debian archive {mirror}",
                             f"check network access to it or set {MIRROR_ENV} to a reachable "
                             f"mirror (log {log})", detail=tail) from None
        raise
    run_logged([str(BASE_RECIPE / "finish-rootfs.sh"), str(rootfs),
                 str(BASE_RECIPE / "sources.list")], log, "finishing the root filesystem",
                "see the log", cancel)


def base_scan_path(kind: str, recipe_hash: str) -> Path:
    """Where the parity scan of a base's root filesystem is kept (see ``scan_rootfs``)."""
    return paths.ensure_dir(paths.builds_dir() / "scans") / f"{kind}-{recipe_hash}.out"


def scan_rootfs(rootfs: Path, out: Path, log: Path) -> None:
    """The parity scan's collector, files only, chrooted into a base's root filesystem: the
    base's own packages, users and files, told apart later from what provisioning added.
    A base without it is shown as "not scanned"; the build goes on."""
    null = rootfs / "dev" / "null"
    if not null.is_char_device():  # the collector's 2>/dev/null would create a file there
        return
    partial = out.with_suffix(".partial")
    with open(partial, "wb") as output, open(log, "ab") as errors:
        returncode = procs.run(["chroot", str(rootfs), "/bin/sh", "-c",
                                SCAN_COLLECTOR.read_text()], None, stdout=output, stderr=errors,
                               env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                    "VMC_SCAN_STATIC": "1"})
    if returncode == 0:
        partial.replace(out)
    else:
        partial.unlink(missing_ok=True)


def log_path(kind: str) -> Path:
    log = paths.ensure_dir(paths.home() / "logs") / f"build-{kind}.log"
    log.write_text(f"build of {kind} started {time.ctime()}\n")
    return log

