"""The plugin against the real engines, run as a separate pytest process (pytester)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pytest_vmcontainer.runtime.waiting import wait_for
from pytest_vmcontainer.targets.docker.images import DOCKERFILE_LABEL
from tests.integration.conftest import (
    ROOT,
    error_line,
    leftovers,
    new_vms_of_run,
    owned_containers,
    run_cli,
    running_vms,
    write_project,
)

T = TypeVar("T")


def _session_id(output: str) -> str:
    match = re.search(r"vmc-([0-9a-z]+)-(default|container)", output)
    assert match, output
    return match.group(1)


@pytest.mark.vm
@pytest.mark.slow
def test_vm_provisioning_failure_fails_vm_tests_only(
        pytester: pytest.Pytester, tmp_path: Path, bases: None, leak_check: None) -> None:
    vagrantfile = (ROOT / "Vagrantfile").read_text().replace(
        'inline: "sh /tmp/provision/provision.sh', 'inline: "echo provisioning goes wrong; exit 3; '
        'sh /tmp/provision/provision.sh')
    project = write_project(tmp_path / "project", vagrantfile=vagrantfile)
    pytester.makepyfile(test_page="""
        from pytest_vmcontainer.runtime.waiting import http_get

        def test_page(target):
            assert http_get(target.url("/")).status == 200
    """)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--vagrantfile={project / 'Vagrantfile'}",
        f"--dockerfile={project / 'Dockerfile'}", f"--vmc-provision-inputs={project / 'fixtures'}",
        timeout=1200)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*vm target: provisioning failed in the VM*",
        "*last lines of the vm log*",
        "*provisioning goes wrong*",
    ])


def _popen_pytest(directory: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                            cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)


def _interrupt_when(directory: Path, args: list[str], ready: Callable[[int], T], what: str,
                    ready_timeout: float, sig: int = signal.SIGINT) -> tuple[T, int, str]:
    """Run pytest, send ``sig`` to it (by its id) once ``ready(its pid)`` is truthy, and
    return (what ready() gave, exit code, output)."""
    run = _popen_pytest(directory, *args)
    try:
        seen = wait_for(lambda: ready(run.pid), timeout=ready_timeout, what=what)
        run.send_signal(sig)
        output, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    return seen, run.returncode, output


@pytest.mark.vm
def test_sigint_during_vagrant_up_leaves_nothing(
        pytester: pytest.Pytester, docker_client: Any, shipped_vm: None,
        leak_check: None) -> None:
    pytester.makepyfile(test_vm="def test_vm(vm):\n    assert vm.mode\n")
    before = running_vms()
    domains, returncode, output = _interrupt_when(
        pytester.path, ["--target=vm", f"--vagrantfile={ROOT / 'Vagrantfile'}",
                        f"--vmc-provision-inputs={ROOT / 'fixtures'}",
                        "--vmc-no-vm-restore"],  # a boot, not a restore (test_vm_saved)
        lambda pid: new_vms_of_run(pid, before),
        "the VM's domain", ready_timeout=300)
    assert returncode == 2, output  # pytest's "interrupted"
    session_id = domains[0].split("-")[1]
    assert leftovers(session_id) == [], output


def test_sigint_during_image_build_leaves_nothing(
        pytester: pytest.Pytester, tmp_path: Path, docker_client: Any, docker_base: None,
        leak_check: None) -> None:
    marker = f"vmc-sigint-build-{os.getpid()}-{id(tmp_path):x}"  # finds this build's RUN step
    original = "RUN sh /tmp/provision/provision.sh"
    dockerfile = (ROOT / "Dockerfile").read_text().replace(
        original, f"RUN echo {marker} && sleep 60\n{original}")
    project = write_project(tmp_path / "project", dockerfile=dockerfile)
    pytester.makepyfile(test_c="def test_c(container):\n    assert container.mode\n")

    def build_step_running() -> bool:
        return any(marker in " ".join(c.attrs["Config"].get("Cmd") or [])
                   for c in docker_client.containers.list(all=True, ignore_removed=True))

    _, returncode, output = _interrupt_when(
        pytester.path, ["--target=container", f"--dockerfile={project / 'Dockerfile'}",
                        f"--vmc-provision-inputs={project / 'fixtures'}"],
        lambda _pid: build_step_running(), "the build's RUN step", ready_timeout=120)
    assert returncode == 2, output  # pytest's "interrupted"
    assert "KeyboardInterrupt" in output and "docker build" in output, output
    # dockerd removes the cancelled step's container itself (forcerm); give it a bounded moment.
    wait_for(lambda: not build_step_running(), timeout=30, what="the build step's removal")
    assert not docker_client.images.list(filters={"label": f"{DOCKERFILE_LABEL}="
                                                  f"{project / 'Dockerfile'}"}), output


def test_sigterm_during_tests_removes_the_container(
        pytester: pytest.Pytester, docker_client: Any, docker_base: None,
        leak_check: None) -> None:
    started = pytester.path / "started"
    pytester.makepyfile(test_slow=f"""
        import pathlib, time

        def test_slow(container):
            pathlib.Path({str(started)!r}).write_text(container.resource_name)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # bounded: SIGTERM arrives long before
                time.sleep(0.1)
    """)

    def running_container() -> str | None:
        name = started.read_text() if started.exists() else ""
        return name if name and docker_client.containers.get(name).status == "running" else None

    name, returncode, output = _interrupt_when(
        pytester.path, ["--target=container", f"--dockerfile={ROOT / 'Dockerfile'}",
                        f"--vmc-provision-inputs={ROOT / 'fixtures'}"],
        lambda _pid: running_container(), "the test to start", ready_timeout=300,
        sig=signal.SIGTERM)
    assert returncode == 2, output
    assert name not in [c.name for c in owned_containers(docker_client)], output


def test_keep_on_failure_then_destroy_one_then_clean(
        pytester: pytest.Pytester, docker_client: Any, docker_base: None, own_home: Path,
        leak_check: None) -> None:
    """Two kept sessions: ``destroy --session`` removes one and leaves the other; ``clean``
    removes the rest and says what it freed."""
    pytester.makepyfile(test_fail="def test_fail(container):\n    assert False\n")
    kept_sessions = []
    for _ in range(2):
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--target=container", "--vmc-keep=on-failure",
            f"--dockerfile={ROOT / 'Dockerfile'}", f"--vmc-provision-inputs={ROOT / 'fixtures'}")
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*kept container vmc-*-container*",
                                     "*pytest_vmcontainer destroy [[]vm|container[]] --session*"])
        kept_sessions.append(_session_id(result.stdout.str()))
    first, second = kept_sessions
    for session_id in kept_sessions:
        assert any(item.startswith("container ") for item in leftovers(session_id))
    ambiguous = run_cli("destroy", "container")
    assert ambiguous.returncode == 1
    assert "pick one with --session" in error_line(ambiguous.stderr)
    destroyed = run_cli("destroy", "container", "--session", first)
    assert destroyed.returncode == 0, destroyed.stderr
    assert f"container vmc-{first}-container" in destroyed.stdout + destroyed.stderr
    assert leftovers(first) == []
    assert any(item.startswith("container ") for item in leftovers(second))
    cleaned = run_cli("clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert "freed " in cleaned.stdout + cleaned.stderr
    assert leftovers(second) == []


def test_reuse_keeps_the_container_until_its_inputs_change(
        pytester: pytest.Pytester, tmp_path: Path, docker_client: Any, docker_base: None,
        own_home: Path, leak_check: None) -> None:
    project = write_project(tmp_path / "project")
    seen = tmp_path / "seen"
    pytester.makepyfile(test_id=f"""
        def test_id(container):
            with open({str(seen)!r}, "a") as out:
                out.write(container.container.id + "\\n")
    """)
    args = ("-p", "no:cacheprovider", "--target=container", "--vmc-reuse",
            f"--dockerfile={project / 'Dockerfile'}",
            f"--vmc-provision-inputs={project / 'fixtures'}")
    try:
        for _ in range(2):
            pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)
        (project / "fixtures" / "index.html").write_text("changed\n")
        pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)
        first, second, third = seen.read_text().split()
        assert first == second, "the second run did not reuse the container"
        assert third != first, "a container made from older inputs was reused"
        live = {c.id for c in owned_containers(docker_client)}
        assert first not in live, "the stale reusable container was not removed"
        assert third in live
    finally:
        assert run_cli("clean").returncode == 0
    assert third not in {c.id for c in owned_containers(docker_client)}
