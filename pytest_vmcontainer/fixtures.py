"""Fixtures: ``vm``, ``container``, ``target`` (one per selected target), ``host``, ``parity``.

Targets are session-scoped and lazy: the first fixture that needs one starts
the bring-up of every target the selected tests need, concurrently, and waits
only for its own. A target that fails to come up fails its own tests with the
cause and the tail of its provisioning log; the other target's tests still run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_vmcontainer import scanrun, shared
from pytest_vmcontainer.errors import VmcError
from pytest_vmcontainer.parity import Parity
from pytest_vmcontainer.runend import teardown
from pytest_vmcontainer.runstate import (
    RunState,
    comparison_refusal,
    expect_diff_reason,
    fail_for,
    parity_row,
    state_of,
)

if TYPE_CHECKING:
    from pytest_vmcontainer.comparison.measure import Comparison, TestMeasurer
    from pytest_vmcontainer.targets.base import Target


@pytest.fixture(scope="session")
def vmc_state(request: pytest.FixtureRequest) -> Iterator[RunState]:
    """The run's state; its finalizer tears the targets down (after failures and Ctrl-C too)."""
    state = state_of(request.config)
    yield state
    teardown(state, failed=bool(request.session.testsfailed))


def _get_target(state: RunState, kind: str) -> Target:
    if kind not in state.kinds:
        pytest.skip(f"the {kind} target is not selected (--target={state.settings.target})")
    xdist = state.xdist
    if xdist.shared_dir is not None:  # an xdist worker: the controller brings targets up
        if kind not in xdist.attached:
            try:
                xdist.attached[kind] = shared.attach(xdist.shared_dir, kind)
                scanrun.wait(state)  # the controller scans both targets before any test
            except VmcError as error:
                fail_for(kind, error)
        return xdist.attached[kind]
    harness = state.get_harness()
    try:
        # Start every needed target now, so that both come up concurrently.
        harness.start(sorted(state.needed | {kind}))
        scanrun.start(state)
        ready = harness.get(kind, on_wait=state.terminal.flush)
        scanrun.wait(state)  # once both are ready, the scan runs before the first test
        return ready
    except VmcError as error:
        fail_for(kind, error)
    finally:
        state.terminal.flush()


@pytest.fixture(scope="session")
def vm(vmc_state: RunState) -> Target:
    """The VM target (Vagrant, libvirt): KVM where it boots, QEMU TCG otherwise."""
    return _get_target(vmc_state, "vm")


@pytest.fixture(scope="session")
def container(vmc_state: RunState) -> Target:
    """The container target (Docker)."""
    return _get_target(vmc_state, "container")


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest, vmc_state: RunState) -> Target:
    """The current target: tests using it run once per selected target (ids vm, container)."""
    kind = getattr(request, "param", None)
    if kind is None:
        raise pytest.UsageError("the target fixture is parametrized by pytest-vmcontainer; "
                                "request it from a test function")
    return _get_target(vmc_state, kind)


@pytest.fixture(scope="session")
def vmc_comparison(vmc_state: RunState) -> Comparison:
    """The run's comparison: every row's figures, which become the end-of-run report.

    Refused in an xdist worker: timed rows need the host to themselves.
    """
    refusal = comparison_refusal(vmc_state)
    if refusal is not None:
        fail_for(None, refusal)
    return vmc_state.get_comparison()


@pytest.fixture
def comparison(request: pytest.FixtureRequest, vmc_comparison: Comparison) -> TestMeasurer:
    """Measures comparison rows on targets (``comparison.measure(row_id, target)``); each
    figure is also a property of the test's report (``--junitxml``)."""
    from pytest_vmcontainer.comparison.measure import TestMeasurer

    return TestMeasurer(vmc_comparison, request.node.user_properties)


@pytest.fixture
def host(target: Target) -> Any:
    """The current target's testinfra Host, so existing testinfra tests run on both targets."""
    return target.host


@pytest.fixture
def parity(request: pytest.FixtureRequest, target: Target, vmc_state: RunState) -> Parity:
    """Record values per target; they must match across targets unless marked expect_diff.

    Each value also goes into the test's report (``user_properties``): the parity matrix
    is assembled from there, and ``--junitxml`` shows it.
    """
    row = parity_row(request.node)
    assert row is not None, "parity is parametrized over the targets"
    return Parity(vmc_state.results.parity, row[0], target.kind, expect_diff_reason(request.node),
                  request.node.user_properties)
