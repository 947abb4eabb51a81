"""Loopback ports for published container ports and forwarded VM ports."""

from __future__ import annotations

import errno
import socket

from pytest_vmcontainer.errors import PortInUse
from pytest_vmcontainer.runtime.waiting import LOOPBACK


def free_port() -> int:
    """A port the kernel reports free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


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
