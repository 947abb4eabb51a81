"""Faults a CI machine has, performed for real: dockerd restarted during a run's tests and
between two runs; libvirtd and virtlogd restarted during a VM's tests and during its start.

Restarting dockerd stops every container on the machine (and libvirtd drops every client's
connection), so these run only where the machine is the suite's own: under CI (``CI=true``,
as ``.ci/run`` has it) or with ``VMC_TEST_FAULTS=1``. They need daemons that ``setup``
started (not ones systemd manages).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.host import setup
from pytest_vmcontainer.host.bases import DOCKER_BASE_IMAGE
from pytest_vmcontainer.runtime.waiting import wait_for
from pytest_vmcontainer.targets import vmcache, vmsaved
from tests.integration.conftest import (
    ROOT,
    LiveOutput,
    leftovers,
    run_cli,
    run_process,
    start_process,
    stop_process,
)

pytestmark = [pytest.mark.skipif(
    os.environ.get("CI") != "true" and os.environ.get("VMC_TEST_FAULTS") != "1",
    reason="restarts the engines' daemons, which stops every container here: set "
           "VMC_TEST_FAULTS=1 (CI sets CI=true)"),
    pytest.mark.exclusive]  # no other test may use a daemon while it restarts


def _restart(daemon: str) -> None:
    """SIGTERM a daemon that setup started (by the pid it wrote), then run setup again."""
    if setup._systemd_running():
        pytest.skip(f"{daemon} is systemd's here; this test restarts only one setup started")
    pid = int(Path(f"/run/{'docker' if daemon == 'dockerd' else daemon}.pid").read_text())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == daemon
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=120, what=f"{daemon} to stop")
    started = run_cli("setup")
    assert started.returncode == 0, started.stderr


def _restart_dockerd() -> None:
    _restart("dockerd")
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


TWO_TESTS = """
import pathlib
import time


def test_first({kind}):
    pathlib.Path({up!r}).write_text({kind}.resource_name)
    deadline = time.monotonic() + 300
    while not pathlib.Path({go!r}).exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # the outer test performs the fault meanwhile


def test_second({kind}):
    assert {kind}.run("true").rc == 0
"""
SHIPPED = {"container": f"--dockerfile={ROOT / 'Dockerfile'}",
           "vm": f"--vagrantfile={ROOT / 'Vagrantfile'}"}


def _fault_between_two_tests(directory: Path, kind: str, fault: Callable[[], None],
                             timeout: float) -> tuple[int, str, str]:
    """A run of the shipped files with two tests; ``fault`` happens while the first waits.
    Returns the run's exit status, its output and the target's name."""
    up, go = directory / "up", directory / "go"
    (directory / "test_two.py").write_text(TWO_TESTS.format(kind=kind, up=str(up), go=str(go)))
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--target={kind}",
         SHIPPED[kind], f"--vmc-provision-inputs={ROOT / 'fixtures'}", "test_two.py"],
        cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL)
    try:
        wait_for(up.exists, timeout=timeout, what="the first test to start")
        fault()
        go.write_text("")
        output, _ = run.communicate(timeout=timeout)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    return run.returncode, output, up.read_text()


def test_dockerd_restarted_while_the_tests_run(tmp_path: Path, docker_base: None,
                                               own_home: Path, leak_check: None) -> None:
    """The container stops with dockerd: the next test fails with one line that says so, and
    teardown still removes the container."""
    returncode, output, name = _fault_between_two_tests(tmp_path, "container",
                                                        _restart_dockerd, 300)
    assert returncode == 1, output
    assert re.search(rf"container target: the container {name} is exited \(exit code -?\d+ at "
                     r"[\d\-T:]+ UTC, because its engine restarted \(dockerd started "
                     r"[\d\-T:]+ UTC\)\): the run does not restart targets", output), output
    assert "1 passed" in output and "1 failed" in output, output
    assert leftovers(name.removeprefix("vmc-").removesuffix("-container")) == [], output


def _fault_once_it_says(argv: list[str], directory: Path, says: Callable[[str], bool],
                        fault: Callable[[subprocess.Popen[str], LiveOutput], None],
                        timeout: float, env: dict[str, str] | None = None) -> tuple[int, str]:
    """A run started in ``directory``; ``fault`` as soon as a line of its output ``says`` what
    it waits for (polled every 50 ms: some steps last a second). Its exit status and output."""
    run = start_process(argv, directory, env={"PYTHONUNBUFFERED": "1", **(env or {})},
                        merge_stderr=True)
    output = LiveOutput(run)
    try:
        wait_for(lambda: output.has(says) or run.poll() is not None, timeout=timeout,
                 interval=0.05, max_interval=0.05, what="the run's line")
        fault(run, output)
        run.wait(timeout=timeout)
    finally:
        stop_process(run)
    return run.returncode, output.text()


def test_dockerd_restarted_during_a_build(tmp_path: Path, docker_base: None, own_home: Path,
                                          leak_check: None) -> None:
    """A build step dies with dockerd: the run fails with one line that names the engine, not
    the Dockerfile, and leaves nothing (the build's container goes with the engine)."""
    (tmp_path / "Dockerfile").write_text(
        f"FROM {DOCKER_BASE_IMAGE}\nRUN sleep 300 # {secrets.token_hex(8)}\n"
        'CMD ["sleep", "infinity"]\n')
    (tmp_path / "test_up.py").write_text("def test_up(container):\n    assert container.address\n")
    returncode, text = _fault_once_it_says(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target=container"],
        tmp_path, lambda line: "Step" in line and ": RUN sleep 300" in line,
        lambda _run, _output: _restart_dockerd(), 300)
    assert returncode == 1, text
    assert re.search(rf"container target: the Docker engine stopped during the build of "
                     rf"{tmp_path / 'Dockerfile'} \(dockerd (started again at [\d\-T:]+ UTC|not "
                     r"running now); the build said: .*\): run again once dockerd answers",
                     text), text
    assert "fix the step" not in text and "Traceback" not in text, text


def _restart_libvirt_daemons() -> None:
    _restart("libvirtd")
    _restart("virtlogd")


@pytest.mark.vm
def test_libvirtd_and_virtlogd_restarted_while_the_tests_run(tmp_path: Path, shipped_vm: None,
                                                            leak_check: None) -> None:
    """libvirt keeps running domains across a restart of its daemons: the VM's tests go on,
    and teardown removes the domain and its volumes through the restarted libvirtd."""
    returncode, output, name = _fault_between_two_tests(tmp_path, "vm",
                                                        _restart_libvirt_daemons, 900)
    assert returncode == 0, output
    assert "2 passed" in output, output
    assert leftovers(name.removeprefix("vmc-").removesuffix("-default")) == [], output


def _stat(pid: int) -> tuple[str, int]:
    """(name, parent pid) from /proc; ("", 0) once it has ended."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", 0
    return text[text.index("(") + 1:text.rindex(")")], int(text[text.rindex(")") + 2:].split()[1])


def _virsh_of(run: subprocess.Popen[str], verbs: frozenset[str] = frozenset()) -> bool:
    """A virsh that the run (or a process it started) has running now; with ``verbs``, one
    whose command is one of them."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or _stat(int(entry.name))[0] != "virsh":
            continue
        try:
            argv = set((entry / "cmdline").read_bytes().decode(errors="replace").split("\0"))
        except OSError:
            continue
        if verbs and not verbs & argv:
            continue
        parent = int(entry.name)
        while parent > 1:
            parent = _stat(parent)[1]
            if parent == run.pid:
                return True
    return False


Reached = Callable[[subprocess.Popen[str], LiveOutput], bool]


@dataclass(frozen=True)
class _Timing:
    """When a daemon is held (it stops answering) and when it goes."""

    says: Callable[[str], bool]  # the run's line after which the test acts
    reached: Reached  # the run now waits on a call that needs the daemon
    gate: Path | None = None  # a virsh gate (``_virsh_gate``): held once its call comes


def _virsh_gate(directory: Path, verb: str) -> Path:
    """A ``virsh`` for the front of the run's PATH: its first call with ``verb`` writes
    ``reached`` and waits (at most 10 minutes) for ``go`` before it runs the real virsh; other
    calls run it at once. The test holds the daemon in between, so the fault lands inside
    that call however late this process is scheduled: reacting to the step's line instead
    missed the step's libvirt calls (a second long) once, under xdist on two busy cores."""
    gate = directory / "virsh-gate"
    gate.mkdir()
    real = shutil.which("virsh")
    assert real, "virsh is not installed"
    script = gate / "virsh"
    script.write_text(
        "#!/bin/sh\n"
        f'for arg in "$@"; do [ "$arg" = {verb} ] && [ ! -e {gate}/go ] && {{\n'
        f"  : > {gate}/reached\n"
        f"  n=0; while [ ! -e {gate}/go ] && [ $n -lt 6000 ]; do sleep 0.1; n=$((n+1)); done\n"
        "}; done\n"
        f'exec {real} "$@"\n')
    script.chmod(0o755)
    return gate


def _restart_under(daemon: str, timing: _Timing) -> Callable[
        [subprocess.Popen[str], LiveOutput], None]:
    """The daemon stops answering (SIGSTOP) until the run waits on a call that needs it
    (``timing.reached``), then goes away and is started again as ``_restart`` does: the
    fault lands inside the run's step, always. libvirtd gets SIGTERM. virtlogd is killed
    (SIGKILL), as a crash: on SIGTERM it first answers the call it holds, and the start
    goes on."""

    def restart(run: subprocess.Popen[str], output: LiveOutput) -> None:
        gate = timing.gate
        if gate is not None:
            wait_for(lambda: (gate / "reached").exists() or run.poll() is not None,
                     timeout=600, interval=0.05, max_interval=0.2, what="the gated virsh call")
        pid = int(Path(f"/run/{daemon}.pid").read_text())
        assert Path(f"/proc/{pid}/comm").read_text().strip() == daemon
        os.kill(pid, signal.SIGSTOP)
        try:
            if gate is not None:
                (gate / "go").write_text("")
            wait_for(lambda: timing.reached(run, output) or run.poll() is not None,
                     timeout=60, interval=0.05, max_interval=0.2,
                     what=f"the run's call that needs {daemon}")
            os.kill(pid, signal.SIGKILL if daemon == "virtlogd" else signal.SIGTERM)
        finally:
            os.kill(pid, signal.SIGCONT)  # a SIGTERM is handled once it runs again
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=120, what=f"{daemon} to stop")
        started = run_cli("setup")
        assert started.returncode == 0, started.stderr

    return restart


def _when(daemon: str, start: str, directory: Path) -> _Timing:
    """The run's line at which the daemon is held, and when the run waits on it.

    virtlogd is held from the run's first line: only a domain's start calls it (libvirtd opens
    the new QEMU's log through it), a fraction of a second after the step's line, too soon
    to hold it from here. libvirtd, which every virsh call needs, is held at the step's own
    virsh start or restore, through a gate. ``vagrant up`` (vagrant-libvirt calls libvirt from
    Ruby) is seen by its line "Starting domain.", after which it waits on libvirtd for the
    guest's address: libvirtd goes then."""
    first_line = "test session starts"
    if start.startswith("vagrant up"):
        if daemon == "libvirtd":
            return _Timing(lambda line: "Starting domain." in line, lambda _run, _output: True)
        return _Timing(lambda line: first_line in line, lambda _run, output: output.has(
            lambda line: "Starting domain." in line))
    if daemon == "virtlogd":
        verbs = frozenset({"start", "restore"})
        return _Timing(lambda line: first_line in line,
                       lambda run, _output: _virsh_of(run, verbs))
    verb = "restore" if start.startswith("restoring") else "start"
    return _Timing(lambda line: first_line in line,
                   lambda run, _output: _virsh_of(run, frozenset({verb})),
                   _virsh_gate(directory, verb))


def _saved_states() -> dict[Path, int]:
    return {state: state.stat().st_size
            for state in (vmcache.cache_dir() / "saved").glob("*/*/state.sav")}


def _damaged() -> list[str]:
    """Every cache entry and saved VM whose seal no longer matches its files, by what is
    wrong: the checks a run makes before it trusts one, made here directly."""
    entries = [f"{entry.key}: {entry.damage()}" for entry in vmcache.entries()
               if entry.committed() and entry.damage() is not None]
    slots = [vmsaved.Slot(state.parent.parent.name, state.parent.name) for state in _saved_states()]
    return entries + [f"{slot.id}: {slot.damage()}" for slot in slots
                      if slot.committed() and slot.damage() is not None]


@pytest.mark.vm
@pytest.mark.parametrize("daemon", ["libvirtd", "virtlogd"])
@pytest.mark.parametrize(("start", "options", "step"), [
    ("booting from the VM cache", ["--vmc-no-vm-restore"], r"the start of vmc-\w+-default"),
    ("restoring the saved VM", [], r"the restore of the saved VM s\w+"),
    ("vagrant up", ["--vmc-no-vm-cache"], r"the start of vmc-\w+-default"),
])
def test_a_libvirt_daemon_restarted_during_a_vms_start(
        tmp_path: Path, shipped_vm: None, leak_check: None, start: str, options: list[str],
        step: str, daemon: str) -> None:
    """libvirtd or virtlogd restarts while the VM boots from the cache, while its saved state
    is restored, or in ``vagrant up`` (the cache off: it would provision next, but fails
    first): the run fails with one line that names the daemon, not the project;
    teardown removes what the start made; the cache entry and the saved VMs stay whole. Where
    the fault hit a restore, the next run restores that saved VM as before; elsewhere no
    saved VM was read, and their seals are checked directly (a run costs 10 s alone)."""
    (tmp_path / "test_up.py").write_text("def test_up(vm):\n    assert vm.address\n")
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target=vm",
            SHIPPED["vm"], f"--vmc-provision-inputs={ROOT / 'fixtures'}"]
    states = _saved_states()
    timing = _when(daemon, start, tmp_path)
    gated = {} if timing.gate is None else {
        "PATH": f"{timing.gate}{os.pathsep}{os.environ['PATH']}"}
    returncode, text = _fault_once_it_says([*argv, *options], tmp_path, timing.says,
                                           _restart_under(daemon, timing), 600, gated)
    assert returncode == 1, text
    assert re.search(rf"vm target: {daemon} stopped during {step} \({daemon} (started again "
                     r"at [\d\-T:]+ UTC|not running now); the step said: .*\): run again once "
                     rf"{daemon} answers", text), text
    assert "restore failed, booting instead" not in text, text  # the saved VM is not blamed
    session = re.search(r"vmc-(\w+)-default", text)
    assert session and leftovers(session.group(1)) == [], text
    assert _saved_states() == states  # nothing saved was lost or half-written
    assert _damaged() == []
    if not start.startswith("restoring"):
        return
    again = run_process(argv, tmp_path, timeout=600)
    assert again.returncode == 0, again.stdout
    assert "restored from the VM cache" in again.stdout, again.stdout
