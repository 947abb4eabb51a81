"""The Vagrant backend's bases: the libvirt boxes built here (``LOCAL_BOXES``), their recipes,
where Vagrant keeps them, and how their disks are made (ext4 with the kernel beside it, or
a partitioned disk with GRUB). ``bases.ensure_box`` builds one."""

from __future__ import annotations

import os
import shutil
import string
import threading
from dataclasses import dataclass
from pathlib import Path

from pytest_vmcontainer.errors import BuildError
from pytest_vmcontainer.host import accel, paths
from pytest_vmcontainer.host.basebuild import (
    BASE_RECIPE,
    DATA,
    SCAN_COLLECTOR,
    read_env,
    recipe,
    run_logged,
)
from pytest_vmcontainer.runtime import hashing

BOX_RECIPE = DATA / "box"
BOOTLOADER_BOX_RECIPE = DATA / "box-bootloader"
BOX_NAME = "pytest-vmcontainer/debian-12"
BOOTLOADER_BOX_NAME = "pytest-vmcontainer/debian-12-bootloader"
DISK_SIZE_GB = 4
PARTITION_START_SECTOR = 2048  # 1 MiB, where partitioning tools start the first one


@dataclass(frozen=True)
class BoxRecipe:
    """A Vagrant box built here: its name, its recipe directory (hashed with ``data/base``)
    and how it boots.

    ``boot``:
      - ``"kernel"``: the project's own box. One ext4 filesystem, no partition table; the
        kernel and initrd ship beside the disk and boot directly; a key pair made per build
        (the public insecure key is never used).
      - ``"bootloader"``: made the way public boxes are. GRUB on a partitioned disk, built
        inside libguestfs's appliance (nothing is mounted on the host); Vagrant's public
        insecure key, replaced by Vagrant at the first boot; eth0 by DHCP.
    """

    name: str
    kind: str  # names its lock, log, work directory and build record
    directory: Path
    boot: str

    def recipe_hash(self) -> str:
        """The box's inputs: the recipes, and the parity scan's collector, whose scan of the
        root filesystem is made with the box (a box built without one is rebuilt once)."""
        return hashing.content_hash([BASE_RECIPE, self.directory, SCAN_COLLECTOR],
                                    extra=[self.kind])[:16]

    def values(self) -> dict[str, str]:
        """The base recipe's values, overridden by the box's own ``recipe.env``, if any."""
        return {**recipe(), **read_env(self.directory / "recipe.env")}

    def box_dir(self) -> Path:
        escaped = self.name.replace("/", "-VAGRANTSLASH-")
        return paths.vagrant_home() / "boxes" / escaped / "0" / "libvirt"

    def current(self) -> bool:
        try:
            return (self.box_dir() / "recipe-hash").read_text().strip() == self.recipe_hash()
        except OSError:
            return False

    def box_file(self) -> Path:
        return paths.builds_dir() / (self.name.replace("/", "-") + ".box")


PROJECT_BOX = BoxRecipe(BOX_NAME, "box", BOX_RECIPE, "kernel")
BOOTLOADER_BOX = BoxRecipe(BOOTLOADER_BOX_NAME, "box-bootloader", BOOTLOADER_BOX_RECIPE,
                           "bootloader")
# The boxes built here, by the name a Vagrantfile gives in config.vm.box.
LOCAL_BOXES = {box.name: box for box in (PROJECT_BOX, BOOTLOADER_BOX)}


def box_dir() -> Path:
    return PROJECT_BOX.box_dir()


def box_current() -> bool:
    return PROJECT_BOX.current()


def box_kernel() -> Path:
    return box_dir() / "vmlinuz"


def box_file() -> Path:
    return PROJECT_BOX.box_file()


def box_recipe_hash() -> str:
    return PROJECT_BOX.recipe_hash()



def make_disk(rootfs: Path, work: Path, log: Path, cancel: threading.Event | None) -> Path:
    raw = work / "box.raw"
    run_logged(["mkfs.ext4", "-q", "-F", "-L", "vmc-root", "-d", str(rootfs), str(raw),
                 f"{DISK_SIZE_GB}G"], log, "mkfs.ext4 -d", "see the log", cancel)
    qcow2 = work / "box" / "box.img"
    run_logged(["qemu-img", "convert", "-O", "qcow2", str(raw), str(qcow2)], log,
                "qemu-img convert", "see the log", cancel)
    raw.unlink()
    return qcow2


def copy_boot_files(rootfs: Path, box: Path) -> None:
    for pattern, name in (("vmlinuz-*", "vmlinuz"), ("initrd.img-*", "initrd.img")):
        found = sorted((rootfs / "boot").glob(pattern))
        if not found:
            raise BuildError(f"the box root filesystem has no /boot/{pattern}",
                             "check BOX_INCLUDE in the recipe (it needs a linux-image package)")
        shutil.copyfile(found[-1], box / name)
        (box / name).chmod(0o644)


def _libguestfs_env() -> dict[str, str]:
    """libguestfs's appliance run directly by QEMU (never as a libvirt domain), under TCG
    where KVM cannot boot a guest (the appliance would hang trying)."""
    kernel = accel.probe_kernel(box_kernel())
    env = {**os.environ, "LIBGUESTFS_BACKEND": "direct"}
    if accel.detect(kernel).mode == "tcg":
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


def make_bootloader_disk(box: BoxRecipe, rootfs: Path, work: Path, root_uuid: str, log: Path,
                          cancel: threading.Event | None) -> Path:
    """A partitioned qcow2 disk with GRUB in its MBR.

    The partition table and the partition's ext4 (filled from the root filesystem) are made
    here, as the project box's disk is; only ``grub-install`` and ``update-grub``, which need
    the disk as a block device, run inside libguestfs's appliance (``make-disk.fish``).
    Unpacking the root filesystem inside the appliance took about a minute of TCG."""
    raw = work / "box.raw"
    offset = PARTITION_START_SECTOR * 512
    run_logged(["mkfs.ext4", "-q", "-F", "-L", "root", "-U", root_uuid, "-E", f"offset={offset}",
                 "-d", str(rootfs), str(raw), f"{DISK_SIZE_GB * 1024 * 1024 - offset // 1024}k"],
                log, "mkfs.ext4 -d (the boot partition)", "see the log", cancel)
    run_logged(["parted", "-s", str(raw), "mklabel", "msdos", "mkpart", "primary", "ext4",
                 f"{PARTITION_START_SECTOR}s", "100%", "set", "1", "boot", "on"],
                log, "parted (the partition table)", "see the log", cancel)
    qcow2 = work / "box" / "box.img"
    script = work / "make-disk.fish"
    script.write_text(string.Template((box.directory / "make-disk.fish").read_text())
                      .substitute(disk=qcow2))
    for attempt in (1, 2):
        run_logged(["qemu-img", "convert", "-O", "qcow2", str(raw), str(qcow2)], log,
                    "qemu-img convert", "see the log", cancel)
        try:
            run_logged(["guestfish", "-x", "-f", str(script)], log,
                        "guestfish (installing GRUB)",
                        "check that libguestfs-tools works here ('libguestfs-test-tool' shows "
                        "why not; under TCG it needs LIBGUESTFS_BACKEND_SETTINGS=force_tcg), "
                        f"log {log}", cancel, env=_libguestfs_env())
            break
        except BuildError:
            # Seen once in about ten builds, on a loaded host: grub-install in the appliance's
            # chroot took the disk for a bare filesystem ("cross-disk install"); the same
            # script on a new disk then worked. A second failure is the error.
            if attempt == 2:
                raise
            with open(log, "a") as out:
                out.write("\n--- guestfish failed; once more, on a new disk ---\n")
    raw.unlink()
    return qcow2

