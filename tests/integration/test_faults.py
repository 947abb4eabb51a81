"""Faults a CI machine has, performed for real: here, dockerd restarted between two runs.

Restarting dockerd stops every container on the machine, so this runs only where the machine
is the suite's own: under CI (``CI=true``, as ``.ci/run`` has it) or with
``VMC_TEST_FAULTS=1``. It needs a dockerd that ``setup`` started (not one systemd manages).
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.host import setup
from pytest_vmcontainer.runtime.waiting import wait_for
from tests.integration.conftest import ROOT, leftovers, run_cli

DOCKER_PID_FILE = Path("/var/run/docker.pid")

pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and os.environ.get("VMC_TEST_FAULTS") != "1",
    reason="restarts dockerd, which stops every container here: set VMC_TEST_FAULTS=1 "
           "(CI sets CI=true)")


def _restart_dockerd() -> None:
    """SIGTERM the dockerd that setup started (by the pid it wrote), then setup again."""
    if setup._systemd_running():
        pytest.skip("dockerd is systemd's here; this test restarts only one setup started")
    pid = int(DOCKER_PID_FILE.read_text().strip())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=120, what="dockerd to stop")
    started = run_cli("setup")
    assert started.returncode == 0, started.stderr
    assert setup.docker_answers()


def test_dockerd_restarted_between_two_runs(pytester: pytest.Pytester, docker_client: Any,
                                            docker_base: None, own_home: Path,
                                            leak_check: None) -> None:
    """A kept container stops with dockerd; the next run comes up on the restarted engine,
    ``list`` shows the stopped one, and ``destroy`` removes it."""
    pytester.makepyfile(test_up="def test_up(container):\n    assert container.address\n")
    kept = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--target=container", "--vmc-keep=always",
        f"--dockerfile={ROOT / 'Dockerfile'}", f"--vmc-provision-inputs={ROOT / 'fixtures'}")
    kept.assert_outcomes(passed=1)
    match = re.search(r"vmc-([0-9a-z]+)-container", kept.stdout.str())
    assert match, kept.stdout.str()
    session_id = match.group(1)
    try:
        _restart_dockerd()
        container = docker_client.containers.get(f"vmc-{session_id}-container")
        assert container.status == "exited", container.status

        again = run_cli("up", "--target=container")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "HTTP 200" in again.stdout + again.stderr

        listed = run_cli("list")
        assert re.search(rf"{session_id}\s+container\s+kept\s+the container "
                         rf"vmc-{session_id}-container is exited .*because its engine "
                         r"restarted", listed.stdout), listed.stdout
    finally:
        destroyed = run_cli("destroy", "--session", session_id)
    assert destroyed.returncode == 0, destroyed.stderr
    assert leftovers(session_id) == []
