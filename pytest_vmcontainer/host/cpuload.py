"""How busy the host was with work that is not the run's own: a shared CI machine's noisy
neighbour, watched over each timed measurement.

A window reads every process's CPU time at its start and at its end (``/proc/<pid>/stat``:
the process's own time and that of the children it has reaped). Foreign is what ran
outside the run: every process except this one and its descendants, the engines' daemons
(dockerd, containerd, libvirtd, virtlogd) and their descendants, the containers (everything
under a containerd shim) and QEMU. Kernel threads are not counted: they also do the run's
own I/O. Steal time (CPU a hypervisor gave to its other guests) comes from ``/proc/stat``.

What this cannot tell apart: another run's VM or container counts as the run's own (its
QEMU and shims look the same), and so does a neighbour's work done by the engines' daemons.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

PROC = Path("/proc")
# Foreign work averaging a quarter of a core over a measurement moves its figures by more
# than the rows' 10% margin on this 2-core class of machine.
BUSY_CORES = 0.25
ENGINES = frozenset({"dockerd", "containerd", "libvirtd", "virtlogd", "virtqemud"})
KTHREADD = 2


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    name: str
    cpu_ticks: int  # user + system, its own and its reaped children's


def _parse_stat(text: str) -> Process:
    """One ``/proc/<pid>/stat`` line (the name may hold spaces and parentheses)."""
    head, _, tail = text.rpartition(")")
    pid, _, name = head.partition(" (")
    fields = tail.split()  # fields[0] is the state, the third field of the line
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return Process(int(pid), int(fields[1]), name, utime + stime + cutime + cstime)


def processes(proc: Path = PROC) -> dict[int, Process]:
    """Every process now (those that end while they are read are left out)."""
    found = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = _parse_stat((entry / "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue
    return found


def _is_root_of_ours(process: Process, me: int) -> bool:
    return (process.pid == me or process.name in ENGINES
            or process.name.startswith(("containerd-shim", "qemu-system")))


def ours(snapshot: dict[int, Process], me: int) -> set[int]:
    """The run's own processes: ``me``, the engines, the containers and QEMU, with every
    descendant of them."""
    children: dict[int, list[int]] = {}
    for process in snapshot.values():
        children.setdefault(process.ppid, []).append(process.pid)
    found = {pid for pid, process in snapshot.items() if _is_root_of_ours(process, me)}
    pending = list(found)
    while pending:
        for child in children.get(pending.pop(), ()):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def foreign_ticks(before: dict[int, Process], after: dict[int, Process], me: int) -> int:
    """CPU ticks that processes outside the run used between the two snapshots."""
    own = ours(after, me) | ours(before, me)
    total = 0
    for pid, process in after.items():
        if pid in own or KTHREADD in (pid, process.ppid):
            continue
        earlier = before.get(pid)
        same = earlier is not None and earlier.name == process.name  # not a reused pid
        total += process.cpu_ticks - (earlier.cpu_ticks if same and earlier else 0)
    return max(total, 0)


def steal_ticks(proc: Path = PROC) -> int:
    """The host's steal time so far (the eighth value of the ``cpu`` line of /proc/stat)."""
    for line in (proc / "stat").read_text().splitlines():
        if line.startswith("cpu "):
            values = line.split()[1:]
            return int(values[7]) if len(values) > 7 else 0
    return 0


@dataclass(frozen=True)
class HostLoad:
    window_s: float
    cores: int
    foreign_cores: float  # average CPU other processes used, in cores
    steal_cores: float

    @property
    def busy(self) -> bool:
        return self.foreign_cores >= BUSY_CORES or self.steal_cores >= BUSY_CORES

    def text(self) -> str:
        steal = f", {self.steal_cores:.2f} stolen by the hypervisor" if self.steal_cores else ""
        return (f"other processes used {self.foreign_cores:.2f} of {self.cores} cores over "
                f"{self.window_s:.0f} s{steal}")

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "busy": self.busy}


class Window:
    """``with Window() as window: ...`` then ``window.load``: the host's foreign load over the
    block."""

    def __init__(self, proc: Path = PROC, me: int | None = None) -> None:
        self.proc = proc
        self.me = os.getpid() if me is None else me
        self.load: HostLoad | None = None

    def __enter__(self) -> Window:
        self._started = time.monotonic()
        self._before = processes(self.proc)
        self._steal = steal_ticks(self.proc)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        ticks = os.sysconf("SC_CLK_TCK")
        foreign = foreign_ticks(self._before, processes(self.proc), self.me)
        steal = max(steal_ticks(self.proc) - self._steal, 0)
        self.load = HostLoad(round(elapsed, 3), os.cpu_count() or 1,
                             round(foreign / ticks / elapsed, 3), round(steal / ticks / elapsed, 3))
