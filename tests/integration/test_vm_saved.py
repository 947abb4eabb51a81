"""Saved running VMs on real libvirt: a restored VM gives the booted VM's parity values, and a
run killed while its restored VM lives leaves nothing the next run's sweep does not remove."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer import lifecycle, targets
from pytest_vmcontainer.host import libvirt
from pytest_vmcontainer.runtime.waiting import wait_for
from pytest_vmcontainer.targets import vmcache, vmsaved
from tests.integration.conftest import ROOT, leftovers, run_process

pytestmark = pytest.mark.vm
SUITE = str(ROOT / "suites" / "test_parity.py")


def _parity_run(report: Path, *args: str) -> tuple[str, dict[tuple[str, str], Any]]:
    run = run_process([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target=vm",
                       f"--vmc-report={report}", *args, SUITE], ROOT, 1800)
    assert run.returncode == 0, run.stdout
    rows = json.loads((report / "comparison.json").read_text())["parity"]["rows"]
    values = {(row["test"], check): seen["vm"] for row in rows
              for check, seen in row["values"].items()}
    return run.stdout, values


def test_a_restored_vm_gives_the_parity_values_of_a_booted_one(tmp_path: Path,
                                                              shipped_vm: None,
                                                              leak_check: None) -> None:
    booted_output, booted = _parity_run(tmp_path / "booted", "--vmc-no-vm-restore")
    assert re.search(r"vm: vmc-\w+-default \(.*, from the VM cache\)", booted_output)
    assert "restoring the saved VM" not in booted_output
    restored_output, restored = _parity_run(tmp_path / "restored")
    assert re.search(r"vm: vmc-s[0-9a-f]{12}n\d+-default \(.*restored from the VM cache\)",
                     restored_output), restored_output
    assert len(booted) >= 12 and restored == booted


def test_a_killed_runs_restored_vm_goes_with_the_next_sweep(tmp_path: Path,
                                                             shipped_vm: None,
                                                             leak_check: None) -> None:
    started = tmp_path / "started"
    (tmp_path / "test_wait.py").write_text(
        "import pathlib, time\n\n\ndef test_wait(vm):\n"
        f"    pathlib.Path({str(started)!r}).write_text(vm.resource_name)\n"
        "    time.sleep(600)\n")
    sessions_before = {path.name for path in lifecycle.paths.sessions_dir().iterdir()}
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                            "--target=vm", f"--vagrantfile={ROOT / 'Vagrantfile'}",
                            f"--vmc-provision-inputs={ROOT / 'fixtures'}", "test_wait.py"],
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL)
    try:
        wait_for(started.exists, timeout=900, what="the test on the VM")
        run.send_signal(signal.SIGKILL)  # by its id: no teardown runs
        run.wait(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    domain = started.read_text()
    slot_id = domain.split("-")[1]
    assert vmsaved.is_slot_id(slot_id), domain  # the VM was restored, under its slot's name
    assert domain in libvirt.domain_names()  # left by the killed run...
    # ...and found by the sweep, of the killed run's session and slot only: this test
    # touches no other run's state.
    killed = {path.name for path in lifecycle.paths.sessions_dir().iterdir()} - sessions_before
    assert slot_id in killed, killed
    removed = lifecycle.sweep(targets.default_leftovers(), only=killed)
    assert f"libvirt {domain}" in removed, removed
    assert leftovers(slot_id) == []
    # The saved state itself stays for the next run.
    assert any(vmsaved.Slot(key.name, slot_id).saved()
               for key in (vmcache.cache_dir() / "saved").iterdir())
