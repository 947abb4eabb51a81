"""The project's own test lanes: unit and pytester tests first, then the real-engine tests that
bring up no VM, then those that do. A failure in a quick lane shows in seconds, not after
the VM lane's minutes.

Every test under ``integration/`` is marked ``integration``; one that brings up a VM is
marked ``vm`` by its author, and every other one is marked ``container`` here (real engines,
no VM), so ``-m container`` and ``-m vm`` select the two real-engine lanes. Lanes run in
that order unless another order is asked for (``--random-order``, ``--reverse``): the
suite passes in any order, and those options are how that is shown.
"""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION = Path(__file__).parent / "integration"
LANES = ("unit", "container", "vm")


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)
            if not item.get_closest_marker("vm"):
                item.add_marker(pytest.mark.container)
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


@pytest.fixture(autouse=True)
def _no_parity_scan_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs that tests start (pytester, subprocesses) do not scan their targets: the scan
    adds a test item and a collection to every run with both targets, which the tests of
    other features do not count. The scan's own tests turn it on with --vmc-scan."""
    monkeypatch.setenv("VMC_SCAN", "off")
