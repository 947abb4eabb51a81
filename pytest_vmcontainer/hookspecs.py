"""Hooks that extend pytest-vmcontainer, added through ``pytest_addhooks`` (as pytest-xdist does).

Implement them in a ``conftest.py`` or a plugin of your own::

    def pytest_vmcontainer_make_target(kind, spec, progress):
        if kind == "container":
            return PodmanTarget(spec, progress)   # a pytest_vmcontainer.targets.base.Target

Arguments may be left out of an implementation, as with every pytest hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_vmcontainer.comparison.rows import Row
    from pytest_vmcontainer.runtime.progress import Progress
    from pytest_vmcontainer.targets.base import Target, TargetSpec


@pytest.hookspec(firstresult=True)
def pytest_vmcontainer_make_target(kind: str, spec: TargetSpec, progress: Progress) -> Any:
    """Make the target of ``kind`` ("vm" or "container") from ``spec``, not started yet.

    Return a ``pytest_vmcontainer.targets.base.Target`` to replace the default
    backend of that kind (Vagrant with libvirt for "vm", Docker for "container"),
    or None to leave it to the next implementation. The plugin's own
    implementation runs last and makes the default backend. The harness calls
    ``prepare()`` and ``up()`` on the target, waits for it, and ``destroy()`` at
    teardown. Stops at the first non-None result.

    ``spec`` is frozen: between ``prepare()`` and ``up()`` the harness hands the target a
    new one (``target.spec``) with the guest ports every target declared, so read
    ``self.spec`` when it is needed rather than keeping the one given here. What the
    host must provide is the target class's ``host_needs`` (names of
    ``host.setup.ALL_NEEDS``; an unknown one stops the run in one line).

    The core ``Target`` is enough to run tests on it. The comparison rows, pytest-xdist
    workers and the command line's list, login and exec need optional capabilities
    (``pytest_vmcontainer.targets.capabilities``: export, measure, attach, shell), which
    the backend declares among its bases; without them a row is skipped with the reason,
    and xdist and the command line stop with a one-line error, before any work.
    """


@pytest.hookspec
def pytest_vmcontainer_ready(target: Target) -> bool | None:
    """Whether ``target`` is ready for the tests, beyond its forwarded ports answering.

    Polled (with the target's readiness timeout) after the built-in wait
    strategy passed, on every target and on every instance the comparison
    starts. Return True when ready, False when not yet. Raising a connection error
    or a timeout (``OSError``), or ``runtime.waiting.NotReady``, counts as "not yet"
    and the last one shows if the wait times out; any other exception ends the wait
    at once. None means "no opinion" (this implementation does not check that target).
    """


@pytest.hookspec
def pytest_vmcontainer_comparison_rows() -> list[Row]:  # type: ignore[empty-body]
    """Extra comparison rows: return a list of ``pytest_vmcontainer.comparison.rows.Row``.

    Each row needs a unique ``id``; its ``probe`` may be a callable
    ``probe(ctx, target) -> (figures, host_figures_or_None)``; ``needs`` names the
    optional capabilities its probe uses (a backend without them skips it). Measure it from a
    test with ``comparison.measure(row_id, target)``; its verdict and figures
    join the table at the end of the run and in ``--vmc-report``. A rule may
    return ``Verdict(status, reason, evidence)``: the evidence (numbers, text, or
    intervals from ``comparison.stats``) is shown with the verdict in the reports.
    """


@pytest.hookspec
def pytest_vmcontainer_teardown(target: Target, kept: bool) -> None:
    """Called once per target at the end of the run, before it is removed or kept.

    ``kept`` is True when the run keeps it (``--vmc-keep``, ``--vmc-reuse``):
    the place to collect logs from a failed target, or to record a kept one
    elsewhere. Not called for a target that never became ready. An exception
    here is reported and does not stop the teardown.
    """

