"""libvirt on another machine, over SSH: ``VMC_LIBVIRT_URI=qemu+ssh://user@host[:port]/system``.

The VM then runs on that host; the project, Vagrant and the box stay on this one. virsh and
vagrant-libvirt reach that libvirtd through libvirt's own ssh transport. What QEMU there
reads by path is put there over SSH first, once per box, written under a temporary name and
renamed into place so that no run sees it half written: the box's disk as its pool volume,
and the kernel and initrd of a box that boots them directly, under the same path as here
(the box's Vagrantfile names them by this host's path). A VM provisioned there is cached
there: its disk is flattened there (``run_long``), and only the entry's record comes here
(``targets.entrywrite``). QEMU forwards the guest's SSH and the app's ports to that host's
127.0.0.1; one ``ssh -L`` (``runtime.sshforward``) brings each to the same port on this
host's 127.0.0.1. Nothing listens on another address.

The system's OpenSSH client runs with the URI's user, port and ``keyfile``; known hosts,
the agent and the rest come from ~/.ssh/config, as for libvirt's own transport. Only
``qemu+ssh`` is taken: over TCP or TLS the guest's ports would have no SSH to come back by.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import shlex
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from pytest_vmcontainer.errors import HostSetupError
from pytest_vmcontainer.host import accel as accellib
from pytest_vmcontainer.host import engine, libvirt, sshlogin
from pytest_vmcontainer.runtime import procs

SSH_TIMEOUT = 30.0  # seconds for one short command there
CONNECT_TIMEOUT = 10  # ssh's own, within it
UPLOAD_TIMEOUT = 1800.0  # a box's disk, once per box
REMOTE_VIRSH = "virsh -c qemu:///system"  # libvirtd as seen on that host


@dataclass(frozen=True)
class LibvirtHost:
    """The machine a ``qemu+ssh`` URI names, and how ssh reaches it."""

    uri: str
    hostname: str
    user: str | None = None
    port: int | None = None
    keyfile: str | None = None
    known_hosts: str | None = None

    @classmethod
    def parse(cls, uri: str) -> LibvirtHost:
        parts = urllib.parse.urlsplit(uri)
        setting = f"{libvirt.LIBVIRT_URI_ENV}={engine.shown(uri)}"
        if parts.scheme != "qemu+ssh":
            raise HostSetupError(
                f"{setting} reaches libvirt on another machine over "
                f"{parts.scheme.partition('+')[2] or parts.scheme}: the harness reaches a "
                "remote VM's ports only over SSH", "use qemu+ssh://USER@HOST/system")
        try:
            port = parts.port
        except ValueError:
            raise HostSetupError(f"{setting} has no valid port",
                                 "write it as qemu+ssh://USER@HOST:PORT/system") from None
        if not parts.hostname or parts.path != "/system":
            raise HostSetupError(f"{setting} names no host, or not its system libvirtd",
                                 "write it as qemu+ssh://USER@HOST[:PORT]/system")
        query = urllib.parse.parse_qs(parts.query)
        return cls(uri, parts.hostname, parts.username, port,
                   query["keyfile"][0] if "keyfile" in query else None,
                   query["known_hosts"][0] if "known_hosts" in query else None)

    @property
    def shown(self) -> str:
        return engine.shown(self.uri)

    def ssh_destination(self) -> list[str]:
        """What follows the options on an ssh command line to reach the host."""
        args = ["-l", self.user] if self.user else []
        if self.port is not None:
            args += ["-p", str(self.port)]
        if self.keyfile:
            args += ["-i", self.keyfile]
        if self.known_hosts:
            args += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        return [*args, "--", self.hostname]

    def ssh_argv(self, command: str) -> list[str]:
        """The ssh command line that runs ``command`` (a shell line) there; never the agent,
        never a terminal."""
        return ["ssh", "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
                "-o", "ForwardAgent=no", "-o", "ClearAllForwardings=yes",
                *self.ssh_destination(), command]

    def ssh(self, command: str, stdin: int | None = subprocess.DEVNULL,
            timeout: float = SSH_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """``command`` (a shell line) there."""
        return subprocess.run(self.ssh_argv(command), stdin=stdin, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def run_long(self, argv: list[str], cancel: threading.Event | None, log: Path) -> int:
        """The program ``argv`` there, for minutes, its output into ``log``; returns its exit
        status. It ends with this run: its stdin is a pipe held by this process, and a
        watcher there kills it when that pipe closes (this run stopped, cancelled, or killed
        with SIGKILL), where a command over ssh without a terminal would go on alone."""
        with open(log, "ab") as out:
            out.write(f"\n$ ssh {self.hostname} {shlex.join(argv)}\n".encode())
            out.flush()
            return procs.run([*procs.DIE_WITH_THE_RUN, *self.ssh_argv(ends_with_stdin(argv))],
                             cancel, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)

    def probe(self) -> str:
        """That host's libvirt and QEMU versions (virsh's ``version``), or a one-line
        ``HostSetupError`` naming what failed: ssh, virsh there, libvirtd there, or libvirt's
        own transport from here."""
        login = sshlogin.Remote("libvirt", self.shown, self.hostname, libvirt.LIBVIRT_URI_ENV,
                                f"ssh {shlex.join(self.ssh_destination())} true")
        try:
            there = self.ssh(f"{REMOTE_VIRSH} version")
        except FileNotFoundError:
            raise HostSetupError(f"{libvirt.LIBVIRT_URI_ENV} names libvirt over SSH, and "
                                 "there is no ssh here", "apt-get install openssh-client") \
                from None
        except subprocess.TimeoutExpired:
            raise HostSetupError(f"libvirt at {self.shown} did not answer over SSH within "
                                 f"{SSH_TIMEOUT:.0f}s", "check that the host is up and its sshd "
                                 f"answers ('{login.login}')") from None
        failed = sshlogin.ssh_failure(login, there.returncode, there.stderr)
        if failed is not None:
            raise HostSetupError(*failed)
        last = sshlogin.last_line(there.stderr, there.returncode)
        if there.returncode == 127 or "not found" in there.stderr:
            raise HostSetupError(f"the host of libvirt at {self.shown} has no virsh ({last})",
                                 "install libvirt there (apt-get install libvirt-daemon-system "
                                 "qemu-system-x86 qemu-utils), or point "
                                 f"{libvirt.LIBVIRT_URI_ENV} at a host that has it")
        if there.returncode != 0:
            raise HostSetupError(f"libvirtd at {self.shown} does not answer ({last})",
                                 "start libvirtd there (e.g. 'systemctl start libvirtd'), and "
                                 "let the SSH user use qemu:///system (root, or the libvirt "
                                 "group)")
        here = libvirt.run_virsh("uri")
        if here.returncode != 0:
            raise HostSetupError(
                f"libvirt's own SSH transport to {self.shown} failed "
                f"({sshlogin.last_line(here.stderr, here.returncode)})",
                "ssh works, so check what the URI adds (keyfile=, known_hosts=, no_tty=1) and "
                f"that virt-ssh-helper or nc is installed there: virsh -c '{self.shown}' uri")
        return " ".join(there.stdout.split())

    def accel(self) -> accellib.Accel:
        """KVM when that host's libvirt offers it for this guest architecture, else TCG
        (``VMC_ACCEL`` overrides, as here)."""
        forced = os.environ.get(accellib.ACCEL_ENV, "auto").lower()
        if forced in ("kvm", "tcg"):
            return accellib.Accel(forced, f"forced by {accellib.ACCEL_ENV}={forced}")
        offered = libvirt.run_virsh("domcapabilities", "--virttype", "kvm")
        if offered.returncode == 0:
            return accellib.Accel("kvm", f"libvirt on {self.hostname} offers KVM")
        return accellib.Accel("tcg", f"libvirt on {self.hostname} offers no KVM "
                                     f"({sshlogin.last_line(offered.stderr, 1)})")

    def put_file(self, local: Path, remote: str) -> bool:
        """``local`` at ``remote`` there, unless a file of its size and mtime is there
        already; written under a name of its own, then renamed. True when it was sent."""
        info = local.stat()
        stamp = f"{info.st_size} {int(info.st_mtime)}"
        quoted = shlex.quote(remote)
        if self.ssh(f"stat -c '%s %Y' {quoted}").stdout.strip() == stamp:
            return False
        staged = shlex.quote(f"{os.path.dirname(remote)}/.{os.path.basename(remote)}."
                             f"{secrets.token_hex(4)}")
        script = (f"mkdir -p {shlex.quote(os.path.dirname(remote))} && "
                  f"cat > {staged} && touch -d @{int(info.st_mtime)} {staged} && "
                  f"chmod 644 {staged} && mv -f {staged} {quoted} || "
                  f"{{ rm -f {staged}; exit 1; }}")
        with open(local, "rb") as source:
            sent = self.ssh(script, stdin=source.fileno(), timeout=UPLOAD_TIMEOUT)
        if sent.returncode != 0:
            raise HostSetupError(
                f"could not copy {local.name} to {remote} on {self.hostname} "
                f"({sshlogin.last_line(sent.stderr, sent.returncode)})",
                f"check the free space and permissions there ({self.shown})")
        return True

    def remove_box_copies(self, box_name: str, saved: str = "") -> str | None:
        """Delete this home's copies there of ``box_name`` (a VM cache entry written there):
        its volumes in this home's pool there and the boot files beside them, and the saved
        VMs of the entry ``saved`` there, whatever the current URI is, so that an entry
        removed by a run on this host's libvirt leaves no disk there. None, or why they stay
        (one line); the next start there, or ``clean --caches`` with the URI, removes them
        then."""
        pool = libvirt.pool_name(self.uri)
        directory = libvirt.REMOTE_POOL_ROOT / pool
        prefix = shlex.quote(libvirt.box_volume_prefix(box_name))
        states = f" {shlex.quote(str(libvirt.saved_root_there(self.uri) / saved))}" \
            if saved else ""
        try:
            removed = self.ssh(
                f"rm -f -- {shlex.quote(str(directory))}/{prefix}* && "
                f"rm -rf -- {shlex.quote(f'{directory}-boot')}/{prefix}*{states} && "
                f"{{ {REMOTE_VIRSH} pool-refresh {shlex.quote(pool)} >/dev/null 2>&1; true; }}")
        except subprocess.TimeoutExpired:
            return f"its disk stays on {self.hostname} (no answer in {SSH_TIMEOUT:.0f} s)"
        if removed.returncode == 0:
            return None
        return (f"its disk stays on {self.hostname} "
                f"({sshlogin.last_line(removed.stderr, removed.returncode)})")


def ends_with_stdin(argv: list[str]) -> str:
    """A shell line that runs the program ``argv`` in the background, its stdin closed, and
    kills it once the shell's own stdin reaches its end; its status is the program's. (A
    background list's stdin is /dev/null unless redirected: the watcher reads a copy, fd 3.)"""
    return (f"exec 3<&0; {shlex.join(argv)} </dev/null 3<&- & job=$!; "
            "{ cat <&3 >/dev/null; kill $job; } >/dev/null 2>&1 & "
            "exec 3<&-; wait $job")


_probed: dict[str, str] = {}  # URI -> the versions its probe found, in this process
_probed_lock = threading.Lock()


def current() -> LibvirtHost | None:
    """The libvirt host ``VMC_LIBVIRT_URI`` names, or None for this host's libvirt."""
    return None if libvirt.on_this_host() else LibvirtHost.parse(libvirt.libvirt_uri())


def require_reachable() -> str:
    """Probe the current libvirt host once per process: its versions, or one line."""
    host = current()
    if host is None:
        return ""
    with _probed_lock:
        if host.uri not in _probed:
            _probed[host.uri] = host.probe()
        return _probed[host.uri]


def accel(*kernels: Path) -> accellib.Accel:
    """The accelerator where the VM runs: what libvirt on another machine offers, else this
    host's probe, on the first of ``kernels`` that exists (``accel.probe_kernel``)."""
    remote = current()
    return remote.accel() if remote else accellib.detect(accellib.probe_kernel(*kernels))


def versions(virsh_version: str) -> dict[str, str]:
    """libvirt's and QEMU's versions (``libvirt``, ``qemu``) in what ``virsh version`` says
    there: the daemon's when it says it, else its library's (the same package), and the
    hypervisor's."""
    found = {}
    for name, pattern in (("libvirt", r"Running against daemon: (\S+)"),
                          ("libvirt", r"Using library: libvirt (\S+)"),
                          ("qemu", r"Running hypervisor: QEMU (\S+)")):
        if name in found:
            continue
        match = re.search(pattern, virsh_version)
        if match:
            found[name] = match.group(1)
    return found


@functools.cache  # the terminal's line and the report's facts both show them
def versions_here() -> dict[str, str]:
    """This host's libvirt and QEMU, by their programs' own ``--version``; those not
    installed are left out (a runner whose VMs all run elsewhere may have neither)."""
    found = {}
    for name, argv, pattern in (("libvirt", ["libvirtd", "--version"], r"\(libvirt\) (\S+)"),
                                ("qemu", ["qemu-system-x86_64", "--version"],
                                 r"QEMU emulator version (\S+)")):
        match = re.search(pattern, procs.version_line(argv) or "")
        if match:
            found[name] = match.group(1)
    return found


def shown_versions(there: dict[str, str], here: dict[str, str]) -> str:
    """That host's versions, and this host's where they differ: a VM cache entry made here
    boots there as a disk (portable), but what a QEMU state or a timing means depends on
    the version that ran it."""
    names = {"libvirt": "libvirt", "qemu": "QEMU"}
    text = ", ".join(f"{names[name]} {there[name]}" for name in names if name in there)
    differs = [f"{names[name]} {here[name]}" for name in names
               if name in there and name in here and here[name] != there[name]]
    if differs:
        text += f"; this host has {', '.join(differs)}"
    return text or "versions unknown"


def _versions_shown() -> str:
    return shown_versions(versions(require_reachable()), versions_here())


def placed(reason: str) -> str:
    """``reason`` (the accelerator's), prefixed with where the VM runs when not here, and
    with what versions there."""
    remote = current()
    return reason if remote is None else \
        f"on libvirt at {remote.shown} ({_versions_shown()}): {reason}"


def engine_facts() -> dict[str, str]:
    """Where the VM runs, and with what, for the report (``engine``, ``engine_versions``),
    when not on this host."""
    remote = current()
    return {} if remote is None else {"engine": remote.shown,
                                      "engine_versions": _versions_shown()}
