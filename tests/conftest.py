"""The project's own test lanes: unit and pytester tests first, then the real-engine tests that
bring up no VM, then those that do. A failure in a quick lane shows in seconds, not after
the VM lane's minutes.

Every test under ``integration/`` is marked ``integration``; one that brings up a VM is
marked ``vm`` by its author, and every other one is marked ``container`` here (real engines,
no VM), so ``-m container`` and ``-m vm`` select the two real-engine lanes. Lanes run in
that order unless another order is asked for (``--random-order``, ``--reverse``): the
suite passes in any order, and those options are how that is shown.

Side by side: ``pytest tests/ -n 2 --dist loadgroup`` (what CI runs) gives one pytest-xdist
worker the unit and container lanes, in that order, as one unit of work, and the other the VM
lane's tests, in their order, one at a time (``xdistlanes.py``); the first worker, once its
lanes are done, takes VM tests too. A VM test keeps about one core of two busy (under TCG
its guest mostly waits), so the VM lane, the longest, no longer leaves a core idle.
Tests that restart a daemon or time something are marked ``exclusive`` and have the engines
to themselves meanwhile (``integration/conftest.py``): the other worker waits for them to
end. They come last in their lane, and side by side last of all, one after another, so that
the workers wait for each other once, not once per such test.
"""

from __future__ import annotations

import functools
import os
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

INTEGRATION = Path(__file__).parent / "integration"
LANES = ("unit", "container", "vm")
# What one worker prepares in the background for the lane it starts with (integration/conftest).
LANE_GROUPS = {"unit": "quick", "container": "quick", "vm": "vm"}
EXCLUSIVE_GROUP = "exclusive:"  # an exclusive test's unit of work: handed out last (xdistlanes)
GROUPS_FILE = pytest.StashKey[Path]()  # on the xdist controller (xdistlanes)


# What pytest-xdist tells its workers through the environment. The runs that tests start
# (pytester, subprocesses) inherit the environment, and pytest-benchmark turns itself off in
# a run that says it is an xdist worker: the comparison rows' timings would then not run.
XDIST_ENVIRONMENT = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """In a worker, the runs that tests start are not xdist workers (see XDIST_ENVIRONMENT);
    the worker's id stays in ``config.workerinput``.

    The suite stops the runs it starts with SIGINT, as a terminal's Ctrl-C would. A launcher
    that ignores SIGINT (a background job of a non-interactive shell, as some CI runners start
    their scripts) passes that on through every exec, and those runs would never see it. So
    the suite takes Python's own handler back, before the xdist workers start: every process
    started from here then starts with SIGINT's default, as from a terminal."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if hasattr(config, "workerinput"):
        for name in XDIST_ENVIRONMENT:
            os.environ.pop(name, None)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """On the xdist controller: where the workers write their tests' groups."""
    from tests import xdistlanes

    config = node.config
    if GROUPS_FILE not in config.stash:
        handle, name = tempfile.mkstemp(prefix="vmc-tests-lanes-", suffix=".json")
        os.close(handle)
        config.stash[GROUPS_FILE] = Path(name)
    node.workerinput[xdistlanes.WORKERINPUT_KEY] = str(config.stash[GROUPS_FILE])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup``: one worker per lane group (see xdistlanes for why not xdist's)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from tests import xdistlanes

    return xdistlanes.LaneScheduling(config, log, config.stash[GROUPS_FILE],
                                     last=EXCLUSIVE_GROUP)


def pytest_unconfigure(config: pytest.Config) -> None:
    groups_file = config.stash.get(GROUPS_FILE, None)
    if groups_file is not None:
        groups_file.unlink(missing_ok=True)


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


def lane_group(item: pytest.Item) -> str:
    return LANE_GROUPS[lane(item)]


def xdist_group(item: pytest.Item) -> str:
    """The scheduler's unit of work: the quick lanes are one, run in order by one worker; each
    VM test is one of its own, taken in order by whichever worker is free; and so is each
    ``exclusive`` test, which xdistlanes keeps for the end."""
    if item.get_closest_marker("exclusive"):
        return f"{EXCLUSIVE_GROUP}{item.nodeid}"
    group = lane_group(item)
    if group == "vm" and "libvirt_host" in getattr(item, "fixturenames", ()):
        return f"{group}:libvirt-host"  # one worker, one libvirt host (a module's fixture)
    return f"{group}:{item.nodeid}" if group == "vm" else group


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)
            if not item.get_closest_marker("vm"):
                item.add_marker(pytest.mark.container)
    if not _other_order_asked(config):
        items.sort(key=_place)
    if hasattr(config, "workerinput"):  # an xdist worker
        from tests import xdistlanes

        groups_file = config.workerinput.get(xdistlanes.WORKERINPUT_KEY)
        if groups_file:  # a run with the lane scheduler
            xdistlanes.publish(Path(groups_file),
                               {item.nodeid: xdist_group(item) for item in items})


def _place(item: pytest.Item) -> tuple[int, bool, bool, bool, bool, bool, bool, bool]:
    """Lane first; within a lane, file order (a stable sort), except:

    - the boot-loader box's test comes last while that box is not built: on a new machine it
      takes minutes to build after the box, and the rest of the VM lane runs meanwhile;
    - the ``exclusive`` tests come after the others (beside the other lane's worker, they
      wait for its test to end and stop it from starting another);
    - tests that wait for the box come after those that need none of it, while the box is
      not built; tests of the shipped VM come after those, since its warm-up (a restore when
      warm, a provisioning when new) starts with the run;
    - the tests that need the shipped VM's saved slots alone (``shipped_vm_alone``) come
      first among its tests; once the box is built (warm), first in the VM lane, where the
      other worker runs the quick lanes or the remote tests (which leave the slots alone)
      rather than shipped VM tests that would wait for them (94 s in a warm run);
    - the ``slow`` tests of a place come before its others, so that side by side the shared
      part ends on short tests: the worker that runs out of them waits for the other's last
      tests before the exclusive ones can start (two of a minute or more each there cost
      100 s of a worker in a warm run)."""
    fixtures = getattr(item, "fixturenames", ())
    warm = _box_built("project")
    alone = item.get_closest_marker("shipped_vm_alone") is not None
    return (LANES.index(lane(item)), "bootloader_box" in fixtures and not _box_built("bootloader"),
            item.get_closest_marker("exclusive") is not None, not (warm and alone),
            "bases" in fixtures and not warm,
            bool({"shipped_vm", "shipped_vm_entry"} & set(fixtures)), not alone,
            item.get_closest_marker("slow") is None)


@functools.cache
def _box_built(which: str) -> bool:
    """The ``project`` or the ``bootloader`` box is built from its current recipe."""
    from pytest_vmcontainer.host import boxes

    return {"project": boxes.PROJECT_BOX, "bootloader": boxes.BOOTLOADER_BOX}[which].current()


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
