"""Readiness as wait strategies with timeouts (never bare sleeps).

A condition is a callable returning a truthy value when ready. Only the errors that mean
"not yet" (``is_not_yet``) are retried, the last one kept for the timeout message: nothing
answers yet (connection refused or reset, a timeout, an SSH handshake that fails), a reply
cut short, a file still being written, or ``NotReady``. Any other error ends the wait at
once: a bug in a check must not wait out the whole timeout, and ``Cancelled`` (teardown
stopped the bring-up) or ``TargetStopped`` (the target is gone) are beyond waiting.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pytest_vmcontainer.errors import WaitTimeout

T = TypeVar("T")

__all__ = ["LOOPBACK", "HttpResponse", "NotReady", "WaitTimeout", "http_get", "http_ok",
           "is_not_yet", "require_loopback", "ssh_banner", "tcp_open", "wait_for"]

LOOPBACK = "127.0.0.1"


class NotReady(Exception):
    """What a condition raises to say "not yet" with a reason (shown if the wait times out)."""


# OSError: refused, reset, timed out (socket.timeout, the docker SDK's and requests' errors);
# EOFError and HTTPException: a reply cut short; JSONDecodeError: a file still being written.
NOT_YET: tuple[type[BaseException], ...] = (
    OSError, EOFError, http.client.HTTPException, json.JSONDecodeError, NotReady)
# Named, not imported: paramiko loads only with a target (a failed SSH handshake).
_NOT_YET_BY_NAME = {("paramiko.ssh_exception", "SSHException")}


def is_not_yet(error: BaseException) -> bool:
    """Whether ``error`` means the thing waited for is not there yet (worth another try)."""
    if isinstance(error, NOT_YET):
        return True
    return any((cls.__module__, cls.__name__) in _NOT_YET_BY_NAME for cls in type(error).__mro__)


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
        except Exception as exc:
            if not is_not_yet(exc):
                raise  # a bug in the check, or a failure no wait can mend
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
