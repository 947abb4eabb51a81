"""Readiness as wait strategies with timeouts (never bare sleeps).

A condition is a callable returning a truthy value when ready; exceptions it
raises count as "not yet" and the last one is kept for the timeout message, except
``Cancelled`` (teardown stopped the bring-up) and ``TargetStopped`` (the target is gone):
no wait can help, so they end it at once.
"""

from __future__ import annotations

import http.client
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pytest_vmcontainer.errors import Cancelled, TargetStopped, WaitTimeout

T = TypeVar("T")

__all__ = ["LOOPBACK", "HttpResponse", "WaitTimeout", "http_get", "http_ok", "require_loopback",
           "ssh_banner", "tcp_open", "wait_for"]

LOOPBACK = "127.0.0.1"


def wait_for(condition: Callable[[], T | None], *, timeout: float, what: str,
             interval: float = 0.1, max_interval: float = 1.0) -> T:
    """Poll ``condition`` with a growing interval until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except (Cancelled, TargetStopped):
            raise
        except Exception as exc:  # a condition signals "not yet" by raising
            last_error = exc
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(what, timeout, last_error)
        time.sleep(min(interval, remaining))
        interval = min(interval * 1.5, max_interval)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    headers: dict[str, str]


def require_loopback(url: str) -> urllib.parse.SplitResult:
    """Refuse any URL that is not on 127.0.0.1: tests never reach other addresses."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or parts.hostname != LOOPBACK:
        raise ValueError(f"refusing {url!r}: targets are reached only through http://{LOOPBACK}")
    return parts


def http_get(url: str, timeout: float = 5.0) -> HttpResponse:
    """One HTTP GET to a loopback URL, without proxies (urllib would honour http_proxy)."""
    parts = require_loopback(url)
    connection = http.client.HTTPConnection(LOOPBACK, parts.port or 80, timeout=timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", target, headers={"Connection": "close"})
        response = connection.getresponse()
        return HttpResponse(response.status, response.read(),
                            {k.lower(): v for k, v in response.getheaders()})
    finally:
        connection.close()


def http_ok(url: str) -> Callable[[], HttpResponse | None]:
    """Condition: the URL answers HTTP 200."""

    def condition() -> HttpResponse | None:
        response = http_get(url, timeout=2.0)
        return response if response.status == 200 else None

    return condition


def tcp_open(port: int) -> Callable[[], bool]:
    """Condition: something accepts TCP connections on 127.0.0.1:port."""

    def condition() -> bool:
        with socket.create_connection((LOOPBACK, port), timeout=1.0):
            return True

    return condition


def ssh_banner(port: int) -> Callable[[], bool]:
    """Condition: an SSH server answers on 127.0.0.1:port with its banner. An accepted
    connection is not enough: QEMU's user-mode forward accepts whether or not the guest
    listens, then closes."""

    def condition() -> bool:
        with socket.create_connection((LOOPBACK, port), timeout=2.0) as connection:
            connection.settimeout(2.0)
            return connection.recv(64).startswith(b"SSH-")

    return condition
