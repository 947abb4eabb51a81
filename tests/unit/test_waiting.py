"""Wait strategies, and HTTP/TCP readiness checks against servers on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pytest_vmcontainer.errors import Cancelled, TargetStopped
from pytest_vmcontainer.runtime.waiting import (
    NotReady,
    WaitTimeout,
    http_get,
    http_ok,
    require_loopback,
    ssh_banner,
    tcp_open,
    wait_for,
)


def test_wait_for_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, "", "ready", "later"])
    calls: list[int] = []

    def condition() -> str | int | None:
        calls.append(1)
        return next(answers)

    assert wait_for(condition, timeout=5, what="thing", interval=0.001) == "ready"
    assert len(calls) == 4


def test_wait_for_retries_on_exceptions() -> None:
    failures = iter([OSError("refused"), json.JSONDecodeError("half-written", "{", 1)])

    def condition() -> int:
        error = next(failures, None)
        if error is not None:
            raise error
        return 42

    assert wait_for(condition, timeout=5, what="thing", interval=0.001) == 42


def test_wait_timeout_names_what_and_the_last_error() -> None:
    errors = iter([OSError("first"), OSError("connection refused")])

    def condition() -> None:
        raise next(errors, OSError("connection refused"))

    with pytest.raises(WaitTimeout) as raised:
        wait_for(condition, timeout=0.05, what="vm port 80", interval=0.01)
    assert isinstance(raised.value, TimeoutError)
    assert str(raised.value) == "vm port 80 not ready after 0s (last error: connection refused)"
    assert isinstance(raised.value.last_error, OSError)
    assert raised.value.what == "vm port 80"


def test_wait_timeout_without_an_error() -> None:
    with pytest.raises(WaitTimeout, match=r"^never not ready after 0s$"):
        wait_for(lambda: False, timeout=0.03, what="never", interval=0.01)


@pytest.mark.parametrize("url", [
    "http://localhost/", "https://127.0.0.1/", "http://10.0.0.1/", "http://127.0.0.2:80/",
    "http://127.0.0.1.example.com/", "http://127.0.0.1@example.com/", "ftp://127.0.0.1/", "/x",
])
def test_require_loopback_refuses(url: str) -> None:
    with pytest.raises(ValueError, match=r"refusing .*only through http://127\.0\.0\.1"):
        require_loopback(url)


def test_require_loopback_accepts_127_0_0_1() -> None:
    parts = require_loopback("http://127.0.0.1:8080/index.html")
    assert (parts.port, parts.path) == (8080, "/index.html")


class _Handler(BaseHTTPRequestHandler):
    paths: list[str]

    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        ok = self.path.split("?")[0] in ("/", "/search")
        body = b"hello" if ok else b"missing"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _url(server: ThreadingHTTPServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_http_get(server: ThreadingHTTPServer) -> None:
    response = http_get(_url(server, "/"))
    assert (response.status, response.body) == (200, b"hello")
    assert response.headers["content-type"] == "text/plain"
    assert http_get(_url(server, "/nope")).status == 404
    assert http_get(f"http://127.0.0.1:{server.server_address[1]}").status == 200  # no path
    assert server.paths == ["/", "/nope", "/"]  # type: ignore[attr-defined]


def test_http_get_keeps_the_query(server: ThreadingHTTPServer) -> None:
    http_get(_url(server, "/search?q=1"))
    assert server.paths == ["/search?q=1"]  # type: ignore[attr-defined]


def test_http_get_refuses_other_hosts_before_connecting() -> None:
    with pytest.raises(ValueError, match="refusing"):
        http_get("https://127.0.0.1:1/")  # even a regression would stay on loopback


def test_http_ok(server: ThreadingHTTPServer) -> None:
    response = wait_for(http_ok(_url(server, "/")), timeout=5, what="page")
    assert response.body == b"hello"
    assert http_ok(_url(server, "/nope"))() is None


def test_tcp_open() -> None:
    with socket.socket() as listening, socket.socket() as closed:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        assert tcp_open(listening.getsockname()[1])() is True
        with pytest.raises(ConnectionRefusedError):
            tcp_open(closed.getsockname()[1])()
        with pytest.raises(WaitTimeout, match="refused"):
            wait_for(tcp_open(closed.getsockname()[1]), timeout=0.05, what="port",
                     interval=0.01)


def test_a_cancelled_bring_up_stops_waiting_at_once() -> None:
    calls = []

    def condition() -> bool:
        calls.append(1)
        raise Cancelled("the vm bring-up was cancelled by teardown")

    with pytest.raises(Cancelled):
        wait_for(condition, timeout=60, what="never")
    assert len(calls) == 1


def test_ssh_banner_wants_the_server_to_speak() -> None:
    with socket.socket() as quiet, socket.socket() as sshd:
        for server in (quiet, sshd):
            server.bind(("127.0.0.1", 0))
            server.listen()

        def answer() -> None:
            connection, _ = sshd.accept()
            with connection:
                connection.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")

        thread = threading.Thread(target=answer)
        thread.start()
        assert ssh_banner(sshd.getsockname()[1])()
        thread.join()

        def accept_and_close() -> None:  # what a forward does when nothing listens inside
            connection, _ = quiet.accept()
            connection.close()

        thread = threading.Thread(target=accept_and_close)
        thread.start()
        assert not ssh_banner(quiet.getsockname()[1])()
        thread.join()


class SSHException(Exception):
    """Stands in for paramiko's, which the harness names but does not import."""


SSHException.__module__ = "paramiko.ssh_exception"


class AuthenticationException(SSHException):
    pass


NOT_YET_ERRORS = [ConnectionRefusedError("refused"), ConnectionResetError("reset"),
                  TimeoutError("timed out"), EOFError(),
                  http.client.RemoteDisconnected("closed"), http.client.BadStatusLine(""),
                  json.JSONDecodeError("half-written", "{", 1), NotReady("no pid file yet"),
                  SSHException("Error reading SSH protocol banner"),
                  AuthenticationException("keys not installed yet")]


@pytest.mark.parametrize("error", NOT_YET_ERRORS, ids=lambda e: type(e).__name__)
def test_errors_that_mean_not_yet_are_retried(error: Exception) -> None:
    raised = threading.Event()

    def condition() -> str:
        if not raised.is_set():
            raised.set()
            raise error
        return "ready"

    assert wait_for(condition, timeout=60, what="thing", interval=0.001) == "ready"
    assert raised.is_set()


@pytest.mark.parametrize("error", [KeyError("port"), AttributeError("'NoneType' has no 'run'"),
                                   ValueError("bad literal"), TypeError("not callable"),
                                   AssertionError("check failed"),
                                   TargetStopped("the vm stopped", "see its log"),
                                   Cancelled("teardown")],
                         ids=lambda e: type(e).__name__)
def test_any_other_error_ends_the_wait_at_once(error: Exception) -> None:
    calls: list[int] = []

    def condition() -> bool:
        calls.append(1)
        raise error

    with pytest.raises(type(error)) as raised:
        wait_for(condition, timeout=3600, what="thing", interval=0.001)
    assert raised.value is error
    assert calls == [1]  # not polled again: a bug does not wait out the timeout
