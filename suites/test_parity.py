"""The shipped parity suite: the same nginx environment, checked the same way on the VM and
on the container. Every test runs once per selected target (``--target=both|vm|container``);
values recorded with ``parity.check`` must match across targets, except in tests marked
``expect_diff``, where both values are shown in the parity matrix at the end of the run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pytest_vmcontainer import http_get

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CONFIG_FILES = {
    "/etc/nginx/nginx.conf": FIXTURES / "nginx.conf",
    "/etc/nginx/sites-available/default": FIXTURES / "site.conf",
    "/var/www/html/index.html": FIXTURES / "index.html",
}


def test_nginx_installed_same_version(host, parity):
    nginx = host.package("nginx")
    assert nginx.is_installed
    parity.check("nginx version", nginx.version)


def test_master_runs_as_root_workers_as_www_data(host, parity):
    processes = host.process.filter(comm="nginx")
    masters = [p for p in processes if "master process" in p.args]
    workers = [p for p in processes if "worker process" in p.args]
    assert len(masters) == 1, f"expected one nginx master, saw {[p.args for p in processes]}"
    assert masters[0].user == "root"
    assert workers, "no nginx worker process"
    assert {w.user for w in workers} == {"www-data"}
    parity.check("worker count", len(workers))


def test_listening_on_port_80(host, parity):
    listening = host.socket("tcp://0.0.0.0:80").is_listening
    assert listening
    parity.check("listening on tcp 0.0.0.0:80", listening)


def test_nginx_config_test_succeeds(host, parity):
    result = host.run("nginx -t")
    assert result.rc == 0, result.stderr
    parity.check("nginx -t", result.stderr.strip())


@pytest.mark.parametrize("path", sorted(CONFIG_FILES))
def test_provisioned_file_same_sha256(host, parity, path):
    installed = host.file(path)
    assert installed.is_file
    expected = hashlib.sha256(CONFIG_FILES[path].read_bytes()).hexdigest()
    assert installed.sha256sum == expected, f"{path} is not the file from fixtures/"
    parity.check(f"sha256 {path}", installed.sha256sum)


def test_index_page_over_http(target, parity):
    response = http_get(target.url("/"))
    assert response.status == 200
    parity.check("HTTP status", response.status)
    parity.check("body sha256", hashlib.sha256(response.body).hexdigest())
    parity.check("content-type", response.headers.get("content-type"))


def test_same_debian_release(host, parity):
    info = host.system_info
    assert info.distribution == "debian"
    parity.check("distribution", info.distribution)
    parity.check("release", info.release)
    parity.check("codename", info.codename)


@pytest.mark.expect_diff(reason="a VM boots its own init (systemd); a container's PID 1 is "
                                "its CMD (nginx)")
def test_init_system(host, parity):
    pid1 = host.process.get(pid=1)
    parity.check("PID 1", pid1.comm)


@pytest.mark.expect_diff(reason="systemd manages nginx in the VM; the container has no service "
                                "manager, so testinfra falls back to the SysV init script")
def test_service_manager_view(host, parity):
    nginx = host.service("nginx")
    parity.check("testinfra service backend", type(nginx).__name__)
    assert nginx.is_running
    parity.check("service nginx is_running", nginx.is_running)


@pytest.mark.expect_diff(reason="the VM runs its own kernel; the container shares the host's")
def test_kernel(host, parity):
    release = host.run("uname -r").stdout.strip()
    assert release
    parity.check("kernel release", release)
