"""The project's own lanes on two xdist workers (tests/xdistlanes.py): the quick lanes go to one
worker as one unit, the VM tests one at a time to whichever worker is free. Drives the real
scheduler with stand-in workers: which tests each is sent is what this checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import xdistlanes

QUICK = [f"tests/unit/test_a.py::test_{n}" for n in range(6)] + \
    ["tests/integration/test_docker.py::test_container"]
VM = [f"tests/integration/test_vm.py::test_{n}" for n in range(6)]
# Exclusive tests, in collection order: one at the end of the quick lanes, one in the VM lane.
EXCLUSIVE = ["tests/integration/test_docker.py::test_restart_dockerd",
             "tests/integration/test_vm.py::test_timed"]
COLLECTION = QUICK + EXCLUSIVE[:1] + VM[:3] + EXCLUSIVE[1:] + VM[3:]


class StandInWorker:
    """What the scheduler calls on a worker: it is sent test indexes, and told to shut down."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.gateway = type("Gateway", (), {"id": name})()
        self.sent: list[int] = []
        self.done = 0  # how many of ``sent`` it has run
        self.shutting_down = False

    def send_runtest_some(self, indexes: list[int]) -> None:
        self.sent.extend(indexes)

    def shutdown(self) -> None:
        self.shutting_down = True

    def __repr__(self) -> str:
        return self.name


def _scheduler(pytester: pytest.Pytester, tmp_path: Path) -> tuple[
        xdistlanes.LaneScheduling, StandInWorker, StandInWorker]:
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({**{test: "quick" for test in QUICK},
                                  **{test: f"vm:{test}" for test in VM},
                                  **{test: f"exclusive:{test}" for test in EXCLUSIVE}}))
    config = pytester.parseconfig("--tx", "2*popen", "--dist", "loadgroup")
    scheduler = xdistlanes.LaneScheduling(config, None, groups, last="exclusive:")
    first, second = StandInWorker("gw0"), StandInWorker("gw1")
    for worker in (first, second):
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, COLLECTION)
    scheduler.schedule()
    return scheduler, first, second


def _names(worker: StandInWorker) -> list[str]:
    return [COLLECTION[index] for index in worker.sent]


def _finish(scheduler: xdistlanes.LaneScheduling, worker: StandInWorker, count: int) -> None:
    """The worker reports its next ``count`` tests done, in the order it was sent them."""
    for _ in range(count):
        scheduler.mark_test_complete(worker, worker.sent[worker.done])
        worker.done += 1


def test_the_quick_lanes_go_to_one_worker_and_the_vm_tests_start_on_the_other(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    _, first, second = _scheduler(pytester, tmp_path)
    assert _names(first) == QUICK  # all of them, in order
    assert _names(second) == VM[:2]  # the first VM tests, a couple ahead


def test_each_worker_takes_the_next_vm_test_when_it_is_nearly_done(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    scheduler, first, second = _scheduler(pytester, tmp_path)
    _finish(scheduler, second, 1)  # one VM test done: the next one is queued behind
    assert _names(second) == VM[:3]
    _finish(scheduler, first, len(QUICK) - 2)  # the quick lanes nearly done
    assert _names(first) == QUICK + VM[3:4]  # the first worker joins the VM lane
    _finish(scheduler, second, 1)
    assert _names(second) == VM[:3] + VM[4:5]
    # Every VM test is sent once, to one worker or the other, in order on each; the
    # exclusive tests go out after all of them.
    _finish(scheduler, first, 3)
    _finish(scheduler, second, 2)
    sent = _names(first)[len(QUICK):] + _names(second)
    assert sorted(sent) == sorted(VM + EXCLUSIVE) and len(sent) == len(VM + EXCLUSIVE)
    for worker in (first, second):
        names = _names(worker)
        last_vm = max(names.index(test) for test in VM if test in names)
        assert all(names.index(test) > last_vm for test in EXCLUSIVE if test in names), names
