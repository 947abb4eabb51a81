"""Offline base builds: a Docker base image and libvirt Vagrant boxes, all Debian 12.

No registry and no Vagrant Cloud are needed: every base is debootstrapped from
Debian's archive with the same suite and the same apt sources. Each is cached
by a content hash of its recipe (the files under ``data/base`` and the box's
own directory, ``data/box`` or ``data/box-bootloader``) and rebuilt only when
the recipe changes or a rebuild is asked for. The boxes built here are listed
in ``LOCAL_BOXES``: the project's own (direct kernel boot) and one made the
way public boxes are (GRUB on a partitioned disk, Vagrant's key replacement).

Each backend's base has a module of its own: ``dockerbase`` (the Docker base image) and
``boxes`` (the box recipes and their disks), over ``basebuild`` (what every build shares).
This module gives all their names, says which bases stand in for the names teams write,
builds a box (``ensure_box``, with Vagrant's insecure key) and builds what is missing.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_vmcontainer.errors import BuildError, DiskFilledUp
from pytest_vmcontainer.host import libvirt, paths, space
from pytest_vmcontainer.host.basebuild import (
    BASE_RECIPE,
    DATA,
    DEFAULT_MIRROR,
    MIRROR_ENV,
    SCAN_COLLECTOR,
    BuildRecord,
    base_scan_path,
    build_lock,
    debootstrap,
    log_path,
    recipe,
    remove_tree,
    run_logged,
    scan_rootfs,
    workdir,
)
from pytest_vmcontainer.host.boxes import (
    BOOTLOADER_BOX,
    BOOTLOADER_BOX_NAME,
    BOOTLOADER_BOX_RECIPE,
    BOX_NAME,
    BOX_RECIPE,
    DISK_SIZE_GB,
    LOCAL_BOXES,
    PROJECT_BOX,
    BoxRecipe,
    box_current,
    box_dir,
    box_file,
    box_kernel,
    box_recipe_hash,
    copy_boot_files,
    make_bootloader_disk,
    make_disk,
)
from pytest_vmcontainer.host.dockerbase import (
    DOCKER_BASE_IMAGE,
    DOCKER_BASE_REPOSITORY,
    RECIPE_LABEL,
    docker_base_current,
    docker_recipe_hash,
    ensure_docker_base,
)
from pytest_vmcontainer.runtime import background, hashing, logtail
from pytest_vmcontainer.runtime.progress import Progress

__all__ = [
    "BASE_RECIPE",
    "BOOTLOADER_BOX",
    "BOOTLOADER_BOX_NAME",
    "BOOTLOADER_BOX_RECIPE",
    "BOX_EQUIVALENTS",
    "BOX_NAME",
    "BOX_RECIPE",
    "BUILD_HINT",
    "DATA",
    "DEFAULT_MIRROR",
    "DISK_SIZE_GB",
    "DOCKER_BASE_IMAGE",
    "DOCKER_BASE_REPOSITORY",
    "DOCKER_EQUIVALENTS",
    "INSECURE_KEY_GLOBS",
    "LOCAL_BOXES",
    "MIRROR_ENV",
    "PROJECT_BOX",
    "RECIPE_LABEL",
    "SCAN_COLLECTOR",
    "BoxRecipe",
    "BuildRecord",
    "base_scan_path",
    "box_current",
    "box_dir",
    "box_file",
    "box_kernel",
    "box_recipe_hash",
    "docker_base_current",
    "docker_recipe_hash",
    "dockerfile_bases",
    "dockerfile_froms",
    "ensure_bases",
    "ensure_box",
    "ensure_docker_base",
    "inputs_hash",
    "recipe",
    "references",
    "remove_tree",
    "scan_rootfs",
    "unavailable_base",
    "vagrant_insecure_key",
]



# Names teams write in their files, and the base built here that stands in for them: these
# machines reach no image registry and no Vagrant Cloud.
DOCKER_EQUIVALENTS = frozenset({
    "debian", "debian:bookworm", "debian:12", "debian:bookworm-slim", "debian:12-slim",
    "debian:stable", "debian:stable-slim", "debian:latest", "library/debian:bookworm",
    "docker.io/debian:bookworm", "docker.io/library/debian:bookworm"})
BOX_EQUIVALENTS = frozenset({
    "debian/bookworm64", "debian/12", "debian/testing64", "generic/debian12",
    "generic-x64/debian12", "bento/debian-12", "bento/debian-12.0", "roboxes/debian12",
    "cloud-image/debian-12"})
BUILD_HINT = "built by 'python -m pytest_vmcontainer build'"


def dockerfile_froms(dockerfile: Path) -> list[tuple[str, str | None]]:
    """Each FROM line of a Dockerfile, in order: (the image or stage it builds from, the name
    ``AS`` gives the new stage or None). Flags (``--platform=...``) are left out."""
    found: list[tuple[str, str | None]] = []
    for line in dockerfile.read_text(errors="replace").splitlines():
        words = [w for w in line.split() if not w.startswith("--")]
        if len(words) >= 2 and words[0].upper() == "FROM":
            alias = words[3] if len(words) >= 4 and words[2].upper() == "AS" else None
            found.append((words[1], alias))
    return found


def dockerfile_bases(dockerfile: Path) -> list[str]:
    """The images a Dockerfile builds FROM (build stages referred to by name left out)."""
    stages: set[str] = set()
    found = []
    for source, alias in dockerfile_froms(dockerfile):
        if source.lower() not in stages:
            found.append(source)
        if alias is not None:
            stages.add(alias.lower())
    return found


def references(dockerfile: Path, image: str) -> bool:
    """Whether a Dockerfile builds FROM ``image`` (a repository, any tag)."""
    return any(base == image or base.startswith(f"{image}:")
               for base in dockerfile_bases(dockerfile))


def unavailable_base(name: str, kind: str) -> tuple[str, str]:
    """(cause, remedy) for a base image (kind "image") or box ("box") that cannot be fetched."""
    if kind == "box":
        cause = (f"the box {name} is not installed and Vagrant Cloud is unreachable from this "
                 "machine")
        ours, known = BOX_NAME, name in BOX_EQUIVALENTS
        usage = f'config.vm.box = "{BOX_NAME}"'
    else:
        cause = f"the base image {name} cannot be pulled (no image registry reachable)"
        ours, known = DOCKER_BASE_IMAGE, name in DOCKER_EQUIVALENTS
        usage = f"FROM {DOCKER_BASE_IMAGE}"
    if known:
        return cause, f"use {ours} ({BUILD_HINT}): {usage}"
    return cause, (f"add it to this machine yourself, or start from {ours} ({BUILD_HINT}), "
                   "the Debian 12 base built here")


def inputs_hash(vagrantfile: Path, dockerfile: Path, provision_inputs: Sequence[Path]) -> str:
    """What both targets are provisioned from: the Vagrantfile, the Dockerfile, the
    provisioning inputs and the base recipes. File names count relative to each path given,
    so checkouts in different directories hash the same. Reads files only."""
    return hashing.content_hash([vagrantfile, dockerfile, *provision_inputs],
                                extra=[box_recipe_hash(), docker_recipe_hash()])[:16]


# Where Vagrant installations keep the public insecure key (Debian's package, HashiCorp's).
INSECURE_KEY_GLOBS = ("/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub",
                      "/opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub",
                      "/opt/vagrant/embedded/gems/vagrant-*/keys/vagrant.pub")



def vagrant_insecure_key() -> Path:
    """Vagrant's public insecure key, as shipped with the installed Vagrant."""
    for pattern in INSECURE_KEY_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[-1])
    raise BuildError("Vagrant's public insecure key (keys/vagrant.pub) was not found",
                     "install Vagrant ('python -m pytest_vmcontainer setup' does), then retry")


def add_box(box: BoxRecipe, log: Path, cancel: threading.Event | None = None,
            cwd: Path | None = None) -> None:
    """``vagrant box add`` of the packed box into the harness's ``VAGRANT_HOME``. A disk that
    fills up meanwhile is named, and what Vagrant left of the box goes first."""
    libvirt.delete_box_volumes(box.name)  # vagrant-libvirt uploads once per name and version
    try:
        run_logged(["vagrant", "box", "add", "--force", "--name", box.name,
                     str(box.box_file())], log, "vagrant box add", "see the log", cancel,
                    env=libvirt.vagrant_env(), cwd=cwd)  # cwd: not the caller's project dir
    except BuildError as error:
        # Vagrant copies the box with curl first, which says "Failure writing output".
        home, size = paths.vagrant_home(), box.box_file().stat().st_size
        if not space.filled_up(error.detail) and space.free_bytes(home) >= size:
            raise
        if not box.current():  # a box of the old recipe, or half of the new one
            remove_tree(home / "boxes" / box.name.replace("/", "-VAGRANTSLASH-"))
        for partial in (home / "tmp").glob("box*"):  # Vagrant's download and unpacking
            remove_tree(partial) if partial.is_dir() else partial.unlink(missing_ok=True)
        raise DiskFilledUp(space.filled_up_cause(home, f"the box {box.name} into Vagrant", size),
                           space.FILLED_UP_REMEDY, detail=error.detail) from None
    if not box.current():
        raise BuildError("vagrant box add did not install the box", f"see {log}",
                         detail=logtail.tail(log, 12))


def ensure_box(progress: Progress, rebuild: bool = False,
               cancel: threading.Event | None = None, box: BoxRecipe = PROJECT_BOX) -> str:
    """A libvirt box built here (``LOCAL_BOXES``), as the Vagrantfile names it in
    ``config.vm.box``: built when missing or when its recipe changed."""
    with build_lock(box.kind):
        if not rebuild and box.current():
            return box.name
        with progress.step(f"building Vagrant box {box.name}") as note, \
                workdir(box.kind) as work:
            started = time.monotonic()
            log = log_path(box.kind)
            rootfs, out = work / "rootfs", work / "box"
            out.mkdir()
            root_uuid = str(uuid.uuid4())
            if box.boot == "kernel":
                note("ssh-keygen (a key pair for this build only)")
                run_logged(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                             f"pytest-vmcontainer box {box.recipe_hash()}", "-f",
                             str(out / "vagrant_key")], log, "ssh-keygen", "see the log", cancel)
                public_key, customize_args = out / "vagrant_key.pub", []
            else:
                public_key, customize_args = vagrant_insecure_key(), [root_uuid]
            note(f"debootstrap {recipe()['SUITE']} with kernel, systemd and sshd (log {log})")
            debootstrap(rootfs, box.values()["BOX_INCLUDE"], log, cancel)
            note("customizing the guest (vagrant user, network, sshd)")
            run_logged([str(box.directory / "customize.sh"), str(rootfs), str(public_key),
                         *customize_args], log, "customizing the box", "see the log", cancel)
            note("scanning the box's root filesystem for the parity scan")
            scan_rootfs(rootfs, base_scan_path(box.kind, box.recipe_hash()), log)
            if box.boot == "kernel":
                copy_boot_files(rootfs, out)
                note(f"making the {DISK_SIZE_GB} GB qcow2 disk")
                make_disk(rootfs, work, log, cancel)
                (out / "vagrant_key.pub").unlink()
            else:
                note(f"making the {DISK_SIZE_GB} GB partitioned qcow2 disk with GRUB "
                     "(guestfish)")
                make_bootloader_disk(box, rootfs, work, root_uuid, log, cancel)
            remove_tree(rootfs)
            shutil.copyfile(box.directory / "Vagrantfile", out / "Vagrantfile")
            (out / "metadata.json").write_text(json.dumps(
                {"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_SIZE_GB}))
            (out / "recipe-hash").write_text(box.recipe_hash() + "\n")
            note("packing the box")
            packed = work / "packed.box"
            run_logged(["tar", "-C", str(out), "-I", "gzip -1", "-cf", str(packed), "."], log,
                        "packing the box", "see the log", cancel)
            os.replace(packed, box.box_file())
            note("vagrant box add")
            add_box(box, log, cancel, cwd=work)
            BuildRecord(box.kind, box.recipe_hash(), str(box.box_file()),
                        round(time.monotonic() - started, 1), box.box_file().stat().st_size,
                        time.time()).save()
        return box.name


def ensure_bases(progress: Progress, docker_client: Any | None, want_box: bool,
                 rebuild: bool = False, cancel: threading.Event | None = None,
                 boxes: Sequence[BoxRecipe] = (PROJECT_BOX,)) -> None:
    """Build what is missing, all at once: the Docker base (given a client) and, when a box
    is wanted, each of ``boxes``."""
    works: list[Callable[[], object]] = []
    if docker_client is not None:
        works.append(lambda: ensure_docker_base(progress, docker_client, rebuild, cancel))
    if want_box:
        works.extend(functools.partial(ensure_box, progress, rebuild, cancel, box)
                     for box in boxes)
    background.run_all(works, name="base-build")
