"""Bad input: one clear line naming the cause and the remedy, a non-zero exit, nothing left."""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import error_line, home_qemu_reaches, run_cli, write_project

FAILING_PROVISION = "RUN sh -c 'echo provisioning goes wrong >&2; exit 3'\n"


def test_no_docker_engine(leak_check: None) -> None:
    result = run_cli("up", "--target=container", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "dockerd" in line and "unix:///nonexistent.sock" in line and "DOCKER_HOST" in line


def test_libvirtd_not_running(leak_check: None) -> None:
    uri = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"
    result = run_cli("up", "--target=vm", env={"VMC_LIBVIRT_URI": uri})
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "libvirtd" in line and uri in line and "VMC_LIBVIRT_URI" in line


def test_port_already_in_use(docker_client: Any, docker_base: None,
                              leak_check: None) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("up", "--target=container", "--container-port", str(port))
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert f"port {port}" in line and "already in use" in line


def test_missing_dockerfile(leak_check: None) -> None:
    result = run_cli("up", "--target=container", "--dockerfile", "/nonexistent/Dockerfile")
    assert result.returncode == 1
    assert "/nonexistent/Dockerfile does not exist" in error_line(result.stderr)


def test_debootstrap_cannot_reach_archive(tmp_path: Path, docker_client: Any,
                                          leak_check: None) -> None:
    with socket.socket() as closed:  # a loopback port with nothing listening
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    home = tmp_path / "vmc-home"
    result = run_cli("build", "--target=container", "--rebuild", env={
        "VMC_HOME": str(home), "VMC_DEBIAN_MIRROR": f"http://127.0.0.1:{port}/debian"})
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "could not reach the Debian archive" in line and "VMC_DEBIAN_MIRROR" in line
    assert not list((home / "builds").glob("work-*")), "the build left its work directory"


def test_provisioning_fails_in_the_container(tmp_path: Path, docker_base: None,
                                             leak_check: None) -> None:
    original = "RUN sh /tmp/provision/provision.sh"
    dockerfile = (Path(__file__).parents[2] / "Dockerfile").read_text().replace(
        original, FAILING_PROVISION + original)
    project = write_project(tmp_path, dockerfile=dockerfile)
    result = run_cli("up", "--target=container", "--dockerfile", str(project / "Dockerfile"))
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "provisioning failed in the container" in line and "returned a non-zero code: 3" in line


@pytest.mark.vm
def test_vm_does_not_answer_ssh_in_time(tmp_path: Path, bases: None, leak_check: None) -> None:
    # Inputs of this test only: no cache entry or saved VM can spare the boot it times out.
    project = write_project(tmp_path / "project")
    (project / "fixtures" / "index.html").write_text(f"<p>{secrets.token_hex(8)}</p>\n")
    result = run_cli("up", "--target=vm", "--vagrantfile", str(project / "Vagrantfile"),
                     "--boot-timeout", "3")
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "did not answer SSH within its boot timeout (3s" in line and "boot timeout" in line


@pytest.fixture
def small_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A ``VMC_HOME`` on a 64 MiB tmpfs: a disk too small for a box build."""
    with home_qemu_reaches() as home:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=755",
                        "vmc-test-small-home", str(home)], check=True)
        try:
            monkeypatch.setenv("VMC_HOME", str(home))
            yield home
            from pytest_vmcontainer.host import libvirt

            libvirt.remove_storage_pool()  # this home's, when the run made one
        finally:
            subprocess.run(["umount", str(home)], check=True)


def test_too_little_disk_space_is_named_before_anything_is_written(
        small_home: Path, leak_check: None) -> None:
    result = run_cli("up", "--target=vm")
    assert result.returncode == 1, result.stdout + result.stderr
    line = error_line(result.stderr)
    assert re.search(rf"not enough free disk space: {re.escape(str(small_home))} has "
                     r"\d+\.\d MiB free, this run needs about 1\.5 GiB there "
                     r"\(the box build 1\.5 GiB\)", line), line
    assert "clean --caches" in line and "VMC_HOME" in line
    assert not (small_home / "builds" / "pytest-vmcontainer-debian-12.box").exists()
    assert not list((small_home / "sessions").iterdir())
