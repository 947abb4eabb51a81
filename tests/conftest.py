"""The project's own test lanes: unit and pytester tests first, then the real-engine tests that
bring up no VM, then those that do. A failure in a quick lane shows in seconds, not after
the VM lane's minutes.

Every test under ``integration/`` is marked ``integration`` and must say its lane with
``container`` (real engines, no VM brought up) or ``vm`` (brings up a VM). Lanes run in
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
    unlaned = []
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)
            if lane(item) == "unit":
                unlaned.append(item.nodeid)
    if unlaned:
        raise pytest.UsageError("integration tests without a lane marker (container or vm): "
                                + ", ".join(unlaned))
    if not _other_order_asked(config):
        # Stable: file order within a lane, but the tests that need the box (built in the
        # background on a cold machine) after the others of their lane.
        items.sort(key=lambda item: (LANES.index(lane(item)),
                                     "bases" in getattr(item, "fixturenames", ())))
