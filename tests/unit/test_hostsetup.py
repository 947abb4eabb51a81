"""Host setup: daemon liveness (a socket file left by a killed daemon is not a running
daemon), the package check remembered until dpkg changes, and what each declared need takes."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_vmcontainer import targets
from pytest_vmcontainer.errors import HostSetupError
from pytest_vmcontainer.host import setup
from pytest_vmcontainer.host.setup import remove_stale_pid_file, unix_socket_answers
from pytest_vmcontainer.runtime.progress import quiet


@pytest.fixture
def socket_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # AF_UNIX paths are limited to ~108 bytes, shorter than some tmp_path values.
    directory = Path(tmp_path_factory.mktemp("s", numbered=True))
    yield directory / "d.sock"


def test_listening_socket_answers(socket_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(socket_path))
        server.listen(1)
        assert unix_socket_answers(socket_path)


def test_stale_socket_file_of_a_killed_daemon_does_not_answer(socket_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(socket_path))
        server.listen(1)
    assert socket_path.exists()  # the file stays behind, as after SIGKILL
    assert not unix_socket_answers(socket_path)


def test_missing_socket_does_not_answer(socket_path: Path) -> None:
    assert not unix_socket_answers(socket_path)


def test_pid_file_naming_another_process_is_removed(tmp_path: Path) -> None:
    pid_file = tmp_path / "docker.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # a live process that is not dockerd
    assert remove_stale_pid_file(pid_file, "dockerd")
    assert not pid_file.exists()


def test_pid_file_of_the_running_daemon_is_kept(tmp_path: Path) -> None:
    pid_file = tmp_path / "self.pid"
    pid_file.write_text(str(os.getpid()))
    own_name = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert not remove_stale_pid_file(pid_file, f"/usr/bin/{own_name}")
    assert pid_file.exists()


def test_unreadable_pid_file_is_left_alone(tmp_path: Path) -> None:
    pid_file = tmp_path / "docker.pid"
    pid_file.write_text("not a pid")
    assert not remove_stale_pid_file(pid_file, "dockerd")
    assert pid_file.exists()


def test_installed_packages_are_remembered_until_dpkg_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_vmcontainer.host import setup

    monkeypatch.setenv("VMC_HOME", str(tmp_path / "home"))
    status = tmp_path / "status"
    status.write_text("one\n")
    monkeypatch.setattr(setup, "DPKG_STATUS", status)
    calls: list[list[str]] = []

    def dpkg_query(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        lines = "".join(f"{name} ii \n" for name in command[3:] if name != "absent")
        return subprocess.CompletedProcess(command, 0, lines, "")

    monkeypatch.setattr("pytest_vmcontainer.host.setup.subprocess.run", dpkg_query)
    monkeypatch.setattr("pytest_vmcontainer.host.setup.shutil.which",
                        lambda name: "/usr/bin/" + name)
    assert setup.missing_packages(["a", "b"]) == []
    assert setup.missing_packages(["a"]) == []  # remembered: no second query
    assert len(calls) == 1
    assert setup.missing_packages(["a", "absent"]) == ["absent"]  # not all known: asks
    assert setup.missing_packages(["a", "absent"]) == ["absent"]  # a miss is never remembered
    assert len(calls) == 3
    status.write_text("two\n")  # a package came or went
    os.utime(status, ns=(1, 1))
    assert setup.missing_packages(["a"]) == []
    assert len(calls) == 4


@pytest.fixture
def nothing_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every package missing, every daemon down; nothing is asked of the host."""
    monkeypatch.setattr(setup, "missing_packages", lambda packages: list(packages))
    monkeypatch.setattr(setup, "DAEMONS", [replace(d, is_up=lambda: False)
                                           for d in setup.DAEMONS])


@pytest.mark.usefixtures("nothing_installed")
@pytest.mark.parametrize(("needs", "packages", "daemons"), [
    (["docker"], ["docker.io", "debootstrap"], ["dockerd"]),
    (["libvirt"], [p for p in setup.PACKAGES if p != "docker.io"], ["virtlogd", "libvirtd"]),
    (["docker", "libvirt"], list(setup.PACKAGES), ["dockerd", "virtlogd", "libvirtd"]),
    ([], [], []),
])
def test_each_need_checks_its_packages_and_daemons(needs: list[str], packages: list[str],
                                                   daemons: list[str]) -> None:
    missing, stopped = setup.check(needs)
    assert missing == packages
    assert [daemon.name for daemon in stopped] == daemons


@pytest.mark.usefixtures("nothing_installed")
def test_without_needs_named_setup_checks_everything() -> None:
    assert setup.check() == setup.check(("docker", "libvirt"))
    assert setup.ALL_NEEDS == ("docker", "libvirt")


def test_a_need_setup_cannot_provide_is_refused_before_anything_is_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def asked(packages: list[str]) -> list[str]:
        raise AssertionError("nothing is checked for an unknown need")

    monkeypatch.setattr(setup, "missing_packages", asked)
    with pytest.raises(HostSetupError) as refused:
        setup.ensure_host(quiet(), {"docker", "podman"})
    assert refused.value.cause == "host setup cannot provide 'podman'"
    assert "docker or libvirt" in refused.value.remedy


def test_the_command_line_asks_for_what_the_backends_declare() -> None:
    assert targets.host_needs(["vm"]) == {"libvirt"}
    assert targets.host_needs(["container"]) == {"docker"}
    assert targets.host_needs(["vm", "container"]) == set(setup.ALL_NEEDS)


def test_the_pool_is_made_by_a_vm_run_not_by_setup(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """A home that no VM ever uses gets no libvirt pool, even after ``setup``."""
    import argparse

    from pytest_vmcontainer import commands

    monkeypatch.setenv("VMC_HOME", str(tmp_path))
    monkeypatch.setattr(setup, "check", lambda needs=setup.ALL_NEEDS: ([], []))
    made: list[Path] = []
    monkeypatch.setattr(setup, "ensure_storage_pool", made.append)
    assert commands.cmd_setup(argparse.Namespace(check=False), quiet()) == 0
    setup.ensure_host(quiet(), {"docker"})
    assert made == []
    setup.ensure_host(quiet(), {"libvirt"})  # what the harness asks for a VM target
    assert made == [tmp_path / "libvirt-pool"]
