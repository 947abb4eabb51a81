"""Writing one VM cache entry (``vmcache``): under a temporary name, renamed into place.

The disk comes from a VM's disk flattened by ``qemu-img convert``: here, into the entry, or,
for a VM on libvirt on another machine, there, into this home's pool there, with only an
empty disk of the same virtual size here (``Writer._add_disk_there``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_vmcontainer.errors import TargetError
from pytest_vmcontainer.host import libvirt, space
from pytest_vmcontainer.runtime import logtail, procs, seal
from pytest_vmcontainer.targets.vmcache import (
    DEFINITION_FILE,
    ENTRY_FILE,
    HARNESS_FILES,
    MACHINE_KEY,
    SSH_CONFIG_FILE,
    Entry,
    cache_dir,
    evict,
    in_pool,
    remove_abandoned_partials,
)

if TYPE_CHECKING:
    from pytest_vmcontainer.host.libvirthost import LibvirtHost

# An entry's disk being written on libvirt on another machine, beside the pool there:
# ``STAGED_THERE<key>-<pid of the writing run here>``.
STAGED_THERE = ".entry-"


def _allocated(disk: Path) -> int:
    """The bytes a flattened copy of ``disk`` (a qcow2 over its backing files) about takes."""
    result = subprocess.run(["qemu-img", "measure", "-O", "qcow2", str(disk)],
                            capture_output=True, text=True, check=False)
    found = re.search(r"required size: (\d+)", result.stdout)
    return int(found.group(1)) if found and result.returncode == 0 else disk.stat().st_size


class Writer:
    """Writes one entry under a temporary name; ``commit`` renames it into place. With
    ``remote`` (libvirt on another machine) the entry's disk is written there."""

    def __init__(self, cache_key: str, source_box: Path | None, log: Path,
                 remote: LibvirtHost | None = None) -> None:
        self.entry = Entry(cache_key)
        self.partial = cache_dir() / f".partial-{cache_key}-{os.getpid()}"
        self.source_box = source_box
        self.log = log
        self.remote = remote
        self._there: tuple[LibvirtHost, str] | None = None  # a disk staged there (its path)
        self._there_bytes = 0

    def __enter__(self) -> Writer:
        remove_abandoned_partials()
        shutil.rmtree(self.partial, ignore_errors=True)
        self.partial.mkdir()
        self.partial.chmod(0o755)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()

    def discard(self) -> None:
        """Remove the half-written entry (nothing after a commit: it was renamed away)."""
        shutil.rmtree(self.partial, ignore_errors=True)
        if self._there is not None:
            remote, staged = self._there
            self._there = None
            remote.ssh(f"rm -f -- {shlex.quote(staged)}")

    def add_disk(self, disk: Path, cancel: Any = None) -> float:
        """Flatten the VM's disk (its overlay and the box under it) into the entry (there,
        with ``remote``: ``_add_disk_there``); returns the seconds it took."""
        started = time.monotonic()
        if self.remote is not None:
            self._add_disk_there(self.remote, str(disk), cancel)
            return time.monotonic() - started
        with open(self.log, "ab") as out:
            command = [*procs.DIE_WITH_THE_RUN, "qemu-img", "convert", "-U", "-O", "qcow2",
                       str(disk), str(self.partial / "box.img")]
            out.write(f"\n$ {' '.join(command)}\n".encode())
            out.flush()
            failed = procs.run(command, cancel, stdout=out, stderr=subprocess.STDOUT) != 0
        if failed:
            self.discard()
            if space.filled_up(logtail.tail(self.log)):
                raise TargetError(space.filled_up_cause(cache_dir(), "a VM cache entry",
                                                        _allocated(disk)), space.FILLED_UP_REMEDY)
            raise TargetError("qemu-img could not copy the provisioned disk into the "
                              "VM cache", f"see {self.log}")
        return time.monotonic() - started

    def _add_disk_there(self, remote: LibvirtHost, disk: str, cancel: Any) -> None:
        """Flatten the disk of a VM on libvirt on another machine into an entry whose disk
        stays there: ``qemu-img convert`` runs there, into a staged file beside this home's
        pool there (renamed into the pool at the commit), and only an empty disk of the same
        virtual size comes here, as the box's image. Nothing large crosses the network."""
        staged = f"{libvirt.pool_path()}-boot/{STAGED_THERE}{self.entry.key}-{os.getpid()}"
        self._there = (remote, staged)
        quoted = shlex.quote(staged)
        made = remote.ssh(f"mkdir -p {shlex.quote(os.path.dirname(staged))}")
        status = made.returncode or remote.run_long(
            ["qemu-img", "convert", "-U", "-O", "qcow2", disk, staged], cancel, self.log)
        described = remote.ssh(f"chmod 644 {quoted} && qemu-img info -U --output=json "
                               f"{quoted}") if status == 0 else None
        if described is None or described.returncode != 0:
            self.discard()
            raise TargetError(f"qemu-img on {remote.hostname} could not copy the provisioned "
                              "disk into the VM cache there",
                              f"check the free space under {libvirt.pool_path()} there; "
                              f"see {self.log}")
        image = json.loads(described.stdout)
        self._there_bytes = int(image.get("actual-size", 0))
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(self.partial / "box.img"),
                        str(image["virtual-size"])], check=True, capture_output=True)

    def add_box_files(self, machine_key: Path | None) -> None:
        """The source box's other files (metadata, embedded Vagrantfile, kernel, key)."""
        if self.source_box is not None and self.source_box.is_dir():
            for item in self.source_box.iterdir():
                if item.is_file() and item.name not in ("box.img", MACHINE_KEY, *HARNESS_FILES):
                    shutil.copy2(item, self.partial / item.name)
        if not (self.partial / "metadata.json").exists():
            size = json.loads(subprocess.run(
                ["qemu-img", "info", "--output=json", str(self.partial / "box.img")],
                capture_output=True, text=True, check=True).stdout)["virtual-size"]
            (self.partial / "metadata.json").write_text(json.dumps(
                {"provider": "libvirt", "format": "qcow2", "virtual_size": -(-size // 2**30)}))
        if machine_key is not None:
            shutil.copyfile(machine_key, self.partial / MACHINE_KEY)
            (self.partial / MACHINE_KEY).chmod(0o600)

    def add_boot_files(self, definition: str, ssh_config: str) -> None:
        """What a later VM needs to boot from the entry without Vagrant (``boot_files``)."""
        (self.partial / DEFINITION_FILE).write_text(definition)
        (self.partial / SSH_CONFIG_FILE).write_text(ssh_config)

    def commit(self, description: dict[str, Any], budget_bytes: int) -> Entry:
        """Rename the entry into place; from now on runs with this key start from it."""
        sealed = seal.seal([self.partial / "box.img"])
        there = {"there": self._there[0].shown, "there_bytes": self._there_bytes} \
            if self._there is not None else {}
        (self.partial / ENTRY_FILE).write_text(json.dumps(
            {"key": self.entry.key, "created": time.time(), "seal": sealed, **description,
             **there}, indent=1))
        self.entry.box_root.mkdir(parents=True, exist_ok=True)
        (self.entry.box_root / "0").mkdir(exist_ok=True)
        if self.entry.directory.exists():  # a concurrent run committed the same key first
            return self.entry
        os.rename(self.partial, self.entry.directory)
        if self._there is not None:
            self._into_the_pool_there()
        else:
            in_pool(self.entry)
        evict(budget_bytes, keep={self.entry.key})
        return self.entry

    def _into_the_pool_there(self) -> None:
        """The staged disk there, renamed to the volume name the committed entry gives it
        (vagrant-libvirt's, from the empty disk's mtime here); without it, no entry."""
        assert self._there is not None
        remote, staged = self._there
        volume = libvirt.pool_path() / self.entry.volume_name()
        moved = remote.ssh(f"mv -f -- {shlex.quote(staged)} {shlex.quote(str(volume))}")
        if moved.returncode != 0:
            shutil.rmtree(self.entry.box_root, ignore_errors=True)
            raise TargetError(f"could not move the VM cache entry's disk into the pool on "
                              f"{remote.hostname} ({moved.stderr.strip()})",
                              f"check {libvirt.pool_path()} there; see {self.log}")
        self._there = None
        libvirt.run_virsh("pool-refresh", libvirt.pool_name())
