"""libvirt as the harness uses it: the URI, virsh, the storage pool, and vagrant's environment.

Every libvirt call goes to one URI (``VMC_LIBVIRT_URI``, default
``qemu:///system``) and every disk to one dir pool of our own, so nothing the
harness creates mixes with other pools. Each ``VMC_HOME`` has its own pool, named
after the home: vagrant-libvirt names a box's volume after the box alone, so two homes
sharing a pool would boot each other's box (each built with its own SSH key).
``vagrant_env`` is the environment every vagrant command gets: the libvirt provider on
that URI, no update checks, no colour.
"""

from __future__ import annotations

import datetime
import fcntl
import grp
import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path

from pytest_vmcontainer.errors import HostSetupError, WaitTimeout
from pytest_vmcontainer.host import paths
from pytest_vmcontainer.runtime.waiting import wait_for

DEFAULT_LIBVIRT_URI = "qemu:///system"
LIBVIRT_URI_ENV = "VMC_LIBVIRT_URI"
POOL_PREFIX = "pytest-vmcontainer-"
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
DEFAULT_QEMU_USER = "libvirt-qemu"  # Debian's build default, when qemu.conf names none
# Where the pools live on libvirt on another machine (``host.libvirthost``): one per home.
REMOTE_POOL_ROOT = Path("/var/lib/libvirt/images/pytest-vmcontainer")


def pool_name(uri: str | None = None) -> str:
    """The libvirt pool of this ``VMC_HOME`` (at ``uri``, else the current URI); on libvirt on
    another machine, of this home on this machine: CI runners that share that host, each with
    the default home, never share a pool there, so each removes only its own copies
    (``domain.remove_copies_of_gone_boxes``)."""
    owner = str(paths.home()) if on_this_host(uri) else f"{this_machine()}:{paths.home()}"
    return POOL_PREFIX + hashlib.sha256(owner.encode()).hexdigest()[:12]


def saved_root_there(uri: str) -> Path:
    """Where this home's saved running VMs sit on libvirt on another machine (at ``uri``):
    beside its pool there, a directory per cache entry (``targets.vmsaved``)."""
    return REMOTE_POOL_ROOT / f"{pool_name(uri)}-saved"


def this_machine() -> str:
    """This machine's id (systemd's /etc/machine-id; a container without one: its hostname)."""
    try:
        machine_id = Path("/etc/machine-id").read_text().strip()
    except OSError:
        machine_id = ""
    return machine_id or os.uname().nodename


def libvirt_uri() -> str:
    return os.environ.get(LIBVIRT_URI_ENV) or DEFAULT_LIBVIRT_URI


def on_this_host(uri: str | None = None) -> bool:
    """The URI (else the current one) names this host's libvirt (a socket path, no host:
    ``qemu:///system``)."""
    return (uri or libvirt_uri()).split("://", 1)[-1].startswith("/")


# The local daemons a VM's start needs, by the pid files setup (or the distribution) writes.
# libvirtd takes every call; virtlogd only the starts (libvirtd opens each new QEMU's log
# through it), so its restart is named only for a failure that names it.
PID_FILES = {"libvirtd": Path("/run/libvirtd.pid"), "virtlogd": Path("/run/virtlogd.pid")}
# What virsh and vagrant-libvirt say when a daemon goes away under a call.
CONNECTION_LOST = ("End of file while reading data", "Connection reset by peer",
                   "Cannot recv data", "client socket is closed", "Broken pipe",
                   "Failed to connect socket")
DAEMON_GONE_WAIT = 10.0  # for a daemon that dropped a call to remove its pid file


def daemons_started() -> dict[str, str | None]:
    """When each local libvirt daemon started (its pid file's time, ISO UTC; None when it is
    not running); empty when libvirt is on another machine (a URI with a host)."""
    if not on_this_host():
        return {}
    return {daemon: _started(pid_file) for daemon, pid_file in PID_FILES.items()}


def _started(pid_file: Path) -> str | None:
    try:
        started = pid_file.stat().st_mtime
    except OSError:
        return None
    return datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat()


def daemon_went_away(before: dict[str, str | None], said: str) -> tuple[str, str] | None:
    """(the daemon, how it is now: "started again at ... UTC", "not running now") when a
    libvirt daemon that ran at ``before`` stopped or restarted since and the failure that
    ``said`` so is its doing; else None. A call that lost its connection waits a few seconds
    for the pid file to go or change: the call fails before the daemon exits."""
    suspects = [daemon for daemon, started in before.items() if started is not None
                and (daemon == "libvirtd" or daemon in said)]
    changed = [daemon for daemon in suspects if _started(PID_FILES[daemon]) != before[daemon]]
    if not changed:
        if not suspects or not any(marker in said for marker in CONNECTION_LOST):
            return None
        daemon = suspects[-1]  # virtlogd when the failure names it, else libvirtd
        try:
            wait_for(lambda: _started(PID_FILES[daemon]) != before[daemon],
                     timeout=DAEMON_GONE_WAIT, what=f"{daemon} to stop", interval=0.2)
        except WaitTimeout:
            return None  # the connection broke for another reason
        changed = [daemon]
    daemon = changed[-1]
    started = _started(PID_FILES[daemon])
    return daemon, f"started again at {started[:19]} UTC" if started else "not running now"


def answers() -> bool:
    """libvirtd takes a call (``virsh uri``: milliseconds when it runs)."""
    return quiet_ok([*virsh(), "uri"])


def virsh() -> list[str]:
    return ["virsh", "-c", libvirt_uri()]


def run_virsh(*args: str) -> subprocess.CompletedProcess[str]:
    """virsh on the harness's libvirt; callers judge the result (cleanup is best effort)."""
    return subprocess.run([*virsh(), *args], capture_output=True, text=True, check=False)


def domain_names() -> list[str]:
    """Names of every libvirt domain, running or not."""
    return run_virsh("list", "--all", "--name").stdout.split()


def pool_volumes() -> list[str]:
    """Names of the volumes in the harness's storage pool."""
    rows = run_virsh("vol-list", pool_name()).stdout.splitlines()[2:]  # after the two header rows
    return [row.split()[0] for row in rows if row.split()]


def _path_of_pool(name: str) -> Path | None:
    xml = run_virsh("pool-dumpxml", name).stdout
    start, end = xml.find("<path>"), xml.find("</path>")
    return Path(xml[start + len("<path>"):end].strip()) if 0 <= start < end else None


_pool_paths: dict[tuple[str, str], Path] = {}


def pool_path() -> Path:
    """Where the harness's libvirt pool keeps its volumes: asked of libvirt once per process
    and pool (a VM's start asked it two or three times, 20 ms each; a pool's path does not
    change while it is defined, and is its home's again when it is defined anew)."""
    key = (libvirt_uri(), pool_name())
    if key not in _pool_paths:
        path = _path_of_pool(key[1])
        if path is None:
            raise HostSetupError(f"the libvirt pool {key[1]} has no path",
                                 "run 'python -m pytest_vmcontainer setup'")
        _pool_paths[key] = path
    return _pool_paths[key]


def forget_pool_path() -> None:
    """After this home's pool is removed (``pool_path`` keeps what libvirt said)."""
    _pool_paths.pop((libvirt_uri(), pool_name()), None)


def box_volume_prefix(box_name: str) -> str:
    """What every pool volume of ``box_name`` starts with, whatever its version or mtime."""
    return f"{box_name.replace('/', '-VAGRANTSLASH-')}_vagrant_box_image_"


def box_volume_name(box_name: str, version: str, image: Path) -> str:
    """The pool volume vagrant-libvirt uploads a box's image into, and looks for first (its
    HandleBoxImage.get_volume_name): a box of version 0, or none, adds the image's mtime."""
    if version in ("", "0"):
        version = f"0_{int(image.stat().st_mtime)}"
    return f"{box_volume_prefix(box_name)}{version}_box.img"


def box_in_pool(box_name: str, version: str, image: Path) -> None:
    """``image`` as its box's pool volume, whole before any vagrant-libvirt looks for it.

    vagrant-libvirt creates the volume, then uploads into it, under a lock of its own process
    only: a second run that started meanwhile found the volume and booted over the half
    written image (in the guest, "EXT4-fs (vda): error loading journal", then its initramfs
    shell). A hard link, or a copy renamed into place, is never seen half written."""
    volume = pool_path() / box_volume_name(box_name, version, image)
    if volume.exists():
        return
    staged = volume.with_name(f".{volume.name}.{os.getpid()}")
    try:
        try:
            os.link(image, staged)
        except OSError:  # another file system
            shutil.copyfile(image, staged)
        os.replace(staged, volume)
    finally:
        staged.unlink(missing_ok=True)
    run_virsh("pool-refresh", pool_name())


def remove_pools_of_gone_homes() -> list[str]:
    """Undefine the pools of homes whose directory is gone (a test's or a CI job's home
    deleted by a process that was killed before it removed its pool): such a pool holds
    nothing, and with autostart on it fails at every start of libvirtd. Only on this host's
    libvirt: another machine's pools have their paths there."""
    removed: list[str] = []
    if not on_this_host():
        return removed
    for name in run_virsh("pool-list", "--all", "--name").stdout.split():
        if not name.startswith(POOL_PREFIX) or name == pool_name():
            continue
        path = _path_of_pool(name)
        if path is not None and not path.exists():
            run_virsh("pool-destroy", name)
            if run_virsh("pool-undefine", name).returncode == 0:
                removed.append(f"libvirt pool {name} (its home {path.parent} is gone)")
    return removed


def delete_volume(name: str) -> None:
    run_virsh("vol-delete", "--pool", pool_name(), name)


def delete_box_volumes(box_name: str) -> list[str]:
    """Delete every pool volume of ``box_name``, found by its name's prefix: a box of version
    0 is named after its image's mtime (``box_volume_name``), which a write to the image
    changes, so a name computed again may no longer be the uploaded one's."""
    prefix = box_volume_prefix(box_name)
    deleted = [volume for volume in pool_volumes() if volume.startswith(prefix)]
    for volume in deleted:
        delete_volume(volume)
    return deleted


def quiet_ok(command: list[str], timeout: float = 10.0) -> bool:
    try:
        return subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=timeout, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_storage_pool(pool_dir: Path) -> None:
    """This home's dir pool, so box volumes and VM disks never mix with other pools. One run
    of the home at a time: two that start together on a new machine would both define it,
    and the second's ``pool-define-as`` fails. On libvirt on another machine, the pool's
    directory is there, under ``REMOTE_POOL_ROOT``, named like the pool."""
    if not on_this_host():
        pool_dir = REMOTE_POOL_ROOT / pool_name()
    require_reachable_by_qemu(pool_dir)
    with open(paths.ensure_dir(paths.home()) / ".pool.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _define_and_start_pool(pool_dir)
    remove_pools_of_gone_homes()


def _define_and_start_pool(pool_dir: Path) -> None:
    command, name = virsh(), pool_name()
    info = run_virsh("pool-info", name)
    if info.returncode != 0:
        subprocess.run([*command, "pool-define-as", name, "dir", "--target", str(pool_dir)],
                       check=True, capture_output=True)
        if not on_this_host():  # its directory there: this host cannot make it
            subprocess.run([*command, "pool-build", name], check=True, capture_output=True)
        subprocess.run([*command, "pool-autostart", name], check=True, capture_output=True)
        info = subprocess.run([*command, "pool-info", name], capture_output=True, text=True,
                              check=True)
    if "running" not in info.stdout:
        subprocess.run([*command, "pool-start", name], check=True, capture_output=True)


def require_reachable_by_qemu(pool_dir: Path) -> None:
    """The system daemon runs QEMU as its own user, which must pass through every directory
    down to the pool's disks. A home under a private directory (``/root``, pytest's
    ``tmp_path``) otherwise fails at the VM's first start with Ruby's "Permission denied"."""
    if libvirt_uri() != DEFAULT_LIBVIRT_URI:
        return
    user = qemu_user()
    closed = closed_to(user, pool_dir)
    if closed is not None:
        raise HostSetupError(
            f"libvirt's QEMU user ({user}) cannot reach the VM disks under {pool_dir}: "
            f"{closed} is mode {stat.S_IMODE(closed.stat().st_mode):o}",
            f"use a VMC_HOME that other users can pass through (e.g. under /var/lib or "
            f"/var/tmp), or let them through: chmod o+x {closed}")


def qemu_user() -> str:
    """The user libvirt's system daemon runs QEMU as (``user`` in qemu.conf)."""
    try:
        text = QEMU_CONF.read_text()
    except OSError:
        return DEFAULT_QEMU_USER
    found = re.findall(r'^\s*user\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return found[-1] if found else DEFAULT_QEMU_USER


def closed_to(user: str, directory: Path) -> Path | None:
    """The first directory on the way down to ``directory`` that ``user`` may not pass
    through (by its mode; a directory with an ACL, or a user unknown here, is not judged)."""
    try:
        entry = pwd.getpwuid(int(user.lstrip("+"))) if user.lstrip("+").isdigit() \
            else pwd.getpwnam(user)
    except KeyError:
        return None
    if entry.pw_uid == 0:
        return None
    groups = {entry.pw_gid} | {group.gr_gid for group in grp.getgrall()
                               if entry.pw_name in group.gr_mem}
    for path in [*reversed(directory.parents), directory]:
        try:
            info = path.stat()
            acl = "system.posix_acl_access" in os.listxattr(path)
        except OSError:  # not made yet: the harness makes its directories open to pass
            return None
        bit = (stat.S_IXUSR if info.st_uid == entry.pw_uid else
               stat.S_IXGRP if info.st_gid in groups else stat.S_IXOTH)
        if not info.st_mode & bit and not acl:
            return path
    return None


def remove_storage_pool() -> None:
    """Stop and undefine this home's pool (its files stay): for a home that is going away."""
    run_virsh("pool-destroy", pool_name())
    run_virsh("pool-undefine", pool_name())


def vagrant_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "VAGRANT_HOME": str(paths.vagrant_home()),
        "VAGRANT_DEFAULT_PROVIDER": "libvirt",
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1",
        "VAGRANT_FORCE_COLOR": "0",
        "LIBVIRT_DEFAULT_URI": libvirt_uri(),
    })
    env.update(extra or {})
    return env
