"""What an ``ssh`` to another machine's engine said when it failed, in one line.

The Docker engine over SSH (``host.engine``) and libvirt over SSH (``host.libvirthost``)
both reach their host with the system's OpenSSH client, whose own failures (exit status
255: nothing ran there) read the same: a name that does not resolve, no server, every key
refused, an untrusted host key. Only what is reached and the setting that names it differ.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Remote:
    """What an ssh login reaches, as the messages name it."""

    what: str  # "the Docker engine"
    where: str  # its address as shown (no credential)
    hostname: str
    setting: str  # the setting that names it: "DOCKER_HOST"
    login: str  # the ssh command a user runs to see for themselves


REACH_FAILURES = ("connection refused", "timed out", "no route to host", "network is unreachable",
                  "kex_exchange_identification", "connection closed", "connection reset")


def last_line(stderr: str, returncode: int) -> str:
    return (stderr.strip().splitlines() or [f"exit status {returncode}"])[-1].strip()


def ssh_failure(remote: Remote, returncode: int, stderr: str) -> tuple[str, str] | None:
    """(cause, remedy) when ssh itself failed (exit status 255), else None: the command ran
    there, and its own failure is the caller's to explain."""
    if returncode != 255:
        return None
    text, last = stderr.lower(), last_line(stderr, returncode)
    what, where = remote.what, remote.where
    if "could not resolve hostname" in text:
        return (f"cannot reach {what} at {where}: the host name {remote.hostname} does not "
                f"resolve", f"fix the host in {remote.setting} (or its HostName in "
                "~/.ssh/config)")
    if "permission denied" in text or "too many authentication failures" in text:
        return (f"the SSH server at {where} refused every key offered ({last})",
                "load the right key into your agent (ssh-add) or name it with IdentityFile "
                "in ~/.ssh/config, and put its public key in that user's authorized_keys")
    if any(word in text for word in REACH_FAILURES):
        return (f"cannot reach {what} at {where}: no SSH server answers there ({last})",
                f"check the host and port in {remote.setting}, and that sshd runs there and "
                "lets this host in")
    if "host key verification failed" in text or "remote host identification" in text:
        return (f"cannot trust {what}'s host at {where}: its SSH host key is not in "
                "known_hosts, or changed", f"check the key and accept it once, as you would "
                f"for any SSH host: {remote.login}")
    return (f"ssh to {what} at {where} failed ({last})",
            f"run '{remote.login}' to see why, and fix that")
