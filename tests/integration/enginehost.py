"""A second engine host for the remote-engine tests: sshd and dockerd in a container, and
libvirtd with QEMU (TCG) too in the libvirt host's image (``build(libvirt=True)``).

It has its own filesystem, network namespace and engine, and is reached only over SSH on
127.0.0.1 (its port 22 published there). Built from the locally built Debian base, with
Debian's docker.io and openssh-server. Not ``--privileged``: this host's capability bounding
set lacks CAP_SYS_RESOURCE, which ``--privileged`` asks for ("unable to apply caps"); every
other capability, no seccomp or AppArmor profile, and a private cgroup namespace in which the
entrypoint mounts the cgroup v1 hierarchies again, writable, for the inner dockerd.

Its keys and known hosts live in a directory of the test's own: an ``ssh`` earlier on PATH
runs the system's ssh with that directory's config, so the runs under test (the SDK, the
docker CLI, the forwards) use these keys and nothing of the user's ~/.ssh is read or written.
Everything carries ``LABEL``, never the project's owner label: the project's sweeps and
``clean`` leave the fixture alone, and the fixture's teardown removes all of it but the image,
which stays like a base (``build``).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.host.bases import DOCKER_BASE_IMAGE
from pytest_vmcontainer.host.ports import free_port
from pytest_vmcontainer.runtime.waiting import NotReady, ssh_banner, wait_for
from pytest_vmcontainer.targets.base import OWNER, OWNER_LABEL
from tests.integration.conftest import error_line, fixture_labels

LABEL = "pytest-vmcontainer-tests.fixture"
REPOSITORY = "pytest-vmcontainer-tests/engine-host"

DOCKERFILE = f"""FROM {DOCKER_BASE_IMAGE}
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \\
      --no-install-recommends docker.io openssh-server iptables ca-certificates \\
    && rm -rf /var/lib/apt/lists/*
COPY entrypoint.sh /entrypoint.sh
CMD ["sh", "/entrypoint.sh"]
"""

# The libvirt host: the engine host's image and libvirt with QEMU (no /dev/kvm: TCG). nc for
# libvirt's ssh transport when virt-ssh-helper is not there.
LIBVIRT_PACKAGES = ("libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86 "
                    "qemu-utils netcat-openbsd")

ENTRYPOINT = r"""#!/bin/sh
set -eu
mkdir -p /root/.ssh /run/sshd
printf '%s\n' "$AUTHORIZED_KEY" > /root/.ssh/authorized_keys
chmod 700 /root/.ssh && chmod 600 /root/.ssh/authorized_keys
/usr/sbin/sshd -E /var/log/sshd.log
if [ "${NO_DOCKER:-}" = 1 ]; then  # a host with sshd and no Docker at all
  rm -f /usr/bin/docker /usr/sbin/dockerd
  exec sleep infinity
fi
mount -o remount,rw /sys
for dir in /sys/fs/cgroup/*/; do
  options=$(awk -v d="${dir%/}" '$2 == d {print $4}' /proc/self/mounts | tr , '\n' \
            | grep -vxE 'ro|rw|nosuid|nodev|noexec|relatime' | paste -sd, -)
  umount "$dir" && mount -t cgroup -o "$options" cgroup "$dir"
done
if [ "${LIBVIRT:-}" = 1 ]; then  # the libvirt host: after the cgroups are writable
  virtlogd -d && libvirtd -d
fi
if [ -n "${DOCKERD_TLS:-}" ]; then  # its API over TLS too, with the certificates in /certs
  set -- --host=tcp://0.0.0.0:2376 --tlsverify --tlscacert=/certs/ca.pem \
         --tlscert=/certs/server-cert.pem --tlskey=/certs/server-key.pem
else
  set --
fi
exec dockerd --host=unix:///var/run/docker.sock "$@" >/var/log/dockerd.log 2>&1
"""

SSH_CONFIG = """Host *
  IdentityFile {key}
  IdentitiesOnly yes
  UserKnownHostsFile {known_hosts}
  StrictHostKeyChecking yes
  BatchMode yes
"""


def image_tag() -> str:
    return f"{REPOSITORY}:{hashlib.sha256((DOCKERFILE + ENTRYPOINT).encode()).hexdigest()[:12]}"


def build(client: Any, directory: Path, libvirt: bool = False) -> str:
    """The engine host's image, kept between runs like a base: apt in the build takes about
    40 s, and a later run's build is a cache hit (its recipe and the Debian base unchanged).
    With ``libvirt``, the libvirt host's, built on it. Older builds (another recipe, an
    earlier base) are removed here."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(DOCKERFILE)
    (directory / "entrypoint.sh").write_text(ENTRYPOINT)
    tag = _build_kept(client, directory, image_tag(), "engine-host")
    if not libvirt:
        return tag
    recipe = (f"FROM {tag}\nRUN apt-get update -q && DEBIAN_FRONTEND=noninteractive "
              f"apt-get install -y -q --no-install-recommends {LIBVIRT_PACKAGES} \\\n"
              "    && rm -rf /var/lib/apt/lists/*\n")
    (directory / "Dockerfile").write_text(recipe)
    digest = hashlib.sha256((tag + recipe).encode()).hexdigest()[:12]
    return _build_kept(client, directory, f"{REPOSITORY}:libvirt-{digest}", "libvirt-host")


def _build_kept(client: Any, directory: Path, tag: str, role: str) -> str:
    import docker.errors

    image, _log = client.images.build(path=str(directory), tag=tag, rm=True, forcerm=True,
                                      labels={LABEL: role})
    for older in client.images.list(filters={"label": f"{LABEL}={role}"}):
        if older.id != image.id:
            try:
                client.images.remove(older.id, force=True)
            except docker.errors.APIError:  # gone already, or a live run's container uses it
                pass
    return tag


def keypair(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmc-test",
                    "-f", str(path)], check=True)
    return path


@dataclass
class EngineHost:
    """One running engine host, and how the runs under test reach it."""

    name: str
    port: int
    directory: Path
    # How to remove what it made (its container, then its volume), in that order.
    made: list[Callable[[], None]] = field(default_factory=list)
    tls_port: int = 0  # its engine's API over TLS, published on 127.0.0.1 (start(tls=...))

    @property
    def libvirt_uri(self) -> str:
        """Its libvirtd over SSH (the keys and known hosts: ``ssh_env``'s ssh on PATH)."""
        return f"qemu+ssh://root@127.0.0.1:{self.port}/system?no_tty=1"

    @property
    def docker_host(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def tls_env(self, key: Path, client_certs: Path) -> dict[str, str]:
        """The engine's API over TLS, verified with ``client_certs``; its ports over SSH."""
        return {**self.ssh_env(key), "DOCKER_HOST": f"tcp://127.0.0.1:{self.tls_port}",
                "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(client_certs),
                "VMC_DOCKER_SSH": f"root@127.0.0.1:{self.port}"}

    def ssh_env(self, key: Path) -> dict[str, str]:
        """DOCKER_HOST and a PATH whose ssh offers ``key`` and trusts only this host."""
        bin_dir = self.directory / f"bin-{key.name}"
        bin_dir.mkdir(exist_ok=True)
        config = bin_dir / "ssh_config"
        config.write_text(SSH_CONFIG.format(key=key, known_hosts=self.directory / "known_hosts"))
        wrapper = bin_dir / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {config} "$@"\n')
        wrapper.chmod(0o755)
        return {"DOCKER_HOST": self.docker_host,
                "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    def inside(self, *command: str, stdin: Any = None) -> str:
        """A command in the engine host, through this host's engine (not over SSH)."""
        result = subprocess.run(["docker", "exec", "-i", self.name, *command], stdin=stdin,
                                capture_output=True, text=stdin is None, check=True,
                                env=local_engine_env())
        return str(result.stdout)


def local_engine_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "DOCKER_HOST"}


def tls_certificates(directory: Path) -> tuple[Path, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl, in
    the file names dockerd and docker's clients expect: (server dir, client dir)."""
    server, client = directory / "server", directory / "client"
    server.mkdir(parents=True)
    client.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=vmc-test-ca", "-keyout", "ca-key.pem", "-out", "ca.pem")
    for name, subject, extension in (
            ("server", "/CN=127.0.0.1",
             "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
            ("client", "/CN=vmc-test-client", "extendedKeyUsage=clientAuth")):
        (directory / f"{name}.ext").write_text(extension + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                "-keyout", f"{name}-key.pem", "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                "-out", f"{name}-cert.pem")
    for file in ("ca.pem", "server-cert.pem", "server-key.pem"):
        (server / file).write_bytes((directory / file).read_bytes())
    for file, name in (("ca.pem", "ca.pem"), ("client-cert.pem", "cert.pem"),
                       ("client-key.pem", "key.pem")):
        (client / name).write_bytes((directory / file).read_bytes())
    return server, client


def start(client: Any, image: str, host: EngineHost, key: Path, docker: bool = True,
          tls: Path | None = None, libvirt: bool = False) -> None:
    """Run the engine host (``docker=False``: sshd only; ``tls``: its engine's API also over
    TLS, with the server certificates there; ``libvirt``: libvirtd too, in the libvirt
    host's image) and wait until it serves. Each removal is in ``host.made`` before the step
    that makes it, for the caller's teardown."""
    name = host.name
    host.made += [lambda: _gone(lambda: client.containers.get(name).remove(force=True, v=True)),
                  lambda: _gone(lambda: client.volumes.get(f"{name}-docker").remove(force=True))]
    volume = client.volumes.create(name=f"{name}-docker", labels={LABEL: name, **fixture_labels()})
    container = client.containers.run(
        image, detach=True, name=name, labels={LABEL: name, **fixture_labels()},
        cap_add=["ALL"], cap_drop=["SYS_RESOURCE"], cgroupns="private",
        security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        environment={"AUTHORIZED_KEY": (key.with_suffix(".pub")).read_text().strip(),
                     "NO_DOCKER": "0" if docker else "1", "DOCKERD_TLS": "1" if tls else "",
                     "LIBVIRT": "1" if libvirt else ""},
        # libvirtd's capability probes of QEMU exit as children of PID 1: an init reaps them
        # (else each new libvirt connection waited about 80 s on them)
        init=libvirt,
        volumes={volume.name: {"bind": "/var/lib/docker", "mode": "rw"},
                 **({str(tls): {"bind": "/certs", "mode": "ro"}} if tls else {})},
        ports={"22/tcp": ("127.0.0.1", None), **({"2376/tcp": ("127.0.0.1", None)} if tls
                                                  else {})})
    container.reload()
    published = container.attrs["NetworkSettings"]["Ports"]
    host.port = int(published["22/tcp"][0]["HostPort"])
    host.tls_port = int(published["2376/tcp"][0]["HostPort"]) if tls else 0
    wait_for(ssh_banner(host.port), timeout=60, what="sshd in the engine host")
    if docker:
        def engine_answers() -> bool:
            if container.exec_run(["docker", "version"]).exit_code != 0:
                raise NotReady("dockerd does not answer yet")
            return True

        wait_for(engine_answers, timeout=60, what="dockerd in the engine host")
    if libvirt:
        def libvirt_answers() -> bool:
            if container.exec_run(["virsh", "-c", "qemu:///system", "uri"]).exit_code != 0:
                raise NotReady("libvirtd does not answer yet")
            return True

        wait_for(libvirt_answers, timeout=60, what="libvirtd in the engine host")
    algorithm, key_text = host.inside("cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
    with open(host.directory / "known_hosts", "a") as known:
        known.write(f"[127.0.0.1]:{host.port} {algorithm} {key_text}\n")


def preload_base(host: EngineHost) -> None:
    """The Debian base, loaded into the engine host from this host's engine: the harness
    then finds it current there and builds only the app image."""
    with subprocess.Popen(["docker", "save", DOCKER_BASE_IMAGE], stdout=subprocess.PIPE,
                          env=local_engine_env()) as save:
        host.inside("docker", "load", stdin=save.stdout)
    assert save.returncode == 0


def owned_there(host: EngineHost) -> list[str]:
    """The project's containers and volumes on the engine host's engine."""
    label = f"label={OWNER_LABEL}={OWNER}"
    return (host.inside("docker", "ps", "-aq", "--filter", label).split()
            + host.inside("docker", "volume", "ls", "-q", "--filter", label).split())


# Run beside the shipped parity suite, while its targets are up: every TCP socket listening on
# either machine for the run (this host: the run's own processes, its ssh forwards among them;
# the engine host: all but the fixture's sshd) is on a loopback address.
LISTENING_CHECK = """
import os
import subprocess
from pathlib import Path

LOOPBACK = ("0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F")


def listening(tables, inodes=None):
    found = []
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and (inodes is None or fields[9] in inodes):
                address, port = fields[1].split(":")
                found.append((address, int(port, 16)))
    return found


def descendants(root):
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
        except OSError:
            continue
        children.setdefault(int(rest.rsplit(") ", 1)[1].split()[1]), []).append(int(pid))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def socket_inodes(pids):
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    return inodes


def test_nothing_listens_beyond_loopback(target):
    here = listening([Path(f"/proc/net/{name}").read_text() for name in ("tcp", "tcp6")],
                     socket_inodes(descendants(os.getpid())))
    assert any(port == target.address(80)[1] for _, port in here), here  # the forward
    assert all(address in LOOPBACK for address, _ in here), here
    env = {key: value for key, value in os.environ.items() if key != "DOCKER_HOST"}
    there = listening([subprocess.run(
        ["docker", "exec", os.environ["VMC_TEST_ENGINE_HOST"], "cat", f"/proc/net/{name}"],
        capture_output=True, text=True, check=True, env=env).stdout for name in ("tcp", "tcp6")])
    published = [(address, port) for address, port in there if port != 22]
    assert published, there  # the app's port, published there by the engine or QEMU
    assert all(address in LOOPBACK for address, _ in published), there
"""


@contextmanager
def running(client: Any, image: str, key: Path, directory: Path,
            **options: Any) -> Iterator[EngineHost]:
    """An engine host started with ``start``'s ``options``, removed afterwards."""
    host = EngineHost(f"vmc-test-engine-host-{secrets.token_hex(3)}", 0, directory)
    try:
        start(client, image, host, key, **options)
        yield host
    finally:
        for removal in host.made:
            removal()


@contextmanager
def bad_host(case: str, client: Any, image: str, keys: dict[str, Path], directory: Path,
             **options: Any) -> Iterator[tuple[EngineHost, Path]]:
    """The host and key of a bad-host case: "unreachable" (nothing listens at its port),
    "refused key" (a running host, and a key it does not accept), else a running host
    (``start``'s ``options``; the caller breaks it) and the accepted key."""
    if case == "unreachable":
        yield EngineHost("none", free_port(), directory), keys["accepted"]
        return
    with running(client, image, keys["accepted"], directory, **options) as host:
        yield host, keys["refused" if case == "refused key" else "accepted"]


def check_one_line_left_nothing(case: str, result: subprocess.CompletedProcess[str],
                                expected: str, where: str, host: EngineHost, own_home: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """A run against a bad host failed with one error line naming the cause (``expected``)
    and the host (``where``), no traceback, and left no session or forward."""
    assert result.returncode != 0
    line = error_line(result.stderr)
    assert expected in line and where in line, line
    with capsys.disabled():
        print(f"\n{case}: {line}")
    assert "Traceback" not in result.stderr
    assert list((own_home / "sessions").iterdir()) == []
    assert forwarders(host.port) == []


def forwarders(port: int) -> list[int]:
    """Processes on this host that still run ssh to the engine host's port."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"ssh") and str(port).encode() in argv:
            found.append(int(proc.name))
    return found


def _gone(removal: Callable[[], None]) -> None:
    import docker.errors

    try:
        removal()
    except docker.errors.NotFound:
        pass
