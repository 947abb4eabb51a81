"""The merged machine config, kept under a hash of what it was read from, so that a run whose
VM restores from a saved state starts no Ruby (``vagrant vmc-config``: 1.2 to 2.6 s here).

Vagrant's answer changes only when one of these does, so all of them key it:
- the project's Vagrantfile and the plumbing's, byte for byte;
- every file it names by a literal path (a ``settings.yml`` it reads, a provisioning script,
  a ``require_relative``), by content; every file beside it too when it lists files itself
  (``Dir.glob``, ``Dir[...]``). Other files beside it (the tests, their reports) do not
  count: the runs write them;
- the environment variables it names (``ENV["X"]``, ``ENV.fetch("X")``); a Vagrantfile that
  reads the environment in any other way keys on all of it;
- every file of the boxes it names by a literal (``"team/box"``), by size and time (a box
  rebuilt, or another version added); when it names none that is installed (a name it
  computes, a box not added yet), every file of every box Vagrant can pick from;
- Vagrant and vagrant-libvirt themselves (their executable and package lists, by time).

A Vagrantfile that reads a file it names only through a computed path is not seen:
``clean --caches`` forgets every kept config. A config whose box is not
installed is not kept (the box is built, then read again).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

from pytest_vmcontainer.host import paths
from pytest_vmcontainer.targets import vmcache
from pytest_vmcontainer.targets.vagrant.config import MachineConfig
from pytest_vmcontainer.targets.vagrant.environment import PLUMBING

FORMAT = "1"
KEPT = 64  # configs kept per home, the newest first; each is a few hundred bytes
LARGE = 4 * 2**20  # a file beside the Vagrantfile bigger than this keys by size and time
_NAMED_VARIABLE = re.compile(r"""ENV(?:\.fetch)?\s*[\[(]\s*["']([^"']+)["']""")
_LISTS_FILES = re.compile(r"\bDir\s*(\.glob|\[|\.entries|\.children|\.each_child)|\bFind\.find")
_LITERAL = re.compile(r"""["']([^"'\n#{}]+)["']""")
# What changes between runs without changing what the Vagrantfile is about.
_VOLATILE_PREFIXES = ("PYTEST_",)
_VOLATILE_NAMES = frozenset({"VMC_PLUMBING", "OLDPWD", "PWD", "_"})
# The VM cache's entries are boxes too, but a read never picks one (and their last use is
# written into them).
_CACHE_BOXES = f"{vmcache.BOX_PREFIX}-VAGRANTSLASH-"
# A comparison run's exported app box (``export.app_box_name``): it lives while its run does.
_SESSION_BOX = re.compile(r"vmc-[0-9a-f]{8}-app")
# The packages that load a Vagrantfile (Debian's): their lists change when they are upgraded.
_PACKAGE_LISTS = (Path("/var/lib/dpkg/info/vagrant.list"),
                  Path("/var/lib/dpkg/info/vagrant-libvirt.list"))


def directory() -> Path:
    return paths.home() / "vm-configs"


def read(vagrantfile: Path, read_with_vagrant: Callable[[], MachineConfig]) -> MachineConfig:
    """The kept config of ``vagrantfile``, else ``read_with_vagrant()``, kept for later runs."""
    machine = lookup(vagrantfile)
    if machine is None:
        machine = read_with_vagrant()
        keep(vagrantfile, machine)
    return machine


def lookup(vagrantfile: Path) -> MachineConfig | None:
    """The kept config of ``vagrantfile`` as it is now, or None (read it with Vagrant)."""
    path = directory() / f"{inputs_key(vagrantfile)}.json"
    try:
        machine = MachineConfig.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError):
        return None
    if not machine.box_directory or not Path(machine.box_directory).is_dir():
        return None  # the box went (clean, a rebuild under another version)
    with contextlib.suppress(OSError):  # another run pruned it meanwhile: still read
        os.utime(path)  # the newest are kept
    return machine


def keep(vagrantfile: Path, machine: MachineConfig) -> None:
    """Keep ``machine`` (as read just now) for later runs; a config without an installed box
    is not kept. The box directory is kept as a real path: Vagrant reports it through the
    session's own ``VAGRANT_HOME``, which goes with the session."""
    if not machine.box_installed or not machine.box_directory:
        return
    kept = replace(machine, box_directory=str(Path(machine.box_directory).resolve()))
    folder = paths.ensure_dir(directory())
    path = folder / f"{inputs_key(vagrantfile)}.json"
    partial = path.with_suffix(f".{os.getpid()}.partial")
    try:  # a shortcut only: a full disk or a race costs the next run a Ruby start, no more
        partial.write_text(json.dumps(asdict(kept)))
        partial.replace(path)  # whole or not at all: another run may read it meanwhile
        for old in sorted(folder.glob("*.json"), key=_age)[KEPT:]:
            old.unlink(missing_ok=True)
    except OSError:
        partial.unlink(missing_ok=True)


def count() -> int:
    """How many merged configs are kept."""
    folder = directory()
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


def forget_all() -> list[str]:
    """For ``clean --caches``: what was removed, in one line, or nothing."""
    folder, kept = directory(), count()
    shutil.rmtree(folder, ignore_errors=True)
    return [f"{kept} kept Vagrant configs ({folder})"] if kept else []


def inputs_key(vagrantfile: Path) -> str:
    digest = hashlib.sha256(f"vmc-config {FORMAT}\0".encode())
    text = vagrantfile.read_text(errors="replace")
    for item in _inputs(vagrantfile, text):
        digest.update(item.encode() + b"\0")
    return digest.hexdigest()[:32]


def _inputs(vagrantfile: Path, text: str) -> Iterator[str]:
    project = vagrantfile.parent
    yield f"plumbing {_content(PLUMBING)}"
    beside = {p for p in project.iterdir() if p.is_file()} if _LISTS_FILES.search(text) \
        else set()
    named = {project / name for literal in _LITERAL.findall(text)
             for name in (literal, f"{literal}.rb")
             if not literal.startswith("/") and (project / name).is_file()}
    for file in sorted(beside | named | {vagrantfile}):
        yield f"file {file.relative_to(project)} {_content(file)}"
    yield from _environment(text)
    boxes = paths.vagrant_home() / "boxes"
    for file in _box_files(boxes, text):
        yield f"box {file.relative_to(boxes)} {_stamp(file)}"
    vagrant = shutil.which("vagrant")
    for file in [*_PACKAGE_LISTS, *([Path(vagrant).resolve()] if vagrant else [])]:
        yield f"vagrant {file} {_stamp(file) if file.exists() else 'absent'}"


def _box_files(boxes: Path, text: str) -> list[Path]:
    """Every file of the installed boxes the Vagrantfile names by a literal; when it names
    none, of every box but the VM cache's and the runs' own exported app boxes (which come
    and go with their runs: a read meanwhile would miss the kept config). So a box another
    job adds (the boot-loader box, built beside the runs) costs no read of a Vagrantfile that
    does not name it. ``os.walk`` skips a directory that goes meanwhile."""
    try:
        installed = [entry.name for entry in os.scandir(boxes) if entry.is_dir()]
    except OSError:
        installed = []
    named = {literal.replace("/", "-VAGRANTSLASH-") for literal in _LITERAL.findall(text)}
    picked = [name for name in installed if name in named] or [
        name for name in installed
        if not name.startswith(_CACHE_BOXES) and not _SESSION_BOX.fullmatch(name)]
    found = []
    for name in picked:
        for folder, _, files in os.walk(boxes / name):
            found += [Path(folder) / file for file in files]
    return sorted(found)


def _environment(text: str) -> Iterator[str]:
    named = _NAMED_VARIABLE.findall(text)
    names = set(named)
    if len(re.findall(r"\bENV\b", text)) > len(named):  # ENV.each, ENV[name], ENV.to_h ...
        names = {name for name in os.environ
                 if name not in _VOLATILE_NAMES and not name.startswith(_VOLATILE_PREFIXES)}
    for name in sorted(names):
        yield f"env {name}={os.environ.get(name)!r}"


def _content(file: Path) -> str:
    try:
        if file.stat().st_size > LARGE:
            return _stamp(file)
        return hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError:  # gone meanwhile (a box removed, a file replaced): it keys as gone
        return "gone"


def _stamp(file: Path) -> str:
    try:
        stat = file.stat()
    except OSError:
        return "gone"
    return f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"


def _age(path: Path) -> float:
    try:
        return -path.stat().st_mtime
    except OSError:
        return 0.0
