"""The provisioned-VM cache: what Docker's build cache is to images, for VMs.

After a cold bring-up (``vagrant up`` with its provisioners) the VM's disk is
flattened into a cache entry (``qemu-img convert``): in the background, from the
disk of the VM saved right after provisioning (``vagrant/cachewrite``), or, where
libvirt refuses the save, after a halt, followed by a boot from the same disk. An
entry written in the background is committed unproven; the first boot from it
proves that every service enabled at boot starts at boot, or removes it. Later
runs with the same key start a fresh VM on a new copy-on-write overlay of the
entry, provisioners skipped: a clean machine, like a new container from a cached
image.

The key is a content hash of everything that provisions the VM: the
Vagrantfile, the files its provisioners read, the explicit provisioning inputs,
the box (name and image), and the harness's plumbing. Any change gives a new
key, never a stale hit. An entry is a box directory (``pytest-vmcontainer-cache/<key>``) that
Vagrant finds in the shared boxes directory; its image is hard-linked into the
libvirt pool under the volume name vagrant-libvirt looks for, so a cached start
uploads nothing. Entries are written under a temporary name and renamed into
place (an interrupted write leaves nothing a later run trusts), used under a
shared lock, and evicted under an exclusive one: least recently used first, once the cache
holds more than its disk budget (``--vmc-vm-cache-size``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pytest_vmcontainer.host import libvirt, libvirthost, paths
from pytest_vmcontainer.runtime import hashing, procs, seal

BOX_PREFIX = "pytest-vmcontainer-cache"  # not "vmc-...": those are session names
ENTRY_FILE = "vmc-cache.json"  # what an entry is, written last before the commit
MACHINE_KEY = "machine_private_key"  # the key Vagrant inserted at the first boot, if any
# The proving boot's libvirt definition and SSH config: later VMs from the entry are defined
# and booted from them without Vagrant (``domainxml.boot_xml``).
DEFINITION_FILE = "vmc-definition.xml"
SSH_CONFIG_FILE = "vmc-ssh-config"
HARNESS_FILES = (ENTRY_FILE, DEFINITION_FILE, SSH_CONFIG_FILE)  # not part of an exported box


def _escaped(box_name: str) -> str:
    return box_name.replace("/", "-VAGRANTSLASH-")


def cache_dir() -> Path:
    """Locks and half-written entries; committed entries live among Vagrant's boxes."""
    return paths.ensure_dir(paths.home() / "vm-cache")


def saved_dir(cache_key: str) -> Path:
    """Saved running VMs of one entry (``vmsaved``): removed with the entry."""
    return cache_dir() / "saved" / cache_key


@dataclass(frozen=True)
class Entry:
    key: str

    @property
    def box_name(self) -> str:
        return f"{BOX_PREFIX}/{self.key}"

    @property
    def box_root(self) -> Path:
        return paths.vagrant_home() / "boxes" / _escaped(self.box_name)

    @property
    def directory(self) -> Path:
        """The box directory Vagrant reads (version 0, provider libvirt)."""
        return self.box_root / "0" / "libvirt"

    @property
    def lock_path(self) -> Path:
        return cache_dir() / f"{self.key}.lock"

    @property
    def machine_key(self) -> Path | None:
        path = self.directory / MACHINE_KEY
        return path if path.exists() else None

    @property
    def boot_files(self) -> tuple[Path, Path] | None:
        """(the libvirt definition, the SSH config) a VM boots from without Vagrant; None for
        an entry written before they were kept."""
        files = (self.directory / DEFINITION_FILE, self.directory / SSH_CONFIG_FILE)
        return files if all(path.exists() for path in files) else None

    def committed(self) -> bool:
        return (self.directory / ENTRY_FILE).exists() and (self.directory / "box.img").exists()

    def damage(self) -> str | None:
        """Why the committed image cannot be trusted (truncated, written to since the commit,
        unsealed), or None."""
        return seal.broken(self.directory, self.info().get("seal"))

    def volume_name(self) -> str:
        """The pool volume vagrant-libvirt looks for (the entry is a box of version 0)."""
        return libvirt.box_volume_name(self.box_name, "0", self.directory / "box.img")

    @property
    def there(self) -> str | None:
        """The libvirt on another machine whose pool holds the entry's disk (written there,
        ``Writer._add_disk_there``; its ``box.img`` here is an empty disk of the same size,
        for Vagrant's box and the volume's name); None when the disk is here."""
        there = self.info().get("there")
        return str(there) if there else None

    @property
    def proven(self) -> bool:
        """A VM has booted from the entry and become ready (an entry written in the background,
        from a VM saved right after provisioning, is proven by the first boot from it)."""
        return bool(self.info().get("proven", True))

    def mark_proven(self) -> None:
        info = self.info()
        if info and not info.get("proven", True):
            path = self.directory / ENTRY_FILE
            staged = path.with_name(f".{ENTRY_FILE}.{os.getpid()}")
            staged.write_text(json.dumps({**info, "proven": True}, indent=1))
            os.replace(staged, path)

    def info(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.directory / ENTRY_FILE).read_text())
            return data
        except (OSError, ValueError):
            return {}


def key(vagrantfile: Path, provisioner_files: Iterable[Path], inputs: Iterable[Path],
        box: str | None, box_directory: Path | None, plumbing: Path) -> str:
    """The content hash of everything that provisions the VM (24 hex digits)."""
    image = box_directory / "box.img" if box_directory else None
    identity = "no-box-image"
    if image is not None and image.exists():
        stat = image.stat()
        identity = f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"
    files = [vagrantfile, *sorted(set(provisioner_files)), *inputs, plumbing]
    return hashing.content_hash(files, extra=[f"box={box}", f"image={identity}"])[:24]


def there_key(cache_key: str, machine: str) -> str:
    """The key of the entry of ``cache_key`` whose disk stays on libvirt on ``machine`` (its
    host and SSH port): a key of its own, which no run on another libvirt looks up."""
    return hashlib.sha256(f"{cache_key} on {machine}".encode()).hexdigest()[:24]


def lookup(cache_key: str, on_damage: Callable[[str], None] | None = None) -> Entry | None:
    """The committed entry of ``cache_key`` when it can be trusted. A damaged one is removed
    (unless a VM still runs from it) and ``on_damage`` told why: the run provisions again.
    An entry whose disk is on libvirt on another machine is looked up with that libvirt as
    the current one: its disk must still be in the pool there."""
    entry = Entry(cache_key)
    if not entry.committed():
        return None
    reason = entry.damage()
    if reason is None and entry.there and entry.volume_name() not in libvirt.pool_volumes():
        reason = f"its disk is gone from the pool at {entry.there}"
    if reason is None:
        return entry
    removed = _remove(entry, kept_keys())
    if on_damage is not None:
        outcome = "removed it" if removed else "left it to the VM that runs from it"
        on_damage(f"vm: the VM cache entry {cache_key} is damaged ({reason}); {outcome}, "
                  "provisioning instead")
    return None


@contextlib.contextmanager
def using(entry: Entry) -> Iterator[None]:
    """Hold a shared lock on the entry while a VM starts from it (eviction takes it
    exclusively, so an entry in use is never removed)."""
    with open(entry.lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield


def hold(entry: Entry) -> IO[str]:
    """A shared lock on ``entry`` held until the returned file is closed (for a VM's life)."""
    lock = open(entry.lock_path, "a")  # noqa: SIM115 - closed by the VM's destroy
    fcntl.flock(lock, fcntl.LOCK_SH)
    (entry.directory / ENTRY_FILE).touch()  # last use: eviction takes the least recent first
    return lock


def in_pool(entry: Entry) -> None:
    """The entry's image as the pool volume vagrant-libvirt expects (a hard link: no copy)."""
    libvirt.box_in_pool(entry.box_name, "0", entry.directory / "box.img")


def writer_lives(name: str) -> bool | None:
    """Whether the run of this machine whose pid ends ``name`` (``...-<pid>``: a half-written
    entry, here or there) still lives; None for a name without a pid."""
    pid = name.rsplit("-", 1)[-1]
    return procs.alive(int(pid)) if pid.isdigit() else None


def remove_abandoned_partials() -> list[str]:
    """Remove the half-written entries whose writing process is gone; returns their names."""
    removed = []
    for partial in cache_dir().glob(".partial-*-*"):
        if writer_lives(partial.name) is False:
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(partial.name)
    return removed


def entries() -> list[Entry]:
    """Committed entries, least recently used first."""
    boxes = paths.vagrant_home() / "boxes"
    found = [Entry(root.name.split("-VAGRANTSLASH-", 1)[1])
             for root in boxes.glob(f"{_escaped(BOX_PREFIX)}-VAGRANTSLASH-*")]
    return sorted((e for e in found if e.committed()),
                  key=lambda e: (e.directory / ENTRY_FILE).stat().st_mtime)


def _remove(entry: Entry, in_use: set[str], kept_there: dict[str, str] | None = None) -> bool:
    """Remove an entry no VM uses: here, and its disk on the machine it was written on
    (``Entry.there``), whichever libvirt this run uses; why that disk stays, if it does,
    goes into ``kept_there``."""
    if entry.key in in_use:
        return False
    with open(entry.lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a VM is starting or running from it
        there = entry.there
        if there is not None:
            why = libvirthost.LibvirtHost.parse(there).remove_box_copies(entry.box_name,
                                                                         entry.key)
            if why is not None and kept_there is not None:
                kept_there[entry.key] = why
        libvirt.delete_box_volumes(entry.box_name)  # by prefix: a damaged image's mtime moved
        shutil.rmtree(entry.box_root, ignore_errors=True)
        shutil.rmtree(saved_dir(entry.key), ignore_errors=True)
    entry.lock_path.unlink(missing_ok=True)
    return True


def kept_keys() -> set[str]:
    """Entries that kept or reused VMs (sessions that outlive their run) are backed by."""
    return {path.read_text().strip() for path in paths.sessions_dir().glob("*/vm/vm-cache-key")}


def listing() -> list[dict[str, Any]]:
    """What the cache holds, least recently used first (for ``list``): each entry's key, what
    it was made from, its bytes on disk (saved running VMs included), its saved VMs and when
    a run last used it."""
    found = []
    for entry in entries():
        info = entry.info()
        saved = saved_dir(entry.key)
        found.append({"key": entry.key, "box": info.get("box"),
                      "vagrantfile": info.get("vagrantfile"), "bytes": disk_bytes(entry),
                      "saved_vms": len({path.parent for name in ("state.sav", "saved.json")
                                        for path in saved.glob(f"*/{name}")}),
                      "last_used": (entry.directory / ENTRY_FILE).stat().st_mtime,
                      "proven": bool(info.get("proven")), "there": info.get("there")})
    return found


def disk_bytes(entry: Entry) -> int:
    """What ``entry`` takes on disk: its box directory and its saved running VMs, and its disk
    on libvirt on another machine (counted in the same budget)."""
    files = [path for root in (entry.box_root, saved_dir(entry.key)) if root.exists()
             for path in root.rglob("*") if path.is_file() and not path.is_symlink()]
    there = int(entry.info().get("there_bytes", 0) or 0)
    return sum(path.stat().st_blocks * 512 for path in files) + there + _saved_there_bytes(entry)


def _saved_there_bytes(entry: Entry) -> int:
    """The sealed bytes of the entry's saved VMs whose state is on another machine (their
    record here has no state file beside it)."""
    total = 0
    for record in saved_dir(entry.key).glob("*/saved.json"):
        if (record.parent / "state.sav").exists():
            continue
        try:
            sealed = json.loads(record.read_text()).get("seal") or {}
            total += sum(int(found.get("size", 0)) for found in sealed.values())
        except (OSError, ValueError, AttributeError, TypeError):
            continue
    return total


def _key_of_volume(volume: str) -> str | None:
    """The entry a pool volume belongs to, or None for a volume that is no entry's."""
    found = re.fullmatch(rf"{re.escape(_escaped(BOX_PREFIX))}-VAGRANTSLASH-([0-9a-f]+)"
                         r"_vagrant_box_image_.*", volume)
    return found.group(1) if found else None


def orphan_volumes() -> list[str]:
    """The pool volumes of entries that are gone (left by a version that deleted only the
    volume named after the image's current mtime). An entry's volume is linked in after its
    commit and deleted before its directory, so one without its directory is nobody's."""
    return [volume for volume in libvirt.pool_volumes()
            if (key := _key_of_volume(volume)) and not Entry(key).box_root.exists()]


def remove_orphan_volumes() -> list[str]:
    """Delete ``orphan_volumes()``; returns their names."""
    orphans = orphan_volumes()
    for volume in orphans:
        libvirt.delete_volume(volume)
    return orphans


def evict(budget_bytes: int, keep: set[str] | None = None,
          kept_there: dict[str, str] | None = None) -> list[str]:
    """Remove the least recently used entries that no VM uses until the rest fit in
    ``budget_bytes`` (never those in ``keep``); returns the removed keys (``_remove``)."""
    remove_orphan_volumes()
    candidates = entries()
    sizes = {entry.key: disk_bytes(entry) for entry in candidates}
    total = sum(sizes.values())
    in_use = kept_keys() | (keep or set())
    removed = []
    for entry in candidates:
        if total <= budget_bytes:
            break
        if _remove(entry, in_use, kept_there):
            removed.append(entry.key)
            total -= sizes[entry.key]
    return removed


def remove_entries(keys: set[str]) -> list[str]:
    """Remove these entries where nothing uses them; returns the keys removed."""
    in_use = kept_keys()
    return [entry.key for entry in entries() if entry.key in keys and _remove(entry, in_use)]


def remove_all() -> list[str]:
    """``clean``: every entry no VM uses any more, and abandoned partial writes."""
    remove_abandoned_partials()
    kept_there: dict[str, str] = {}
    removed = evict(0, kept_there=kept_there)
    return [f"vm cache {key}" + (f" ({kept_there[key]})" if key in kept_there else "")
            for key in removed]
