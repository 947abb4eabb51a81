"""Which Docker engine the container target runs on: this host's, or another host's over SSH.

``DOCKER_HOST=ssh://user@host[:port]`` puts the container on that host's engine. Everything
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
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

from pytest_vmcontainer.errors import HostSetupError

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
PROBE_TIMEOUT = 30.0  # seconds for the whole probe; ssh's own ConnectTimeout is shorter
CONNECT_TIMEOUT = 10
# What the probe runs there: the engine's version, through the remote docker CLI, which is
# what the SDK's ``docker system dial-stdio`` needs too.
PROBE_COMMAND = "docker version --format '{{.Server.Version}}'"


@dataclass(frozen=True)
class Engine:
    """The engine ``DOCKER_HOST`` names (the local socket when unset)."""

    url: str
    scheme: str
    hostname: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, url: str) -> Engine:
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise HostSetupError(f"DOCKER_HOST={shown(url)} has no valid port",
                                 "write it as ssh://user@host:port") from None
        return cls(url, parts.scheme, parts.hostname or "", parts.username, port)

    @property
    def over_ssh(self) -> bool:
        """The engine runs on another host (or network namespace) reached over SSH."""
        return self.scheme == "ssh"

    @property
    def over_tcp_elsewhere(self) -> bool:
        """A TCP engine not on this host's loopback: its published ports are not ours."""
        return self.scheme == "tcp" and self.hostname not in LOOPBACK_NAMES

    @property
    def shown(self) -> str:
        return shown(self.url)

    def ssh_destination(self) -> list[str]:
        """What follows the options on an ssh command line to reach the engine's host."""
        args = ["-l", self.user] if self.user else []
        if self.port is not None:
            args += ["-p", str(self.port)]
        return [*args, "--", self.hostname]

    def described(self) -> str:
        """Where the container runs, for the report (no credential: see ``shown``)."""
        return f"on the Docker engine at {self.shown}" if self.over_ssh else ""


def shown(url: str) -> str:
    """``url`` without a password, should one be written into it."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = (f"{parts.username}@" if parts.username else "") + parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def current() -> Engine:
    return Engine.parse(os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST)


def client(timeout: int = 120) -> Any:
    """A docker SDK client for the current engine; over SSH, once the probe has passed."""
    import docker

    engine = current()
    require_reachable(engine)
    return docker.from_env(timeout=timeout, use_ssh_client=engine.over_ssh)


_reached: set[str] = set()  # engines whose probe passed in this process
_reached_lock = threading.Lock()


def require_reachable(engine: Engine | None = None) -> None:
    """Raise one ``HostSetupError`` naming why the engine cannot serve the container target
    (for an engine over SSH, from one ``ssh ... docker version``; once it passes, not again
    in this process). A local engine is left to the SDK's own check."""
    engine = engine or current()
    if engine.over_tcp_elsewhere:
        raise HostSetupError(
            f"DOCKER_HOST={engine.shown} is an engine on another host reached over TCP: the "
            "harness reaches a remote container's ports only through SSH forwards",
            f"use DOCKER_HOST=ssh://USER@{engine.hostname} (its engine, over SSH)")
    if not engine.over_ssh:
        return
    with _reached_lock:
        if engine.url in _reached:
            return
    probe(engine)
    with _reached_lock:
        _reached.add(engine.url)


def probe(engine: Engine) -> str:
    """The remote engine's version, or a one-line ``HostSetupError`` naming what failed."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o", "ForwardAgent=no", *engine.ssh_destination(), PROBE_COMMAND]
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
    if result.returncode == 0 and version:
        return version
    raise HostSetupError(*explain(engine, result.returncode, result.stderr))


def explain(engine: Engine, returncode: int, stderr: str) -> tuple[str, str]:
    """(cause, remedy) of a failed probe, from ssh's exit status and its messages."""
    where = engine.shown
    text = stderr.lower()
    login = f"ssh {' '.join(engine.ssh_destination())} true"
    last = (stderr.strip().splitlines() or [f"exit status {returncode}"])[-1].strip()
    if returncode == 255:  # ssh's own failure: nothing ran there
        if "could not resolve hostname" in text:
            return (f"cannot reach the Docker engine at {where}: the host name "
                    f"{engine.hostname} does not resolve",
                    "fix the host in DOCKER_HOST (or its HostName in ~/.ssh/config)")
        if "permission denied" in text or "too many authentication failures" in text:
            return (f"the SSH server at {where} refused every key offered ({last})",
                    "load the right key into your agent (ssh-add) or name it with IdentityFile "
                    "in ~/.ssh/config, and put its public key in that user's authorized_keys")
        if any(word in text for word in ("connection refused", "timed out", "no route to host",
                                         "network is unreachable", "kex_exchange_identification",
                                         "connection closed", "connection reset")):
            return (f"cannot reach the Docker engine at {where}: no SSH server answers there "
                    f"({last})", "check the host and port in DOCKER_HOST, and that sshd runs "
                    "there and lets this host in")
        if "host key verification failed" in text or "remote host identification" in text:
            return (f"cannot trust the Docker engine's host at {where}: its SSH host key is "
                    "not in known_hosts, or changed", f"check the key and accept it once, as "
                    f"you would for any SSH host: {login}")
        return (f"ssh to the Docker engine at {where} failed ({last})",
                f"run '{login}' to see why, and fix that")
    if returncode in (126, 127) or "not found" in text:
        return (f"the host of {where} has no docker command for SSH sessions ({last})",
                "install Docker there (apt-get install docker.io) with docker on the PATH of "
                "non-interactive SSH sessions, or point DOCKER_HOST at a host that has it")
    if "permission denied" in text and "docker" in text:
        return (f"the SSH user at {where} may not use that host's Docker engine ({last})",
                "add the user to the docker group there, or connect as one that is")
    return (f"the Docker engine at {where} does not answer ({last})",
            "start dockerd there (e.g. 'systemctl start docker') and try again")
