"""Saved running VMs on real libvirt: three runs at once share them (a restored VM gives the
booted VM's parity values), and a run killed while its restored VM lives leaves nothing the
next run's sweep does not remove."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer import lifecycle, targets
from pytest_vmcontainer.host import libvirt, paths
from pytest_vmcontainer.runtime.waiting import wait_for
from pytest_vmcontainer.targets import vmcache, vmsaved
from tests.integration.conftest import (
    ROOT,
    finish_process,
    killed_on_purpose,
    leftovers,
    sessions_held_by,
    start_process,
    stop_process,
)

pytestmark = pytest.mark.vm
SUITE = str(ROOT / "suites" / "test_parity.py")


def _values(report: Path) -> dict[tuple[str, str], Any]:
    rows = json.loads((report / "comparison.json").read_text())["parity"]["rows"]
    return {(row["test"], check): seen["vm"] for row in rows
            for check, seen in row["values"].items()}


# Both of the shipped VM's saved slots: a shipped-VM run on the other worker would take one.
@pytest.mark.shipped_vm_alone
@pytest.mark.slow
def test_three_runs_at_once_two_restore_one_boots_all_give_the_same_values(
        tmp_path: Path, shipped_vm: None, leak_check: None) -> None:
    """Three runs of the shipped parity suite start together: two restore the saved VM (one
    slot each), the third finds both slots taken and boots from the cache. All pass, the
    restored VMs give exactly the booted one's parity values, and each run removes only its
    own VM. (One boot serves both claims: concurrent runs share the cache safely, and a
    restored VM is the booted one's equal.)"""
    runs = [start_process(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target=vm",
         f"--vmc-report={tmp_path / f'run{number}'}", SUITE], ROOT, merge_stderr=True)
        for number in range(3)]
    try:
        outputs = [finish_process(run, 1200)[0] for run in runs]
    finally:
        for run in runs:
            stop_process(run)  # the others too, when one failed; by its id, its teardown
            # removes its VM
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output
    lines = [re.search(r"vm: (vmc-\w+-default) \(.*, ((?:restored )?from the VM cache)\)",
                       output) for output in outputs]
    assert all(lines), outputs
    seen = sorted((match.group(2), match.group(1)) for match in lines if match)
    assert [origin for origin, _name in seen] == [
        "from the VM cache", "restored from the VM cache", "restored from the VM cache"], seen
    assert len({name for _origin, name in seen}) == 3, seen
    booted = outputs[next(i for i, m in enumerate(lines) if m and m.group(2).startswith("from"))]
    assert "restoring the saved VM" not in booted, booted
    values = [_values(tmp_path / f"run{number}") for number in range(3)]
    assert len(values[0]) >= 12 and values[0] == values[1] == values[2], values
    for _origin, name in seen:
        assert leftovers(name.removeprefix("vmc-").removesuffix("-default")) == []


# The killed run's slot must stay free until this test's sweep: a shipped-VM run on the other
# worker would take it (and, before the sweep held the locks it judged, lost its VM to it).
@pytest.mark.shipped_vm_alone
def test_a_killed_runs_restored_vm_goes_with_the_next_sweep(tmp_path: Path,
                                                             shipped_vm: None,
                                                             leak_check: None) -> None:
    started = tmp_path / "started"
    (tmp_path / "test_wait.py").write_text(
        "import pathlib, time\n\n\ndef test_wait(vm):\n"
        f"    pathlib.Path({str(started)!r}).write_text(vm.resource_name)\n"
        "    time.sleep(600)\n")
    sessions_before = {path.name for path in paths.sessions_dir().iterdir()}
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                            "--target=vm", f"--vagrantfile={ROOT / 'Vagrantfile'}",
                            f"--vmc-provision-inputs={ROOT / 'fixtures'}", "test_wait.py"],
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL)
    with contextlib.ExitStack() as until_swept:
        try:
            wait_for(started.exists, timeout=900, what="the test on the VM")
            until_swept.enter_context(killed_on_purpose(sessions_held_by(run.pid)))
            run.send_signal(signal.SIGKILL)  # by its id: no teardown runs
            run.wait(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
        _swept_alone(started.read_text(), sessions_before)


def _swept_alone(domain: str, sessions_before: set[str]) -> None:
    """The killed run's VM, found and removed by a sweep of its sessions alone."""
    slot_id = domain.split("-")[1]
    assert vmsaved.is_slot_id(slot_id), domain  # the VM was restored, under its slot's name
    assert domain in libvirt.domain_names()  # left by the killed run...
    # ...and found by the sweep, of the killed run's session and slot only: this test
    # touches no other run's state.
    killed = {path.name for path in paths.sessions_dir().iterdir()} - sessions_before
    assert slot_id in killed, killed
    removed = lifecycle.sweep(targets.default_leftovers(), only=killed)
    assert f"libvirt {domain}" in removed, removed
    assert leftovers(slot_id) == []
    # The saved state itself stays for the next run.
    assert any(vmsaved.Slot(key.name, slot_id).saved()
               for key in (vmcache.cache_dir() / "saved").iterdir())
