"""Idempotent host setup: Debian packages, the daemons (dockerd, virtlogd, libvirtd), the pool.

Run as root on Debian it installs what is missing and starts what is not
running, then waits until each daemon answers. Anywhere else it reports exactly
what is missing and how to get it. With everything in place it only checks
(a handful of fast probes), so calling it before every run is cheap.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pytest_vmcontainer.errors import HostSetupError, WaitTimeout
from pytest_vmcontainer.host import engine, libvirthost, paths
from pytest_vmcontainer.host.libvirt import (
    DEFAULT_LIBVIRT_URI,
    LIBVIRT_URI_ENV,
    answers,
    ensure_storage_pool,
    libvirt_uri,
    on_this_host,
)
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.runtime.waiting import wait_for

# Debian packages, each with the reason the harness needs it.
PACKAGES: dict[str, str] = {
    "docker.io": "the Docker engine (dockerd)",
    "vagrant": "Vagrant",
    "vagrant-libvirt": "Vagrant's libvirt provider",
    "libvirt-daemon-system": "libvirtd and virtlogd",
    "libvirt-clients": "virsh",
    "qemu-system-x86": "QEMU, the VM engine (KVM or TCG)",
    "qemu-utils": "qemu-img, to make the box disk",
    "debootstrap": "offline Debian bases for both targets",
    "e2fsprogs": "mkfs.ext4, to fill the box disk from the root filesystem",
    "openssh-client": "ssh-keygen, for the per-build Vagrant key",
    "parted": "the partition table of the boot-loader box's disk",
    # Only a Recommends of vagrant-libvirt, yet its `vagrant package` fails without them.
    "libguestfs-tools": "virt-sysprep and virt-sparsify, run by 'vagrant package'",
}

DEFAULT_DOCKER_HOST = engine.DEFAULT_DOCKER_HOST
DAEMON_TIMEOUT = 60.0


@dataclass(frozen=True)
class Daemon:
    name: str
    is_up: Callable[[], bool]
    start_command: list[str]
    systemd_unit: str
    log_name: str
    daemonizes: bool  # True when the command forks into the background itself
    endpoint: Callable[[], str]  # where clients look for it
    default_endpoint: str  # the only endpoint setup may start a daemon for
    # (pid file, executable) pairs the daemon trusts while the pid names any live process:
    # dockerd refuses to start, or waits on a "running" containerd that is something else.
    pid_files: tuple[tuple[Path, str], ...] = ()

    def startable(self) -> bool:
        """Setup starts the local daemon, never one the user pointed elsewhere."""
        return self.endpoint() == self.default_endpoint


def docker_answers() -> bool:
    try:
        client = engine.client(timeout=5)  # imports docker: late, as the check needs it
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")


def unix_socket_answers(path: Path, timeout: float = 2.0) -> bool:
    """Whether a daemon accepts connections on `path`.

    The file alone proves nothing: a daemon that was killed leaves its socket
    behind, and libvirt then fails domain starts with "Connection refused".
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        try:
            client.connect(str(path))
        except OSError:
            return False
    return True


def virtlogd_answers() -> bool:
    return unix_socket_answers(VIRTLOGD_SOCKET)


def libvirtd_answers() -> bool:
    return answers()


def _docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


DAEMONS = [
    Daemon("dockerd", docker_answers, ["dockerd"], "docker", "dockerd.log", daemonizes=False,
           endpoint=_docker_host, default_endpoint=DEFAULT_DOCKER_HOST,
           pid_files=((Path("/var/run/docker.pid"), "dockerd"),
                      (Path("/var/run/docker/containerd/containerd.pid"), "containerd"))),
    Daemon("virtlogd", virtlogd_answers, ["virtlogd", "-d"], "virtlogd", "virtlogd.log",
           daemonizes=True, endpoint=libvirt_uri, default_endpoint=DEFAULT_LIBVIRT_URI),
    Daemon("libvirtd", libvirtd_answers, ["libvirtd", "-d"], "libvirtd", "libvirtd.log",
           daemonizes=True, endpoint=libvirt_uri, default_endpoint=DEFAULT_LIBVIRT_URI),
]


# What host setup provides, by the name a backend declares it with (``Target.host_needs``):
# the Debian packages and the daemons each one takes.
NEED_PACKAGES: dict[str, frozenset[str]] = {
    "docker": frozenset({"docker.io", "debootstrap"}),
    "libvirt": frozenset(PACKAGES) - {"docker.io"},  # everything but the Docker engine
}
NEED_DAEMONS: dict[str, frozenset[str]] = {
    "docker": frozenset({"dockerd"}),
    "libvirt": frozenset({"virtlogd", "libvirtd"}),
}
ALL_NEEDS: tuple[str, ...] = tuple(NEED_PACKAGES)


def _known(needs: Collection[str]) -> set[str]:
    """``needs`` as a set; a HostSetupError for a need host setup cannot provide."""
    unknown = sorted(set(needs) - set(ALL_NEEDS))
    if unknown:
        raise HostSetupError(f"host setup cannot provide {', '.join(map(repr, unknown))}",
                             f"declare only {' or '.join(ALL_NEEDS)} in the backend's "
                             "host_needs, and set up anything else before the run")
    return set(needs)


def is_debian() -> bool:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return False
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    ids = {fields.get("ID", "").strip('"')} | set(fields.get("ID_LIKE", "").strip('"').split())
    return "debian" in ids


DPKG_STATUS = Path("/var/lib/dpkg/status")  # changes whenever a package is (un)installed


def missing_packages(packages: list[str]) -> list[str]:
    """Packages not installed. Remembers the last answer until dpkg's status file changes,
    so the check before every run costs no dpkg-query."""
    if not shutil.which("dpkg-query"):
        return list(packages)
    try:
        stamp = str(DPKG_STATUS.stat().st_mtime_ns)
    except OSError:
        stamp = ""
    remembered = paths.home() / "installed-packages.json"
    try:
        known = json.loads(remembered.read_text())
        if stamp and known.get("stamp") == stamp and set(packages) <= set(known["installed"]):
            return []
    except (OSError, ValueError, KeyError):
        pass
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *packages],
        capture_output=True, text=True, check=False,
    )
    installed = {line.split()[0] for line in result.stdout.splitlines()
                 if len(line.split()) > 1 and line.split()[1] == "ii"}
    missing = [package for package in packages if package not in installed]
    if stamp and not missing:
        paths.ensure_dir(paths.home())
        remembered.write_text(json.dumps({"stamp": stamp, "installed": sorted(installed)}))
    return missing


def _systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()


def remove_stale_pid_file(pid_file: Path, executable: str) -> bool:
    """Remove `pid_file` when the process it names is gone or is not `executable`.

    A daemon killed without its own cleanup leaves the file behind; once its pid
    is reused by any other process, dockerd refuses to start. Nothing is killed.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        running = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        running = ""
    if running == Path(executable).name[:15]:  # comm holds at most 15 characters
        return False
    pid_file.unlink(missing_ok=True)
    return True


def _start_daemon(daemon: Daemon) -> None:
    if _systemd_running():
        subprocess.run(["systemctl", "start", daemon.systemd_unit], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return
    for pid_file, executable in daemon.pid_files:
        remove_stale_pid_file(pid_file, executable)
    log_dir = paths.ensure_dir(paths.home() / "logs")
    with open(log_dir / daemon.log_name, "ab") as log:
        process = subprocess.Popen(daemon.start_command, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=log, start_new_session=True)
    if daemon.daemonizes:
        process.wait(timeout=30)


def _endpoint_variable(daemon: Daemon) -> str:
    return "DOCKER_HOST" if daemon.name == "dockerd" else LIBVIRT_URI_ENV


def manual_instructions(missing: list[str], stopped: list[Daemon]) -> str:
    parts = []
    if missing:
        parts.append(f"missing Debian packages {' '.join(missing)}: run "
                     f"'sudo apt-get install -y {' '.join(missing)}'")
    for daemon in stopped:
        if not daemon.startable():
            parts.append(f"{daemon.name} does not answer at {daemon.endpoint()}: start it there "
                         f"or unset {_endpoint_variable(daemon)}")
            continue
        how = (f"sudo systemctl start {daemon.systemd_unit}" if _systemd_running()
               else f"sudo {' '.join(daemon.start_command)}")
        parts.append(f"{daemon.name} is not running: start it with '{how}'")
    return "; ".join(parts)


def check(needs: Collection[str] = ALL_NEEDS) -> tuple[list[str], list[Daemon]]:
    """What ``needs`` lack: (packages, daemons not answering). Does not change anything."""
    known = _known(needs)
    wanted = [name for name in PACKAGES if any(name in NEED_PACKAGES[need] for need in known)]
    missing = missing_packages(wanted) if wanted else []
    daemons = [d for d in DAEMONS if any(d.name in NEED_DAEMONS[need] for need in known)
               and (d.name == "dockerd" or on_this_host())]  # libvirt elsewhere: probed there
    stopped = [d for d in daemons if not d.is_up()]
    return missing, stopped


def ensure_host(progress: Progress, needs: Collection[str] = ALL_NEEDS,
                make_pool: bool = True) -> None:
    """Install and start what ``needs`` (names of ``ALL_NEEDS``) lack, or raise
    HostSetupError saying what to do. With ``make_pool`` and libvirt among the needs, also
    the current ``VMC_HOME``'s storage pool: a VM run's, not the host's (``setup`` leaves
    it, so that a home no VM ever uses gets none)."""
    if "libvirt" in needs:
        libvirthost.require_reachable()  # libvirt on another machine: what fails, in one line
    missing, stopped = check(needs)
    elsewhere = [d for d in stopped if not d.startable()]
    if any(d.name == "dockerd" for d in elsewhere):
        engine.require_reachable()  # an engine over SSH: what failed there, in one line
    if elsewhere:
        names = " and ".join(f"{d.name} at {d.endpoint()}" for d in elsewhere)
        raise HostSetupError(f"no answer from {names}", "; ".join(
            f"start {d.name} there or unset {_endpoint_variable(d)}" for d in elsewhere))
    if (missing or stopped) and (os.geteuid() != 0 or not is_debian()):
        why = "not root" if os.geteuid() != 0 else "not a Debian system"
        raise HostSetupError(f"host setup incomplete ({why})", manual_instructions(missing,
                                                                                    stopped))
    if missing or stopped:
        with _one_setup_at_a_time():
            # Another run may have done it while this one waited.
            missing, stopped = check(needs)
            _install_and_start(progress, needs, missing, stopped)
    if make_pool and "libvirt" in needs:
        ensure_storage_pool(paths.pool_dir())


@contextmanager
def _one_setup_at_a_time() -> Iterator[None]:
    """Runs that start together on a new machine (CI jobs, pytest-xdist workers, a test
    run's background preparation) would run apt-get side by side, which dpkg's lock refuses,
    and start a second dockerd. The packages and daemons are the machine's, whatever
    ``VMC_HOME`` each run uses, so the lock is the machine's too."""
    with paths.machine_lock("setup"):
        yield


def _install_and_start(progress: Progress, needs: Collection[str], missing: list[str],
                       stopped: list[Daemon]) -> None:
    if missing:
        _install_packages(progress, missing)
        missing, stopped = check(needs)
        if missing:
            raise HostSetupError(f"apt-get did not install {' '.join(missing)}",
                                 "check the Debian archive in /etc/apt/sources.list and retry")
    for daemon in stopped:
        with progress.step(f"starting {daemon.name}"):
            _start_daemon(daemon)
            try:
                wait_for(daemon.is_up, timeout=DAEMON_TIMEOUT, what=daemon.name, interval=0.2)
            except WaitTimeout:
                log = paths.home() / "logs" / daemon.log_name
                raise HostSetupError(
                    f"{daemon.name} did not answer within {DAEMON_TIMEOUT:.0f}s",
                    f"see {log} and start it by hand ({' '.join(daemon.start_command)})",
                ) from None


def _install_packages(progress: Progress, packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log_path = paths.ensure_dir(paths.home() / "logs") / "apt.log"
    with progress.step(f"installing Debian packages: {' '.join(packages)}") as note, \
            open(log_path, "ab") as log:
        for command in (["apt-get", "update", "-q"],
                        ["apt-get", "install", "-y", "-q", *packages]):
            note(" ".join(command[:2]))
            result = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, check=False)
            if result.returncode != 0:
                raise HostSetupError(
                    f"'{' '.join(command[:2])}' failed (exit {result.returncode})",
                    f"check that the Debian archive is reachable; the log is {log_path}",
                )
