"""The shipped parity suite on the real engines, serially and under pytest-xdist: one VM and
one container for all workers, one matrix, and cleanup after a failing test."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.host import libvirt
from pytest_vmcontainer.runtime.waiting import wait_for
from pytest_vmcontainer.targets.base import SESSION_LABEL
from tests.integration.conftest import (
    ROOT,
    leftovers,
    new_vms_of_run,
    owned_containers,
    running_vms,
)

pytestmark = pytest.mark.vm
SUITE = str(ROOT / "suites" / "test_parity.py")
ARGS = ("-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT),
        "--target=both")


FAILING = """
def test_fails_on_purpose(host):
    assert host.file("/etc/nginx/nginx.conf").exists
    assert False, "this test fails on purpose"
"""


def _pytest(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pytest", *ARGS, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)


def _matrix(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "vmcontainer parity matrix" in line)
    return [line for line in lines[start + 1:] if line.startswith(("test_parity.py",
                                                                    "test_failing.py"))]


def _session_id(output: str, kind: str = "default|container") -> str:
    match = re.search(rf"vmc-([0-9a-z]+)-({kind})", output)
    assert match, output
    return match.group(1)


class Census:
    """Counts, while a run lives, the VM domains and containers of each session. A VM
    restored from a saved state runs under its slot's name (targets.vmsaved), not the
    session's: new domains count for the run when it (``pid``, set once it has started, or
    one of its workers) holds their session's or slot's lock; the other test worker's runs
    start VMs meanwhile."""

    def __init__(self, docker_client: Any) -> None:
        self._client = docker_client
        self.most: dict[str, dict[str, int]] = {}
        self.most_new_vms = 0
        self.pid: int | None = None
        self._before = running_vms()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            counts: dict[str, dict[str, int]] = {}
            new_vms = new_vms_of_run(self.pid, self._before) if self.pid else []
            self.most_new_vms = max(self.most_new_vms, len(new_vms))
            for container in owned_containers(self._client):
                session = container.labels.get(SESSION_LABEL, "")
                counts.setdefault(session, {}).setdefault("container", 0)
                counts[session]["container"] += 1
            for session, by_kind in counts.items():
                seen = self.most.setdefault(session, {})
                for kind, count in by_kind.items():
                    seen[kind] = max(seen.get(kind, 0), count)

    def __enter__(self) -> Census:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.slow
def test_the_parity_suite_serially_and_on_two_workers_gives_one_matrix(
        tmp_path: Path, docker_client: Any, shipped_vm: None, leak_check: None) -> None:
    """The shipped parity suite and a test that fails on purpose, on both targets: serially,
    then on two workers that share one VM and one container. Both runs give the same
    matrix, and each removes its targets after the failing test."""
    failing = tmp_path / "test_failing.py"
    failing.write_text(FAILING)
    serial = _pytest("-n", "0", SUITE, str(failing))
    serial_output, _ = serial.communicate(timeout=1800)
    assert serial.returncode == 1, serial_output  # the failing test, and nothing else
    assert re.search(r"\b2 failed, 24 passed\b", serial_output), serial_output
    assert "DIFFERS" not in serial_output, serial_output
    matrix = _matrix(serial_output)
    assert len(matrix) == 13, matrix
    assert re.match(r"test_parity.py::test_nginx_installed_same_version\s+passed\s+passed",
                    matrix[0]), matrix
    assert any(re.match(r"test_parity.py::test_kernel\s+passed\s+passed.*kernel release "
                        r"differs as expected", line) for line in matrix), matrix
    assert re.match(r"test_failing.py::test_fails_on_purpose\s+failed\s+failed",
                    matrix[-1]), matrix
    assert leftovers(_session_id(serial_output)) == []
    with Census(docker_client) as census:
        parallel = _pytest("-n", "2", SUITE, str(failing))
        census.pid = parallel.pid
        parallel_output, _ = parallel.communicate(timeout=1800)
    assert parallel.returncode == 1, parallel_output
    assert "2 workers" in parallel_output
    session = _session_id(parallel_output, "container")
    assert census.most.get(session) == {"container": 1}, census.most
    assert census.most_new_vms == 1
    assert _matrix(parallel_output) == matrix
    assert leftovers(session) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_during_bring_up_under_xdist_leaves_nothing(
        docker_client: Any, shipped_vm: None, leak_check: None, sig: int) -> None:
    before = running_vms()
    run = _pytest("-n", "2", SUITE)
    try:
        domain = wait_for(lambda: next(iter(new_vms_of_run(run.pid, before)), None),
                          timeout=600, what="the run's VM domain")
        run.send_signal(sig)  # to the controller, by its id: as a CI cancellation does
        output, _ = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 2, output  # pytest's "interrupted"
    assert leftovers(domain.split("-")[1]) == [], output
    assert not [d for d in libvirt.domain_names() if d == domain]
