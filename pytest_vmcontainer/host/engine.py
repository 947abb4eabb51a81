"""Which Docker engine the container target runs on: this host's, or another host's over SSH.

``DOCKER_HOST=ssh://user@host[:port]`` puts the container on that host's engine. So does an
engine over TCP with TLS (``DOCKER_HOST=tcp://host:2376``, ``DOCKER_TLS_VERIFY=1``,
``DOCKER_CERT_PATH``, as docker itself reads them) once ``VMC_DOCKER_SSH=user@host[:port]``
names an SSH login on that host for the ports: the API goes over TLS, the forwards over SSH.
Plain TCP to another host is refused: whoever reaches that port is root there. Everything
goes through the system's OpenSSH client, as ``docker -H ssh://`` itself does: the docker
SDK shells out to ``ssh`` (``use_ssh_client``), testinfra's ``docker://`` backend runs the
docker CLI, and the published ports come back through ``ssh -L`` (``runtime.sshforward``).
So ``~/.ssh/config``, ``known_hosts``, the user's keys and agent decide, the same for all
three, and nothing here reads, copies or writes a key.

Before the SDK's first connection, one ``ssh ... docker version`` tells the failures apart
(unreachable host, refused key, unknown host key, no docker there, no engine running) and
names each in one line with its remedy. The SDK's own failure would be a stack of HTTP
adapter errors, with ssh's message printed on the side.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

from pytest_vmcontainer.errors import HostSetupError
from pytest_vmcontainer.host import sshlogin

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
PROBE_TIMEOUT = 30.0  # seconds for the whole probe; ssh's own ConnectTimeout is shorter
CONNECT_TIMEOUT = 10
# What the probe runs there: the engine's version, through the remote docker CLI, which is
# what the SDK's ``docker system dial-stdio`` needs too.
PROBE_COMMAND = "docker version --format '{{.Server.Version}}'"
TLS_VERIFY_ENV, CERT_PATH_ENV = "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"  # docker's own
SSH_VIA_ENV = "VMC_DOCKER_SSH"  # the SSH login on a TCP engine's host, for the forwards
SSH_PORT = 22  # an ssh:// URL without a port
OLDEST_API = "1.24"  # asked only for the engine's own API version (every engine serves it)


@dataclass(frozen=True)
class Engine:
    """The engine ``DOCKER_HOST`` names (the local socket when unset)."""

    url: str
    scheme: str
    hostname: str
    user: str | None = None
    port: int | None = None
    tls: bool = False  # DOCKER_TLS_VERIFY: the SDK and the CLI verify the engine over TLS
    ssh_via: Engine | None = None  # a TCP engine's host, as an ssh:// login, for the forwards

    @classmethod
    def parse(cls, url: str, tls: bool = False, ssh_via: str | None = None) -> Engine:
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise HostSetupError(f"DOCKER_HOST={shown(url)} has no valid port",
                                 "write it as ssh://user@host:port") from None
        via = None
        if ssh_via and parts.scheme == "tcp":
            via = cls.parse(ssh_via if "://" in ssh_via else f"ssh://{ssh_via}")
            if not via.hostname:
                raise HostSetupError(f"{SSH_VIA_ENV}={ssh_via} names no host",
                                     "write it as user@host or user@host:port")
        return cls(url, parts.scheme, parts.hostname or "", parts.username, port, tls, via)

    @property
    def over_ssh(self) -> bool:
        """The engine runs on another host (or network namespace), whose ports are reached
        over SSH: an engine over SSH, or over TLS with an SSH login for its ports."""
        return self.scheme == "ssh" or self.ssh_via is not None

    @property
    def over_tcp_elsewhere(self) -> bool:
        """A TCP engine on another host with no SSH login named: its ports are not ours."""
        return (self.scheme == "tcp" and self.hostname not in LOOPBACK_NAMES
                and self.ssh_via is None)

    @property
    def shown(self) -> str:
        return shown(self.url)

    def ssh_destination(self) -> list[str]:
        """What follows the options on an ssh command line to reach the engine's host."""
        if self.ssh_via is not None:
            return self.ssh_via.ssh_destination()
        args = ["-l", self.user] if self.user else []
        if self.port is not None:
            args += ["-p", str(self.port)]
        return [*args, "--", self.hostname]

    @property
    def ssh_machine(self) -> str:
        """The engine's host as SSH reaches it (host:port), for telling machines apart."""
        login = self.ssh_via or self
        return f"{login.hostname.lower()}:{login.port or SSH_PORT}"

    def described(self) -> str:
        """Where the container runs, for the report (no credential: see ``shown``)."""
        if self.ssh_via is not None:
            return f"on the Docker engine at {self.shown} (TLS; ports over SSH)"
        return f"on the Docker engine at {self.shown}" if self.over_ssh else ""


def shown(url: str) -> str:
    """``url`` without a password, should one be written into it."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = (f"{parts.username}@" if parts.username else "") + parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def current() -> Engine:
    tls = os.environ.get(TLS_VERIFY_ENV, "") not in ("", "0", "false")
    return Engine.parse(os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST, tls,
                        os.environ.get(SSH_VIA_ENV) or None)


def client(timeout: int = 120) -> Any:
    """A docker SDK client for the current engine; over SSH, once the probe has passed."""
    import docker

    engine = current()
    require_reachable(engine)
    if engine.tls:
        return tls_client(timeout)
    return docker.from_env(timeout=timeout, use_ssh_client=engine.scheme == "ssh")


def tls_client(timeout: int) -> Any:
    """A client of the engine over TLS, as ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH``
    configure it, that verifies the engine with that CA only. The SDK's requests session
    would take ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` from the environment instead of
    the engine's CA (docker/docker-py#2433, open), and CI machines often set those; so the
    session does not read the environment, and the API version is asked for first."""
    import docker

    settings, answer = _tls_version_answer(timeout)
    client = docker.DockerClient(version=str(answer["ApiVersion"]), timeout=timeout, **settings)
    client.api.trust_env = False
    return client


def _tls_version_answer(timeout: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The SDK's TLS settings from the environment, and the engine's ``/version`` answer
    through them (asked with no API version: it names the engine's)."""
    import docker
    from docker.utils import kwargs_from_env

    settings: dict[str, Any] = dict(kwargs_from_env())
    first = docker.APIClient(version=OLDEST_API, timeout=timeout, **settings)
    first.trust_env = False
    try:
        return settings, first.version(api_version=False)
    finally:
        first.close()


_reached: set[str] = set()  # engines whose probe passed in this process
_reached_lock = threading.Lock()


def require_reachable(engine: Engine | None = None) -> None:
    """Raise one ``HostSetupError`` naming why the engine cannot serve the container target
    (for an engine over SSH, from one ``ssh ... docker version``; once it passes, not again
    in this process). A local engine is left to the SDK's own check."""
    engine = engine or current()
    if engine.scheme == "tcp" and (engine.over_tcp_elsewhere or engine.ssh_via) \
            and not engine.tls:
        raise HostSetupError(
            f"DOCKER_HOST={engine.shown} is an engine on another host over plain TCP: "
            "whoever reaches that port is root there, and the harness will not use it",
            f"use DOCKER_HOST=ssh://USER@{engine.hostname} (its engine, over SSH), or TLS "
            f"({TLS_VERIFY_ENV}=1 and {CERT_PATH_ENV}) with {SSH_VIA_ENV}=USER@HOST for its "
            "ports")
    if engine.over_tcp_elsewhere:
        raise HostSetupError(
            f"DOCKER_HOST={engine.shown} is an engine on another host reached over TCP: the "
            "harness reaches a remote container's ports only through SSH forwards",
            f"set {SSH_VIA_ENV}=USER@{engine.hostname} (an SSH login on that host, for the "
            f"forwards), or use DOCKER_HOST=ssh://USER@{engine.hostname}")
    if not engine.over_ssh:
        return
    with _reached_lock:
        if engine.url in _reached:
            return
    probe(engine)
    with _reached_lock:
        _reached.add(engine.url)


def probe(engine: Engine) -> str:
    """The remote engine's version, or a one-line ``HostSetupError`` naming what failed. Over
    TLS: the SSH login for the forwards first, then the engine's API."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o", "ForwardAgent=no", *engine.ssh_destination(),
            "true" if engine.ssh_via is not None else PROBE_COMMAND]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT,
                                stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise HostSetupError(f"DOCKER_HOST={engine.shown} needs an SSH client, and there is "
                             "no ssh here", "apt-get install openssh-client") from None
    except subprocess.TimeoutExpired:
        raise HostSetupError(
            f"the Docker engine at {engine.shown} did not answer over SSH within "
            f"{PROBE_TIMEOUT:.0f}s", "check that the host is up and its sshd answers "
            f"('ssh {' '.join(engine.ssh_destination())} true')") from None
    version = result.stdout.strip()
    if engine.ssh_via is not None and result.returncode == 0:
        return tls_version(engine)
    if result.returncode == 0 and version:
        return version
    if engine.ssh_via is not None:  # ssh's own failure, to the login for the forwards
        where = f"{engine.ssh_via.shown} (the SSH login for the ports of {engine.shown})"
        raise HostSetupError(*explain(engine.ssh_via, result.returncode, result.stderr, where))
    raise HostSetupError(*explain(engine, result.returncode, result.stderr))


def tls_version(engine: Engine) -> str:
    """The version of an engine over TLS, through the SDK (as ``DOCKER_TLS_VERIFY`` and
    ``DOCKER_CERT_PATH`` configure it), or one line naming why it does not answer."""
    certs = os.environ.get(CERT_PATH_ENV) or "~/.docker"
    try:  # one round trip: the answer that picks a client's API version has the version
        return str(_tls_version_answer(int(PROBE_TIMEOUT))[1]["Version"])
    except Exception as error:  # the SDK's TLS, connection and API errors alike
        text = str(error)
        if "certificate" in text.lower() or "ssl" in text.lower() or "tls" in text.lower():
            raise HostSetupError(
                f"the TLS handshake with the Docker engine at {engine.shown} failed "
                f"({_innermost_reason(text)})", f"check the CA, cert and key in {certs} "
                "(ca.pem, cert.pem, key.pem) against the engine's") from None
        raise HostSetupError(f"the Docker engine at {engine.shown} does not answer over TLS "
                             f"({_innermost_reason(text)})", "check the host and port in "
                             "DOCKER_HOST and that dockerd listens there with --tlsverify"
                             ) from None


def _innermost_reason(text: str) -> str:
    """The innermost reason in an SDK error's chain of wrapped messages."""
    text = " ".join(text.split())
    found = re.search(r"\[SSL[^\]]*\][^'\")]*|\[Errno \d+\][^'\")]*", text)
    return re.sub(r"\s*\(_ssl\.c:\d+$", "", found.group(0).strip()) if found else text[-200:]


def explain(engine: Engine, returncode: int, stderr: str,
            where: str | None = None) -> tuple[str, str]:
    """(cause, remedy) of a failed probe, from ssh's exit status and its messages."""
    where = where or engine.shown
    text = stderr.lower()
    last = sshlogin.last_line(stderr, returncode)
    failed = sshlogin.ssh_failure(sshlogin.Remote(
        "the Docker engine", where, engine.hostname, "DOCKER_HOST",
        f"ssh {' '.join(engine.ssh_destination())} true"), returncode, stderr)
    if failed is not None:  # ssh's own failure: nothing ran there
        return failed
    if returncode in (126, 127) or "not found" in text:
        return (f"the host of {where} has no docker command for SSH sessions ({last})",
                "install Docker there (apt-get install docker.io) with docker on the PATH of "
                "non-interactive SSH sessions, or point DOCKER_HOST at a host that has it")
    if "permission denied" in text and "docker" in text:
        return (f"the SSH user at {where} may not use that host's Docker engine ({last})",
                "add the user to the docker group there, or connect as one that is")
    return (f"the Docker engine at {where} does not answer ({last})",
            "start dockerd there (e.g. 'systemctl start docker') and try again")
