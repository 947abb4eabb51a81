"""Offline base builds: a Docker base image and libvirt Vagrant boxes, all Debian 12.

No registry and no Vagrant Cloud are needed: every base is debootstrapped from
Debian's archive with the same suite and the same apt sources. Each is cached
by a content hash of its recipe (the files under ``data/base`` and the box's
own directory, ``data/box`` or ``data/box-bootloader``) and rebuilt only when
the recipe changes or a rebuild is asked for. The boxes built here are listed
in ``LOCAL_BOXES``: the project's own (direct kernel boot) and one made the
way public boxes are (GRUB on a partitioned disk, Vagrant's key replacement).
"""

from __future__ import annotations

import fcntl
import functools
import glob
import json
import os
import shutil
import string
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pytest_vmcontainer.errors import BuildError
from pytest_vmcontainer.host import accel, libvirt, paths
from pytest_vmcontainer.runtime import background, hashing, logtail, procs
from pytest_vmcontainer.runtime.progress import Progress

DATA = Path(__file__).resolve().parent.parent / "data"
BASE_RECIPE = DATA / "base"
BOX_RECIPE = DATA / "box"
BOOTLOADER_BOX_RECIPE = DATA / "box-bootloader"
SCAN_COLLECTOR = DATA / "scan" / "collect.sh"  # the parity scan's (pytest_vmcontainer.scan)

DOCKER_BASE_REPOSITORY = "pytest-vmcontainer/debian"
DOCKER_BASE_IMAGE = f"{DOCKER_BASE_REPOSITORY}:bookworm"
BOX_NAME = "pytest-vmcontainer/debian-12"
BOOTLOADER_BOX_NAME = "pytest-vmcontainer/debian-12-bootloader"
RECIPE_LABEL = "pytest-vmcontainer.recipe"
DISK_SIZE_GB = 4
MIRROR_ENV = "VMC_DEBIAN_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


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


def _read_env(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def recipe() -> dict[str, str]:
    return _read_env(BASE_RECIPE / "recipe.env")


def docker_recipe_hash() -> str:
    return hashing.content_hash([BASE_RECIPE], extra=["docker"])[:16]


def box_recipe_hash() -> str:
    return PROJECT_BOX.recipe_hash()


def inputs_hash(vagrantfile: Path, dockerfile: Path, provision_inputs: Sequence[Path]) -> str:
    """What both targets are provisioned from: the Vagrantfile, the Dockerfile, the
    provisioning inputs and the base recipes. File names count relative to each path given,
    so checkouts in different directories hash the same. Reads files only."""
    return hashing.content_hash([vagrantfile, dockerfile, *provision_inputs],
                                extra=[box_recipe_hash(), docker_recipe_hash()])[:16]


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
def _build_lock(kind: str) -> Iterator[None]:
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
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            remove_tree(work)


@contextmanager
def _workdir(kind: str) -> Iterator[Path]:
    _remove_abandoned_workdirs()
    work = paths.builds_dir() / f"work-{kind}-{os.getpid()}"
    remove_tree(work)
    work.mkdir()
    try:
        yield work
    finally:
        remove_tree(work)


def _run_logged(command: list[str], log: Path, what: str, remedy: str,
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


def _debootstrap(rootfs: Path, include: str, log: Path, cancel: threading.Event | None) -> None:
    mirror = os.environ.get(MIRROR_ENV, DEFAULT_MIRROR)
    command = ["debootstrap", "--variant=minbase", f"--include={include}", recipe()["SUITE"],
               str(rootfs), mirror]
    try:
        _run_logged(command, log, "debootstrap",
                    f"check that the Debian archive {mirror} is reachable "
                    f"(or set {MIRROR_ENV} to a reachable mirror), then retry", cancel)
    except BuildError as error:
        tail = error.detail
        if any(marker in tail for marker in ("Failed getting release file", "Couldn't download",
                                             "Temporary failure", "Could not resolve",
                                             "Connection refused")):
            raise BuildError(f"debootstrap could not reach the Debian archive {mirror}",
                             f"check network access to it or set {MIRROR_ENV} to a reachable "
                             f"mirror (log {log})", detail=tail) from None
        raise
    _run_logged([str(BASE_RECIPE / "finish-rootfs.sh"), str(rootfs),
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


def _log_path(kind: str) -> Path:
    log = paths.ensure_dir(paths.home() / "logs") / f"build-{kind}.log"
    log.write_text(f"build of {kind} started {time.ctime()}\n")
    return log


# --- Docker base image -------------------------------------------------------------------------

def _image_id(client: Any, name: str) -> str | None:
    import docker.errors

    try:
        return str(client.images.get(name).id)
    except docker.errors.ImageNotFound:
        return None


def _remove_image_if_unused(client: Any, image_id: str) -> None:
    import docker.errors

    try:
        client.images.remove(image_id)
    except docker.errors.APIError:
        pass  # an app image still builds on it: docker keeps it until that goes


def docker_base_current(client: Any) -> bool:
    import docker.errors

    try:
        image = client.images.get(DOCKER_BASE_IMAGE)
    except docker.errors.ImageNotFound:
        return False
    labels = image.attrs.get("Config", {}).get("Labels") or {}
    return bool(labels.get(RECIPE_LABEL) == docker_recipe_hash())


def ensure_docker_base(progress: Progress, client: Any, rebuild: bool = False,
                       cancel: threading.Event | None = None) -> str:
    """The Debian base image for Dockerfiles (``FROM pytest-vmcontainer/debian:bookworm``)."""
    with _build_lock("docker-base"):
        if not rebuild and docker_base_current(client):
            return DOCKER_BASE_IMAGE
        with progress.step(f"building Docker base image {DOCKER_BASE_IMAGE}") as note, \
                _workdir("docker-base") as work:
            started = time.monotonic()
            log = _log_path("docker-base")
            rootfs = work / "rootfs"
            note(f"debootstrap {recipe()['SUITE']} (log {log})")
            _debootstrap(rootfs, recipe()["DOCKER_INCLUDE"], log, cancel)
            note("docker import")
            tarball = work / "rootfs.tar"
            _run_logged(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."],
                        log, "packing the root filesystem", "see the log", cancel)
            previous = _image_id(client, DOCKER_BASE_IMAGE)
            tag = DOCKER_BASE_IMAGE.rsplit(":", 1)[1]
            client.api.import_image_from_file(
                str(tarball), repository=DOCKER_BASE_REPOSITORY, tag=tag,
                changes=[f"LABEL {RECIPE_LABEL}={docker_recipe_hash()}", 'CMD ["/bin/bash"]'])
            if previous is not None and previous != _image_id(client, DOCKER_BASE_IMAGE):
                _remove_image_if_unused(client, previous)
            size = int(client.images.get(DOCKER_BASE_IMAGE).attrs["Size"])
            BuildRecord("docker-base", docker_recipe_hash(), DOCKER_BASE_IMAGE,
                        round(time.monotonic() - started, 1), size, time.time()).save()
        return DOCKER_BASE_IMAGE


# --- Vagrant boxes -----------------------------------------------------------------------------

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
        return {**recipe(), **_read_env(self.directory / "recipe.env")}

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

# Where Vagrant installations keep the public insecure key (Debian's package, HashiCorp's).
INSECURE_KEY_GLOBS = ("/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub",
                      "/opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub",
                      "/opt/vagrant/embedded/gems/vagrant-*/keys/vagrant.pub")


def box_dir() -> Path:
    return PROJECT_BOX.box_dir()


def box_current() -> bool:
    return PROJECT_BOX.current()


def box_kernel() -> Path:
    return box_dir() / "vmlinuz"


def box_file() -> Path:
    return PROJECT_BOX.box_file()


def vagrant_insecure_key() -> Path:
    """Vagrant's public insecure key, as shipped with the installed Vagrant."""
    for pattern in INSECURE_KEY_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[-1])
    raise BuildError("Vagrant's public insecure key (keys/vagrant.pub) was not found",
                     "install Vagrant ('python -m pytest_vmcontainer setup' does), then retry")


def _remove_stale_box_volumes(name: str) -> None:
    """vagrant-libvirt uploads a box once per name and version: a rebuilt box needs a new upload."""
    prefix = name.replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image_"
    for volume in libvirt.pool_volumes():
        if volume.startswith(prefix):
            libvirt.delete_volume(volume)


def _make_disk(rootfs: Path, work: Path, log: Path, cancel: threading.Event | None) -> Path:
    raw = work / "box.raw"
    _run_logged(["mkfs.ext4", "-q", "-F", "-L", "vmc-root", "-d", str(rootfs), str(raw),
                 f"{DISK_SIZE_GB}G"], log, "mkfs.ext4 -d", "see the log", cancel)
    qcow2 = work / "box" / "box.img"
    _run_logged(["qemu-img", "convert", "-O", "qcow2", str(raw), str(qcow2)], log,
                "qemu-img convert", "see the log", cancel)
    raw.unlink()
    return qcow2


def _copy_boot_files(rootfs: Path, box: Path) -> None:
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


def _make_bootloader_disk(box: BoxRecipe, rootfs: Path, work: Path, root_uuid: str, log: Path,
                          cancel: threading.Event | None) -> Path:
    """A partitioned qcow2 disk with GRUB in its MBR, made by guestfish from a tarball of the
    root filesystem (``make-disk.fish`` in the recipe)."""
    tarball = work / "rootfs.tar"
    _run_logged(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", str(rootfs),
                 "-cf", str(tarball), "."], log, "packing the root filesystem", "see the log",
                cancel)
    qcow2 = work / "box" / "box.img"
    script = work / "make-disk.fish"
    script.write_text(string.Template((box.directory / "make-disk.fish").read_text())
                      .substitute(disk=qcow2, rootfs_tar=tarball, root_uuid=root_uuid))
    for attempt in (1, 2):
        _run_logged(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), f"{DISK_SIZE_GB}G"],
                    log, "qemu-img create", "see the log", cancel)
        try:
            _run_logged(["guestfish", "-x", "-f", str(script)], log,
                        "guestfish (partitioning the disk and installing GRUB)",
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
    tarball.unlink()
    return qcow2


def ensure_box(progress: Progress, rebuild: bool = False,
               cancel: threading.Event | None = None, box: BoxRecipe = PROJECT_BOX) -> str:
    """A libvirt box built here (``LOCAL_BOXES``), as the Vagrantfile names it in
    ``config.vm.box``: built when missing or when its recipe changed."""
    with _build_lock(box.kind):
        if not rebuild and box.current():
            return box.name
        with progress.step(f"building Vagrant box {box.name}") as note, \
                _workdir(box.kind) as work:
            started = time.monotonic()
            log = _log_path(box.kind)
            rootfs, out = work / "rootfs", work / "box"
            out.mkdir()
            root_uuid = str(uuid.uuid4())
            if box.boot == "kernel":
                note("ssh-keygen (a key pair for this build only)")
                _run_logged(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                             f"pytest-vmcontainer box {box.recipe_hash()}", "-f",
                             str(out / "vagrant_key")], log, "ssh-keygen", "see the log", cancel)
                public_key, customize_args = out / "vagrant_key.pub", []
            else:
                public_key, customize_args = vagrant_insecure_key(), [root_uuid]
            note(f"debootstrap {recipe()['SUITE']} with kernel, systemd and sshd (log {log})")
            _debootstrap(rootfs, box.values()["BOX_INCLUDE"], log, cancel)
            note("customizing the guest (vagrant user, network, sshd)")
            _run_logged([str(box.directory / "customize.sh"), str(rootfs), str(public_key),
                         *customize_args], log, "customizing the box", "see the log", cancel)
            note("scanning the box's root filesystem for the parity scan")
            scan_rootfs(rootfs, base_scan_path(box.kind, box.recipe_hash()), log)
            if box.boot == "kernel":
                _copy_boot_files(rootfs, out)
                note(f"making the {DISK_SIZE_GB} GB qcow2 disk")
                _make_disk(rootfs, work, log, cancel)
                (out / "vagrant_key.pub").unlink()
            else:
                note(f"making the {DISK_SIZE_GB} GB partitioned qcow2 disk with GRUB "
                     "(guestfish)")
                _make_bootloader_disk(box, rootfs, work, root_uuid, log, cancel)
            remove_tree(rootfs)
            shutil.copyfile(box.directory / "Vagrantfile", out / "Vagrantfile")
            (out / "metadata.json").write_text(json.dumps(
                {"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_SIZE_GB}))
            (out / "recipe-hash").write_text(box.recipe_hash() + "\n")
            note("packing the box")
            packed = work / "packed.box"
            _run_logged(["tar", "-C", str(out), "-I", "gzip -1", "-cf", str(packed), "."], log,
                        "packing the box", "see the log", cancel)
            os.replace(packed, box.box_file())
            note("vagrant box add")
            _remove_stale_box_volumes(box.name)
            _run_logged(["vagrant", "box", "add", "--force", "--name", box.name,
                         str(box.box_file())], log, "vagrant box add", "see the log", cancel,
                        env=libvirt.vagrant_env(), cwd=work)  # not the caller's project dir
            if not box.current():
                raise BuildError("vagrant box add did not install the box",
                                 f"see {log}", detail=logtail.tail(log, 12))
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
