"""Loopback ports for published container ports and forwarded VM ports."""

from __future__ import annotations

import errno
import random
import socket
from collections.abc import Mapping
from pathlib import Path

from pytest_vmcontainer.errors import PortInUse
from pytest_vmcontainer.runtime.waiting import LOOPBACK

# Ports are picked below the kernel's ephemeral range: a port from that range can be taken
# at any moment as the source port of an outgoing connection (the harness opens many on
# loopback while it polls), between the check here and the forward's own bind. Seen once in
# a full run: QEMU's "Could not set up host forwarding rule 'tcp:127.0.0.1:51523-:80'".
LOWEST_PICKED = 20000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_pick = random.SystemRandom()  # not the random module: a test plugin may seed that alike


def ephemeral_low(range_file: Path = EPHEMERAL_RANGE) -> int:
    """The lowest port the kernel gives to outgoing connections (32768 where unreadable)."""
    try:
        return int(range_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(range_file: Path = EPHEMERAL_RANGE) -> int:
    """A port free on 127.0.0.1 right now, below the kernel's ephemeral range when it leaves
    room there (else one the kernel hands out)."""
    low = ephemeral_low(range_file)
    if low - LOWEST_PICKED >= 1000:
        for _ in range(100):
            port = _pick.randrange(LOWEST_PICKED, low)
            if _bindable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        picked: int = sock.getsockname()[1]
        return picked


def ensure_free(port: int) -> int:
    """Check that a port the user asked for can be bound on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(port) from None
            raise
    return port


def was_picked(error: PortInUse, pinned: Mapping[int, int]) -> bool:
    """The taken port was one the harness picked, not one the user pinned (unknown: picked
    only when nothing is pinned)."""
    if error.port is None:
        return not pinned
    return error.port not in pinned.values()
