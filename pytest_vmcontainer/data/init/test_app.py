"""Checks that run unchanged on the VM and on the container (pytest --target=both).

``host`` is the current target's testinfra Host; ``parity`` records values that must be
the same on both targets; ``target`` gives the forwarded ports on 127.0.0.1.
"""

import urllib.request

import pytest


def test_lighttpd_installed(host, parity):
    lighttpd = host.package("lighttpd")
    assert lighttpd.is_installed
    parity.check("lighttpd version", lighttpd.version)


def test_listens_on_8080(host):
    assert host.socket("tcp://8080").is_listening


def test_config(host, parity):
    config = host.file("/etc/lighttpd/lighttpd.conf")
    assert config.contains("server.port = 8080")
    parity.check("config sha256", config.sha256sum)


def test_page(target, parity):
    with urllib.request.urlopen(target.url("/", port=8080), timeout=10) as response:
        assert response.status == 200
        parity.check("page", response.read())


@pytest.mark.expect_diff(reason="a VM boots its own init; a container's PID 1 is its CMD")
def test_pid1(host, parity):
    parity.check("PID 1", host.process.get(pid=1).comm)
