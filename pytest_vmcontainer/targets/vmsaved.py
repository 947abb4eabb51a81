"""Saved running VMs: a VM from the VM cache restored from memory instead of booted.

A VM that starts from a VM cache entry boots (about a minute under TCG). Once it
is ready, ``virsh save`` writes its memory to a state file and its disk is kept
beside it; every later start restores that state on a new copy-on-write overlay
of the kept disk, with new forwards on 127.0.0.1, and sets the guest clock
through the guest agent (about a second). Each restored VM is a clean machine:
nothing a test wrote in an earlier one is in it.

libvirt restores a state only under the saved domain's name and UUID, so a
saved state serves one running VM at a time. Each is a *slot*, named
``s<digest>n<i>``; its domain is ``vmc-s<digest>n<i>-<machine>``. A run holds the
slot's lock (``sessions/<slot>/lock``) for as long as its VM lives, exactly as a
session holds its own: the sweep therefore finds a crashed run's restored VM
by that name and removes it once the lock is free. A run that finds every slot
taken (concurrent runs on one machine) boots, as without saved states.

Restored VMs continue the boot that was saved: they share its kernel boot id (and,
as every VM from one cache entry, its machine-id). The kernel's random pool is
stirred with host randomness after each restore.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pytest_vmcontainer.host import paths
from pytest_vmcontainer.runtime import seal
from pytest_vmcontainer.targets import vmcache

SLOTS_PER_VARIANT = 2  # runs at once that restore the same VM; the next ones boot
_SAVED_FILE = "saved.json"  # written last: a slot without it holds nothing to trust


@dataclass(frozen=True)
class Slot:
    """One saved running VM of a cache entry, and the name it runs under."""

    cache_key: str
    id: str

    @property
    def directory(self) -> Path:
        return vmcache.saved_dir(self.cache_key) / self.id

    @property
    def state(self) -> Path:
        return self.directory / "state.sav"

    @property
    def disk(self) -> Path:
        """The VM's disk as it was when its memory was saved (an overlay of the entry)."""
        return self.directory / "disk.qcow2"

    @property
    def definition(self) -> Path:
        """The domain as Vagrant defined it (inactive XML), for the restored VM's definition."""
        return self.directory / "domain.xml"

    @property
    def ssh_config(self) -> Path:
        """``vagrant ssh-config`` of the saved VM; only its port changes on restore."""
        return self.directory / "ssh_config"

    def saved(self) -> bool:
        """A committed slot whose state and disk are as they were saved."""
        return self.committed() and self.damage() is None

    def committed(self) -> bool:
        return all(path.exists() for path in (self.directory / _SAVED_FILE, self.state,
                                              self.disk, self.definition, self.ssh_config))

    def damage(self) -> str | None:
        """Why the committed state or disk cannot be trusted (truncated, written to since the
        save, unsealed), or None."""
        return seal.broken(self.directory, self._description().get("seal"))

    def frozen(self) -> bool:
        """Saved with the guest's file systems frozen (right after provisioning, so that the
        entry's disk is clean): the restored guest thaws them before anything writes."""
        return bool(self._description().get("frozen"))

    def _description(self) -> dict[str, object]:
        try:
            described = json.loads((self.directory / _SAVED_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return described if isinstance(described, dict) else {}

    def begin(self) -> None:
        """An empty slot directory, world-traversable (QEMU reads the kept disk)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        paths.ensure_dir(self.directory)

    def commit(self, description: dict[str, object]) -> None:
        """Seal the state and the disk, then write the file that makes the slot trusted."""
        sealed = seal.seal([self.state, self.disk])
        (self.directory / _SAVED_FILE).write_text(json.dumps(
            {"saved": time.time(), "seal": sealed, **description}, indent=1))

    def forget(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def slot_ids(cache_key: str, variant: str) -> list[str]:
    """The slots of one entry and one variant (forwarded guest ports, disk cache mode,
    accelerator): a saved state restores only into the machine it was saved from."""
    digest = hashlib.sha256(f"{cache_key}|{variant}".encode()).hexdigest()[:12]
    return [f"s{digest}n{i}" for i in range(SLOTS_PER_VARIANT)]


def is_slot_id(name: str) -> bool:
    return re.fullmatch(r"s[0-9a-f]{12}n\d+", name) is not None


class SlotLock:
    """The lock a run holds on a slot while its VM lives (in the sessions directory, so
    that the sweep judges a slot's leftovers as it judges a session's)."""

    def __init__(self, slot_id: str, handle: IO[str]) -> None:
        self.slot_id, self._handle = slot_id, handle

    @classmethod
    def try_take(cls, slot_id: str) -> SlotLock | None:
        directory = paths.sessions_dir() / slot_id
        for _ in range(3):  # a sweep may remove the directory between mkdir and open
            try:
                directory.mkdir(exist_ok=True)
                handle = open(directory / "lock", "a")  # noqa: SIM115 - held for the VM's life
            except OSError:
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                return None
            if paths.names_open_file(directory / "lock", handle):
                return cls(slot_id, handle)
            handle.close()  # the file was removed under us: take the new one
        return None

    def release(self) -> None:
        """Remove the slot's directory in the sessions dir, then let go of the lock."""
        if self._handle.closed:
            return
        shutil.rmtree(paths.sessions_dir() / self.slot_id, ignore_errors=True)
        self._handle.close()


def take(cache_key: str, variant: str,
         on_damage: Callable[[str], None] | None = None) -> tuple[Slot, SlotLock] | None:
    """A free slot of this entry and variant, locked; None when all are in use. A slot whose
    saved state is damaged is emptied (the run boots and saves it again), and ``on_damage``
    told why."""
    for slot_id in slot_ids(cache_key, variant):
        lock = SlotLock.try_take(slot_id)
        if lock is not None:
            slot = Slot(cache_key, slot_id)
            reason = slot.damage() if slot.committed() else None
            if reason is not None:
                slot.forget()
                if on_damage is not None:
                    on_damage(f"vm: the saved VM {slot_id} is damaged ({reason}); removed it, "
                              "booting instead")
            return slot, lock
    return None
