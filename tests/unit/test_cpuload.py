"""What counts as the host's foreign load, on process tables written as /proc lays them out."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vmcontainer.host import cpuload

ME = 100


def _stat(pid: int, name: str, ppid: int, ticks: int) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime ...; the ticks split over the four CPU fields
    return (f"{pid} ({name}) S {ppid} 1 1 0 -1 0 0 0 0 0 {ticks - 3} 1 1 1 20 0 1 0 5 "
            "1000 100 0\n")


def _proc(directory: Path, table: list[tuple[int, str, int, int]], steal: int) -> Path:
    for pid, name, ppid, ticks in table:
        (directory / str(pid)).mkdir(parents=True, exist_ok=True)
        (directory / str(pid) / "stat").write_text(_stat(pid, name, ppid, ticks))
    (directory / "stat").write_text(f"cpu  10 0 10 500 0 0 0 {steal} 0 0\ncpu0 1 0 1 1\n")
    return directory


TABLE = [
    (1, "init", 0, 10), (2, "kthreadd", 0, 0), (50, "kworker/0:1", 2, 10),
    (ME, "pytest", 1, 100), (101, "vagrant", ME, 50),  # the run and its children
    (200, "dockerd", 1, 10), (300, "containerd-shim", 1, 5), (301, "nginx", 300, 5),
    (400, "qemu-system-x86", 1, 500),  # daemonized QEMU: its parent is init
    (500, "bash", 1, 1), (501, "apt-get", 500, 5),  # a neighbour's job
    (600, "sh (weird) name", 1, 1),
]


def test_the_runs_own_processes_are_its_tree_the_engines_containers_and_qemu() -> None:
    snapshot = {pid: cpuload.Process(pid, ppid, name, ticks) for pid, name, ppid, ticks in TABLE}
    assert cpuload.ours(snapshot, ME) == {ME, 101, 200, 300, 301, 400}


def test_foreign_load_is_what_ran_outside_the_run(tmp_path: Path) -> None:
    before = cpuload.processes(_proc(tmp_path / "a", TABLE, steal=0))
    later = [(pid, name, ppid, ticks * 3) for pid, name, ppid, ticks in TABLE]  # all busier
    later += [(502, "cc1", 501, 40)]  # a child the neighbour started meanwhile
    after = cpuload.processes(_proc(tmp_path / "b", later, steal=0))
    assert after[600].name == "sh (weird) name" and after[600].ppid == 1
    # init 20 more, the neighbour's bash 2, apt-get 10, its new child all 40, the odd name 2;
    # not the run, its engines, containers, QEMU, nor kernel threads
    assert cpuload.foreign_ticks(before, after, ME) == 20 + 2 + 10 + 40 + 2


def test_a_reused_pid_counts_from_zero() -> None:
    before = {7: cpuload.Process(7, 1, "old", 900)}
    after = {7: cpuload.Process(7, 1, "new", 30)}
    assert cpuload.foreign_ticks(before, after, ME) == 30


@pytest.mark.parametrize(("foreign", "steal", "busy"), [
    (0.0, 0.0, False), (cpuload.BUSY_CORES - 0.01, 0.0, False), (cpuload.BUSY_CORES, 0.0, True),
    (0.0, cpuload.BUSY_CORES, True)])
def test_busy_from_a_quarter_of_a_core(foreign: float, steal: float, busy: bool) -> None:
    load = cpuload.HostLoad(10.0, 2, foreign, steal)
    assert load.busy is busy and load.as_dict()["busy"] is busy


def test_a_window_over_a_proc_table(tmp_path: Path) -> None:
    proc = _proc(tmp_path, TABLE, steal=5)
    with cpuload.Window(proc, me=ME) as window:
        (proc / "501" / "stat").write_text(_stat(501, "apt-get", 500, 5 + 100))
        (proc / "stat").write_text("cpu  10 0 10 500 0 0 0 5 0 0\n")
    assert window.load is not None
    assert window.load.foreign_cores > 0 and window.load.steal_cores == 0
    assert window.load.cores >= 1
