"""A team's own app, used as a team would: from a directory outside this repository, with its
own ports and files, and no plugin options.

The app is a page served on port 8080 by python3, declared by EXPOSE in the Dockerfile and by
a forwarded_port in the Vagrantfile (whose host port, 18080, the harness does not need). Its
one provisioning script installs python3 where the base lacks it (the container's) and starts
the server under systemd where there is one (the VM's): no apt under emulation, since this
test is about running a team's app, not about provisioning. The starter that ``init`` writes
(lighttpd) runs on the container below.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, error_line, leftovers, run_cli, run_process

VAGRANTFILE = """# The team's VM: the page on 8080, provisioned by the same script as the container.
Vagrant.configure("2") do |config|
  config.vm.box = "pytest-vmcontainer/debian-12"
  config.vm.network "forwarded_port", guest: 8080, host: 18080, host_ip: "127.0.0.1"
  config.vm.provider "libvirt" do |lv|
    lv.memory = 1024
    lv.cpus = 2
  end
  config.vm.provision "file", source: "provision", destination: "/tmp/provision"
  config.vm.provision "shell", inline: "sh /tmp/provision/setup.sh && rm -rf /tmp/provision"
end
"""

DOCKERFILE = """# The team's container: the page on 8080, provisioned by the same script as the VM.
FROM pytest-vmcontainer/debian:bookworm
COPY provision/ /tmp/provision/
RUN sh /tmp/provision/setup.sh && rm -rf /tmp/provision
EXPOSE 8080
CMD ["python3", "-m", "http.server", "8080", "--directory", "/srv/app"]
"""

SETUP = """#!/bin/sh
# The team's page on 8080, the same way in the VM and in the container.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v python3 >/dev/null; then  # the container's base has none, the box has one
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends python3
    rm -rf /var/lib/apt/lists/*
fi
install -d /srv/app
install -m 0644 "$here/index.html" /srv/app/index.html
if [ -d /run/systemd/system ]; then
    cat > /etc/systemd/system/teamapp.service <<UNIT
[Unit]
Description=the team's page on 8080
[Service]
ExecStart=/usr/bin/python3 -m http.server 8080 --directory /srv/app
[Install]
WantedBy=multi-user.target
UNIT
    systemctl enable --now teamapp.service
fi
"""

CHECKS = """
import urllib.request

import pytest


def test_page(target, parity):
    with urllib.request.urlopen(target.url("/", port=8080), timeout=10) as response:
        assert response.status == 200
        parity.check("page", response.read())


def test_page_file(host, parity):
    parity.check("index sha256", host.file("/srv/app/index.html").sha256sum)


def test_listens_on_8080(host):  # 8080 is 1F90 in /proc/net/tcp: no ss in a minimal image
    assert host.run("grep -q ':1F90 ' /proc/net/tcp /proc/net/tcp6").rc == 0


def test_python(host, parity):
    version = host.run("python3 -c 'import sys; print(sys.version_info[:2])'")
    assert version.rc == 0
    parity.check("python3", version.stdout.strip())


@pytest.mark.expect_diff(reason="a VM boots its own init; a container's PID 1 is its CMD")
def test_pid1(host, parity):
    parity.check("PID 1", host.file("/proc/1/comm").content_string.strip())
"""

ORDER = '''
def pytest_collection_modifyitems(items):
    """The fault tests stop the targets: they run last, the stopper before the checks after
    (pytest would otherwise group the parametrized ones first)."""
    items.sort(key=lambda item: (item.path.name == "test_zz_faults.py", "after" in item.name))
'''

FAULTS = '''
import docker
import subprocess


def test_zz_stop_both_targets(vm, container):
    """Stops both targets behind the run's back (the container as its engine would)."""
    docker.from_env().containers.get(container.resource_name).kill()
    subprocess.run(["virsh", "-c", "qemu:///system", "destroy", vm.resource_name], check=True)


def test_zzz_after_the_targets_died(host):
    assert host.run("true").rc == 0
'''


def _init(directory: Path) -> Path:
    result = run_cli("init", str(directory))
    assert result.returncode == 0, result.stderr
    return directory


def _team_app(directory: Path) -> Path:
    (directory / "provision").mkdir(parents=True)
    (directory / "provision" / "setup.sh").write_text(SETUP)
    (directory / "provision" / "index.html").write_text("<p>the team's page</p>\n")
    (directory / "Vagrantfile").write_text(VAGRANTFILE)
    (directory / "Dockerfile").write_text(DOCKERFILE)
    (directory / "pytest.ini").write_text("[pytest]\n")  # the team's project root
    (directory / "test_app.py").write_text(CHECKS)
    return directory


def _pytest(directory: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return run_process([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                       directory, timeout)


def _session_id(output: str) -> str:
    match = re.search(r"vmc-([0-9a-z]+)-(default|container)", output)
    assert match, output
    return match.group(1)


@pytest.mark.vm
def test_own_app_on_8080_passes_on_both_targets_with_no_options(
        tmp_path: Path, bases: None, leak_check: None) -> None:
    project = _team_app(tmp_path / "team-app")
    assert not project.is_relative_to(ROOT)
    (project / "test_zz_faults.py").write_text(FAULTS)
    (project / "conftest.py").write_text(ORDER)
    result = _pytest(project)
    output = result.stdout
    assert result.returncode == 1, output  # the fault tests fail on purpose, nothing else
    assert re.search(r"\b2 failed, 11 passed", output), output  # 5 checks x 2, + the stopper
    failed = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert len(failed) == 2 and all("test_zzz_after_the_targets_died" in f for f in failed), output
    # Each later test fails with one line naming the target and what happened to it.
    assert re.search(r"vm target: the VM vmc-\w+-default is shut off: the run does not restart "
                     r"targets", output), output
    assert re.search(r"container target: the container vmc-\w+-container is exited \(exit code "
                     r"137", output), output
    assert "systeminfo" not in output and "findstr" not in output, output
    assert "DIFFERS" not in output, output
    assert re.search(r"test_app.py::test_page +passed +passed", output), output
    assert leftovers(_session_id(output)) == []


def test_the_starter_from_init_passes_on_the_container(tmp_path: Path, docker_base: None,
                                                       leak_check: None) -> None:
    project = _init(tmp_path / "starter")
    result = _pytest(project, "--target=container")
    assert result.returncode == 0, result.stdout
    assert re.search(r"\b5 passed", result.stdout), result.stdout
    assert leftovers(_session_id(result.stdout)) == []


def test_a_declared_port_nothing_listens_on(tmp_path: Path, docker_client: Any,
                                            docker_base: None, leak_check: None) -> None:
    project = _init(tmp_path / "app")
    dockerfile = project / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("EXPOSE 8080", "EXPOSE 8080 9090"))
    result = run_cli("up", "--target=container", "--dockerfile", str(dockerfile),
                     "--ready-timeout", "5")
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "port 9090 not ready after 5s" in line and "inside it listens on 8080" in line, line


@pytest.mark.parametrize(("kind", "old", "new", "expected"), [
    ("container", "FROM pytest-vmcontainer/debian:bookworm", "FROM debian:bookworm",
     "the base image debian:bookworm cannot be pulled (no image registry reachable): use "
     "pytest-vmcontainer/debian:bookworm (built by 'python -m pytest_vmcontainer build')"),
    ("vm", '"pytest-vmcontainer/debian-12"', '"debian/bookworm64"',
     "the box debian/bookworm64 is not installed and Vagrant Cloud is unreachable from this "
     "machine: use pytest-vmcontainer/debian-12 (built by 'python -m pytest_vmcontainer "
     "build')"),
])
def test_a_base_that_cannot_be_fetched_names_the_local_one(
        tmp_path: Path, bases: None, leak_check: None, kind: str, old: str, new: str,
        expected: str) -> None:
    project = _init(tmp_path / "app")
    path = project / ("Dockerfile" if kind == "container" else "Vagrantfile")
    path.write_text(path.read_text().replace(old, new))
    result = run_cli("up", f"--target={kind}", f"--{path.name.lower()}", str(path))
    assert result.returncode == 1
    assert expected in error_line(result.stderr)


def test_a_vagrantfile_not_for_libvirt(tmp_path: Path, bases: None, leak_check: None) -> None:
    project = _init(tmp_path / "app")
    vagrantfile = project / "Vagrantfile"
    vagrantfile.write_text(vagrantfile.read_text().replace('provider "libvirt" do |lv|',
                                                           'provider "virtualbox" do |lv|'))
    result = run_cli("up", "--target=vm", "--vagrantfile", str(vagrantfile))
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "configures only the virtualbox provider, not libvirt" in line
    assert 'add a config.vm.provider "libvirt" block' in line


def test_login_to_a_session_that_does_not_exist(leak_check: None) -> None:
    result = run_cli("login", "vm", "--session", "nosuch")
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "session nosuch has no vm target" in line and "pytest_vmcontainer list" in line


def test_init_into_a_directory_with_a_vagrantfile(tmp_path: Path) -> None:
    (tmp_path / "Vagrantfile").write_text("# the team's own\n")
    result = run_cli("init", str(tmp_path))
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert f"{tmp_path / 'Vagrantfile'} already exists" in line and "overwrites nothing" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Vagrantfile"]
    assert (tmp_path / "Vagrantfile").read_text() == "# the team's own\n"
