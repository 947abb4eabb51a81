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

On libvirt on another machine (``host.libvirthost``) the state file and the kept disk are
there, beside this home's pool there (``<pool>-saved/<key>/<slot>``): ``virsh save`` and
``virsh restore`` take paths on the daemon's host, and nothing large crosses the network.
The slot's record (its seal, the definition, the SSH config) and its lock stay here; the
seal is measured there over SSH (``seal.measure_script``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pytest_vmcontainer.errors import TargetError
from pytest_vmcontainer.host import libvirt, paths, sshlogin
from pytest_vmcontainer.host.libvirthost import LibvirtHost
from pytest_vmcontainer.runtime import seal
from pytest_vmcontainer.targets import vmcache

SLOTS_PER_VARIANT = 2  # runs at once that restore the same VM; the next ones boot
_SAVED_FILE = "saved.json"  # written last: a slot without it holds nothing to trust


@dataclass(frozen=True)
class Slot:
    """One saved running VM of a cache entry, and the name it runs under; ``there``: the
    libvirt on another machine that holds its state and disk."""

    cache_key: str
    id: str
    there: LibvirtHost | None = None

    @property
    def directory(self) -> Path:
        return vmcache.saved_dir(self.cache_key) / self.id

    @property
    def _files_dir(self) -> Path:
        """Where the state and the disk are: here, or on that machine."""
        if self.there is None:
            return self.directory
        return libvirt.saved_root_there(self.there.uri) / self.cache_key / self.id

    @property
    def state(self) -> Path:
        return self._files_dir / "state.sav"

    @property
    def disk(self) -> Path:
        """The VM's disk as it was when its memory was saved (an overlay of the entry)."""
        return self._files_dir / "disk.qcow2"

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
        """Its record is whole here (there, its files are looked at by ``damage``)."""
        files = (self.state, self.disk) if self.there is None else ()
        return all(path.exists() for path in (self.directory / _SAVED_FILE, *files,
                                              self.definition, self.ssh_config))

    def damage(self) -> str | None:
        """Why the committed state or disk cannot be trusted (truncated, written to since the
        save, unsealed, gone there), or None."""
        sealed = self._description().get("seal")
        if self.there is None:
            return seal.broken(self.directory, sealed)
        try:
            return seal.differs(sealed, self._measured_there())
        except TargetError as error:  # that host does not answer: nothing there is trusted
            return error.cause

    def _measured_there(self) -> dict[str, dict[str, int | str] | str]:
        measured = self._there_ssh(seal.measure_script([str(self.state), str(self.disk)]))
        return seal.parse_measured(measured)

    def _there_ssh(self, command: str) -> str:
        """``command`` on the machine that holds the files; its output, or a TargetError."""
        assert self.there is not None
        done = self.there.ssh(command)
        if done.returncode != 0:
            raise TargetError(f"the saved VM {self.id} on {self.there.hostname}: "
                              f"{sshlogin.last_line(done.stderr, done.returncode)}",
                              f"check that {self.there.shown} answers over SSH")
        return done.stdout

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
        """An empty slot directory, world-traversable (QEMU reads the kept disk); there too
        for a slot on another machine (emptied and made in one SSH call)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        paths.ensure_dir(self.directory)
        if self.there is not None:
            files = shlex.quote(str(self._files_dir))
            self._there_ssh(f"rm -rf -- {files} && mkdir -p {files} && chmod 755 {files}")

    def keep_disk(self, disk: Path) -> None:
        """The VM's disk, moved into the slot (a rename where they share a file system)."""
        if self.there is None:
            shutil.move(disk, self.disk)
            return
        kept = shlex.quote(str(self.disk))
        self._there_ssh(f"mv -f -- {shlex.quote(str(disk))} {kept} && chmod a+r {kept}")

    def commit(self, description: dict[str, object]) -> None:
        """Seal the state and the disk, then write the file that makes the slot trusted."""
        if self.there is None:
            sealed = seal.seal([self.state, self.disk])
        else:
            measured = self._measured_there()
            if any(isinstance(found, str) for found in measured.values()) or \
                    len(measured) != 2:
                raise TargetError(f"the saved VM {self.id} on {self.there.hostname} is "
                                  f"incomplete there ({measured})",
                                  f"check the free space there ({self.there.shown})")
            sealed = {name: found for name, found in measured.items()
                      if not isinstance(found, str)}
        (self.directory / _SAVED_FILE).write_text(json.dumps(
            {"saved": time.time(), "seal": sealed, **description}, indent=1))

    def forget(self) -> None:
        """Empty the slot: its record here, and its files there (as far as that host
        answers: ``vmcache``'s removal of the entry takes what is left there)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        if self.there is not None:
            self.there.ssh(f"rm -rf -- {shlex.quote(str(self._files_dir))}")


def slot_ids(cache_key: str, variant: str) -> list[str]:
    """The slots of one entry and one variant (forwarded guest ports, disk cache mode,
    accelerator): a saved state restores only into the machine it was saved from. On
    libvirt on another machine, the slots are this machine's too: runners that share that
    host each restore domains of their own names there."""
    if not libvirt.on_this_host():
        variant += f" runner={libvirt.this_machine()}"
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


def take(cache_key: str, variant: str, on_damage: Callable[[str], None] | None = None,
         there: LibvirtHost | None = None) -> tuple[Slot, SlotLock] | None:
    """A free slot of this entry and variant (its files ``there``, or here), locked; None
    when all are in use. A slot whose saved state is damaged is emptied (the run boots and
    saves it again), and ``on_damage`` told why."""
    for slot_id in slot_ids(cache_key, variant):
        lock = SlotLock.try_take(slot_id)
        if lock is not None:
            slot = Slot(cache_key, slot_id, there)
            reason = slot.damage() if slot.committed() else None
            if reason is not None:
                slot.forget()
                if on_damage is not None:
                    on_damage(f"vm: the saved VM {slot_id} is damaged ({reason}); removed it, "
                              "booting instead")
            return slot, lock
    return None
