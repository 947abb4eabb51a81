"""A process killed with SIGKILL while it writes a VM cache entry (issue 20, fault 7): the
entry is never trusted, its copy ends with it, and the next run's sweep (here ``clean``, which
runs the same sweep) removes the partial entry.

The writer is a real process that runs the harness's own entry writer (``entrywrite.Writer``,
what a cold run's background write runs) on a real disk image with a real ``qemu-img``; it is
killed by its id, and no handler of it sees that. A whole run killed with SIGKILL, and the
sweep of its VM, is ``test_vm_saved::test_a_killed_runs_restored_vm_goes_with_the_next_sweep``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from pytest_vmcontainer.runtime.waiting import wait_for
from pytest_vmcontainer.targets import vmcache
from tests.integration.conftest import run_cli, start_process, stop_process

WRITER = """
import sys
from pathlib import Path

from pytest_vmcontainer.targets import entrywrite, vmcache

with entrywrite.Writer(sys.argv[1], None, Path(sys.argv[3])) as writer:
    writer.add_disk(Path(sys.argv[2]))
    writer.commit({}, 10 * 2**30)
"""
KEY = "0123456789abcdef01234567"


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found |= {child, *_descendants(child)}
    return found


def test_a_writer_killed_mid_copy_leaves_no_entry_and_no_copy_running(
        own_home: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as out:  # random: the copy cannot skip it, and takes seconds
        for _ in range(256):
            out.write(os.urandom(2**20))
    writer = start_process([sys.executable, "-c", WRITER, KEY, str(disk), str(tmp_path / "log")],
                           tmp_path)
    partial = vmcache.cache_dir() / f".partial-{KEY}-{writer.pid}"
    try:
        wait_for(lambda: (partial / "box.img").exists() or writer.poll() is not None,
                 timeout=60, interval=0.01, max_interval=0.01, what="the copy to begin")
        assert writer.poll() is None, "the copy ended before it could be killed"
        copying = _descendants(writer.pid)
        assert copying, "the writer runs no copy"
        for pid in copying:  # held: it cannot end by finishing its copy meanwhile
            os.kill(pid, signal.SIGSTOP)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in copying),
                 timeout=10, what="the copy to end with its writer")
    finally:
        stop_process(writer)
        for pid in copying if "copying" in locals() else ():
            if Path(f"/proc/{pid}").exists():  # this test's own, by id: the check failed
                os.kill(pid, signal.SIGKILL)
    assert partial.is_dir()  # the dead writer's, until a sweep
    assert vmcache.lookup(KEY) is None and vmcache.entries() == []  # never trusted

    cleaned = run_cli("clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"removed: vm cache partial {partial.name}" in cleaned.stderr, cleaned.stderr
    assert not partial.exists()
    assert list(vmcache.cache_dir().glob(".partial-*")) == []
