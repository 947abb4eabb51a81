"""A team's own app, used as a team would: from a directory outside this repository, with its
own ports and files, and no plugin options. The app is the starter that ``init`` writes:
lighttpd on port 8080, declared by EXPOSE in the Dockerfile and by a forwarded_port in the
Vagrantfile (whose host port, 18080, the harness does not need).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, error_line, leftovers, run_cli

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


def _pytest(directory: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=directory, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def _session_id(output: str) -> str:
    match = re.search(r"vmc-([0-9a-z]+)-(default|container)", output)
    assert match, output
    return match.group(1)


def test_own_app_on_8080_passes_on_both_targets_with_no_options(
        tmp_path: Path, bases: None, leak_check: None) -> None:
    project = _init(tmp_path / "team-app")
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


def test_a_declared_port_nothing_listens_on(tmp_path: Path, docker_client: Any, bases: None,
                                            leak_check: None) -> None:
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
