"""The project's own test lanes: unit and pytester tests first, then the real-engine tests that
bring up no VM, then those that do. A failure in a quick lane shows in seconds, not after
the VM lane's minutes.

Every test under ``integration/`` is marked ``integration``; one that brings up a VM is
marked ``vm`` by its author, and every other one is marked ``container`` here (real engines,
no VM), so ``-m container`` and ``-m vm`` select the two real-engine lanes. Lanes run in
that order unless another order is asked for (``--random-order``, ``--reverse``): the
suite passes in any order, and those options are how that is shown.

Side by side: ``pytest tests/ -n 2 --dist loadgroup`` (what CI runs) puts the VM lane on one
pytest-xdist worker and the unit and container lanes, in that order, on the other. Each lane
is one xdist group, so each keeps its order; the VM lane, the longest, starts at once instead
of after the others. Tests that restart a daemon or time something are marked ``exclusive``
and have the engines to themselves meanwhile (``integration/conftest.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

INTEGRATION = Path(__file__).parent / "integration"
LANES = ("unit", "container", "vm")
# The xdist group of each lane (``--dist loadgroup``): one worker per group.
XDIST_GROUPS = {"unit": "quick", "container": "quick", "vm": "vm"}


# What pytest-xdist tells its workers through the environment. The runs that tests start
# (pytester, subprocesses) inherit the environment, and pytest-benchmark turns itself off in
# a run that says it is an xdist worker: the comparison rows' timings would then not run.
XDIST_ENVIRONMENT = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """In a worker, the runs that tests start are not xdist workers (see XDIST_ENVIRONMENT);
    the worker's id stays in ``config.workerinput``."""
    if hasattr(config, "workerinput"):
        for name in XDIST_ENVIRONMENT:
            os.environ.pop(name, None)


def lane(item: pytest.Item) -> str:
    if item.get_closest_marker("vm"):
        return "vm"
    if item.get_closest_marker("container"):
        return "container"
    return "unit"


def _other_order_asked(config: pytest.Config) -> bool:
    """pytest-random-order is on (its options left at their defaults read "default:...")
    or pytest-reverse is asked for."""
    shuffled = bool(config.getoption("random_order_enabled", False)) or any(
        not str(config.getoption(name, "default:")).startswith("default:")
        for name in ("random_order_bucket", "random_order_seed"))
    return shuffled or bool(config.getoption("reverse", False))


def xdist_group(item: pytest.Item) -> str:
    return XDIST_GROUPS[lane(item)]


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)
            if not item.get_closest_marker("vm"):
                item.add_marker(pytest.mark.container)
        item.add_marker(pytest.mark.xdist_group(xdist_group(item)))
    if not _other_order_asked(config):
        items.sort(key=_place)


def _place(item: pytest.Item) -> tuple[int, bool, bool, bool]:
    """Lane first; within a lane, file order (a stable sort), except that the tests waiting
    for what is prepared in the background on a cold machine (the box, then the shipped
    VM's warm-up) come after those that need none of it, and the boot-loader box's test
    comes last: on a new machine that box takes minutes to build after the box, and the
    rest of the VM lane runs meanwhile instead of waiting for it."""
    fixtures = getattr(item, "fixturenames", ())
    return (LANES.index(lane(item)), "bootloader_box" in fixtures, "bases" in fixtures,
            "shipped_vm" in fixtures)


# Called once, with the first test this process runs: in an xdist worker, the first test of the
# group it was given, which tells what to prepare (integration/conftest.py registers it).
ON_FIRST_TEST = pytest.StashKey[list[Callable[[pytest.Item], None]]]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    callbacks = item.config.stash.get(ON_FIRST_TEST, [])
    while callbacks:
        callbacks.pop(0)(item)


@pytest.fixture(autouse=True)
def _no_parity_scan_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs that tests start (pytester, subprocesses) do not scan their targets: the scan
    adds a test item and a collection to every run with both targets, which the tests of
    other features do not count. The scan's own tests turn it on with --vmc-scan."""
    monkeypatch.setenv("VMC_SCAN", "off")
