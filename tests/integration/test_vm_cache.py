"""The provisioned-VM cache on real Vagrant/libvirt: a fresh VM from the cache (restored from the
state saved right after provisioning, then booted and saved again once that state is
damaged), a damaged saved state or entry never trusted, and a run
interrupted once it has found its entry damaged leaves no entry, whole or half. (That
changed inputs never hit an old entry is the key's unit test:
``test_the_vm_cache_key_follows_every_input``.)

The project's provisioner is trivial (a page served by the box's own python3, enabled at
boot): this test is about caching, not apt.
"""

from __future__ import annotations

import re
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vmcontainer.host import bases as boxes
from pytest_vmcontainer.host import libvirt
from pytest_vmcontainer.runtime.waiting import wait_for
from pytest_vmcontainer.targets import vmcache
from tests.integration.conftest import (
    RUN_HOME,
    LiveOutput,
    leftovers,
    page_project,
    run_process,
    start_process,
    stop_process,
)

pytestmark = [pytest.mark.vm, pytest.mark.slow]  # several runs each, or a provisioning

TESTS = """
import pathlib

from pytest_vmcontainer.runtime.waiting import http_get


def test_writes_a_file(vm):
    assert vm.run("sudo touch /var/tmp/made-by-an-earlier-run").rc == 0


def test_runs_the_plain_cpu_model_under_emulation(vm):
    # Under TCG the plumbing asks for QEMU's qemu64, not libvirt's host-model (an EPYC here,
    # whose features the emulator runs slowly); the first run's domain, which the cache
    # entry keeps, and the domains booted from it, alike.
    model = vm.run("grep -m1 '^model name' /proc/cpuinfo").stdout
    assert ("QEMU Virtual CPU" in model) == (vm.mode == "tcg"), model
    # with RDRAND added, which fills the guest kernel's random pool at boot
    assert vm.run("grep -qw rdrand /proc/cpuinfo").rc == 0 or vm.mode != "tcg"


def test_fresh(vm):
    assert http_get(vm.url("/", port=8000)).status == 200  # started, and enabled at boot
    (pathlib.Path(__file__).parent / "seen.txt").open("a").write(
        vm.resource_name + " " + str(vm.run("test -e /var/tmp/made-by-an-earlier-run").rc)
        + " " + vm.origin + "\\n")
"""


def _run(project: Path, *tests: str) -> subprocess.CompletedProcess[str]:
    return run_process([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target=vm",
                        *tests], project, 1800)


def _write_random_bytes(path: Path) -> None:
    """What ``dd conv=notrunc`` does: 4 KiB in the middle overwritten, the size unchanged."""
    with open(path, "r+b") as target:
        target.seek(path.stat().st_size // 2)
        target.write(secrets.token_bytes(4096))


def _entries(project: Path) -> set[str]:
    return {entry.key for entry in vmcache.entries()
            if entry.info().get("vagrantfile") == str(project / "Vagrantfile")}


def _project(directory: Path, token: str) -> Path:
    page_project(directory, "pytest-vmcontainer/debian-12", token)
    (directory / "pytest.ini").write_text("[pytest]\n")
    (directory / "test_vm.py").write_text(TESTS)
    return directory


def _run_on_a_full_disk(project: Path, entry: vmcache.Entry) -> subprocess.CompletedProcess[str]:
    """The saved VMs' disk fills up during ``virsh save`` (issue 20, fault 3c): a 32 MiB tmpfs
    over the entry's saved VMs (which hides the good one) makes the run boot, then meet
    ENOSPC. It says so in one line and goes on as booted; the slot keeps nothing half-written,
    and the good saved VM under the mount is untouched."""
    saved = vmcache.saved_dir(entry.key)
    states_before = {state: state.stat().st_size for state in saved.glob("*/state.sav")}
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "vmc-test-small-disk",
                    str(saved)], check=True)
    try:
        run = _run(project, "-k", "fresh")
        left = [str(path) for path in saved.rglob("*")]
    finally:
        subprocess.run(["umount", str(saved)], check=True)
    assert run.returncode == 0, run.stdout
    assert re.search(rf"vm: not saved \(the disk under {re.escape(str(saved))}\S* filled up "
                     r"while writing a saved VM \(\d+\.\d MiB free now, about 512\.0 MiB "
                     r"needed; nothing half-written was kept\): free some space there .*\); it "
                     r"runs on as booted", run.stdout), run.stdout
    assert left == [], left
    assert {state: state.stat().st_size for state in saved.glob("*/state.sav")} \
        == states_before
    return run


def test_a_second_run_starts_a_fresh_vm_from_the_cache(tmp_path: Path, bases: None,
                                                      leak_check: None) -> None:
    token = secrets.token_hex(8)  # inputs of this test only: the first run cannot hit
    project = _project(tmp_path / "project", token)
    try:
        _cache_runs(project, token)
    finally:
        vmcache.remove_entries(_entries(project))  # this test's entries, whatever happened
    assert not _entries(project)


def _cache_runs(project: Path, token: str) -> None:
    first = _run(project)  # provisions; its state saved right after provisioning is kept
    assert first.returncode == 0, first.stdout
    assert re.search(r"vm: vmc-\w+-default \(.*provisioned, then cached as \w+, its saved "
                     r"state kept for later runs\)", first.stdout), first.stdout
    assert len(_entries(project)) == 1
    (entry,) = (vmcache.Entry(key) for key in _entries(project))
    assert not entry.proven  # nothing has booted from it yet

    # The next runs restore the VM as provisioning left it, with no boot: the third finds
    # none of the files that the second run's tests wrote (after the save).
    second = _run(project)  # restored; writes a file in its VM
    third = _run(project, "-k", "fresh")  # restored again, from the same saved state
    for later in (second, third):
        assert later.returncode == 0, later.stdout
        assert "restored from the VM cache" in later.stdout, later.stdout
        assert "vagrant up" not in later.stdout, later.stdout  # no boot
        assert "vagrant vmc-config" not in later.stdout, later.stdout  # the kept config
    assert not entry.proven  # a restore proves no boot: the first boot from it will
    # Random bytes written into the saved state (as a failing disk or a stray dd would):
    # the next run says so, boots from the entry instead (its first boot, which proves it)
    # and saves a good state again.
    states = list(vmcache.saved_dir(entry.key).glob("*/state.sav"))
    assert states, "the first run kept no saved state"
    for state in states:
        _write_random_bytes(state)
    fourth = _run(project, "-k", "fresh")
    assert fourth.returncode == 0, fourth.stdout
    assert re.search(r"vm: the saved VM s\w+ is damaged \(state\.sav was written to after it "
                     r"was sealed\); removed it, booting instead", fourth.stdout), fourth.stdout
    assert "saving the ready VM for later runs" in fourth.stdout, fourth.stdout
    assert entry.proven

    fifth = _run_on_a_full_disk(project, entry)

    seen = [line.split() for line in (project / "seen.txt").read_text().splitlines()]
    assert [rc for _name, rc, *_origin in seen] == ["0", "0", "1", "1", "1"], seen  # a
    # run's VM has the file its own tests made, and none that earlier runs' tests made
    for output in (first.stdout, second.stdout, third.stdout, fourth.stdout, fifth.stdout):
        session = re.search(r"vmc-(\w+)-default", output)
        assert session and leftovers(session.group(1)) == []

    # The entry's image damaged: the next run says so, removes the entry (its saved states
    # with it) and provisions again; Ctrl-C as soon as it says so leaves neither the damaged
    # entry nor a half-written one. (A Ctrl-C during the background write itself is the unit
    # test test_an_interrupt_cancels_the_background_write; a write killed outright is
    # removed by the next run's sweep: test_the_sweep_removes_partial_entries_of_killed_writers.)
    _write_random_bytes(entry.directory / "box.img")
    partials = set(vmcache.cache_dir().glob(".partial-*"))
    damaged = f"vm: the VM cache entry {entry.key} is damaged (box.img was written to after " \
        "it was sealed); removed it, provisioning instead"
    output = _interrupted_once_it_says(project, damaged, "the run to find the damaged entry")
    assert set(vmcache.cache_dir().glob(".partial-*")) <= partials, output
    assert not _entries(project), output  # the damaged one went, no new one was begun
    assert not vmcache.saved_dir(entry.key).exists(), output  # went with the damaged entry
    prefix = libvirt.box_volume_prefix(entry.box_name)  # and its pool volume, though the
    assert not [v for v in libvirt.pool_volumes() if v.startswith(prefix)]  # mtime moved


def _interrupted_once_it_says(project: Path, text: str, what: str) -> str:
    """A run of ``project`` sent SIGINT (by its id, as a terminal's Ctrl-C) as soon as it
    prints ``text``, while it provisions; its output, once it exited 2 and left nothing."""
    run = start_process([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target=vm",
                         "-k", "fresh"], project, env={"PYTHONUNBUFFERED": "1"},
                        merge_stderr=True)
    live = LiveOutput(run)
    try:
        wait_for(lambda: live.has(lambda line: text in line) or run.poll() is not None,
                 timeout=600, what=what)
        run.send_signal(signal.SIGINT)
        run.wait(timeout=600)
    finally:
        stop_process(run)
    output = live.text()
    assert run.returncode == 2 and text in output, output  # interrupted while provisioning
    session = re.search(r"vmc-(\w+)-default", output)
    assert session and leftovers(session.group(1)) == [], output
    return output


def test_a_rebuilt_box_never_serves_the_old_boxs_entries(
        tmp_path: Path, bases: None, own_home: Path, leak_check: None) -> None:
    """Issue 20, fault 5, in a home of its own: an entry made from the box, then the box
    rebuilt under it (the last step of a rebuild, the harness's own ``vagrant box add
    --force`` of the packed box, gives a new box image under the same name). The next run
    provisions again rather than use the old entry, which stays whole for eviction."""
    box_file = boxes.PROJECT_BOX.box_file()  # this home's; the run's own box file, copied
    box_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RUN_HOME / box_file.relative_to(own_home), box_file)
    image = boxes.PROJECT_BOX.box_dir() / "box.img"
    boxes.add_box(boxes.PROJECT_BOX, tmp_path / "box.log")
    project = _project(tmp_path / "project", secrets.token_hex(8))
    first = _run(project, "-k", "fresh")
    assert first.returncode == 0, first.stdout
    assert re.search(r"vm: vmc-\w+-default \(.*provisioned, then cached as \w+", first.stdout)
    (old,) = _entries(project)
    old_image = image.stat()

    boxes.add_box(boxes.PROJECT_BOX, tmp_path / "box.log")  # rebuilt: a new image, same name
    assert (image.stat().st_ino, image.stat().st_mtime_ns) != \
        (old_image.st_ino, old_image.st_mtime_ns)
    # The next run decides before it boots: provisioning (``vagrant up`` with the provisioners)
    # rather than the old entry. Interrupted there, as a Ctrl-C would: it leaves nothing.
    output = _interrupted_once_it_says(project, f"vm: vagrant up {project / 'Vagrantfile'}",
                                       "the run to decide how to start its VM")
    assert "from the VM cache" not in output and "restored" not in output, output
    kept = vmcache.Entry(old)
    assert _entries(project) == {old} and kept.committed() and kept.damage() is None, output
