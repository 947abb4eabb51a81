"""One pytest run's state: its settings and the harness that runs its targets.

Kept in ``config.stash`` by the plugin (``plugin.py``), used by the fixtures
(``fixtures.py``); the end of the run (its report, the summary, teardown) is
``runend.py``. The state holds two parts whole, each defined where it is used:
the process's xdist role (``shared.XdistRole``) and what the run found
(``runreport.results.RunResults``). Nothing here is a pytest hook.
"""

from __future__ import annotations

import queue
import sys
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from pytest_vmcontainer.errors import HostSetupError, TargetError, UsageError, VmcError
from pytest_vmcontainer.harness import Harness, HarnessHooks
from pytest_vmcontainer.host import sites
from pytest_vmcontainer.parity import (
    PROP_EXPECT_DIFF,
    PROP_MODE,
    PROP_ROW,
    PROP_TARGET,
)
from pytest_vmcontainer.runreport.results import RunResults
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.settings import RunSettings
from pytest_vmcontainer.shared import XdistRole
from pytest_vmcontainer.targets import capabilities

if TYPE_CHECKING:
    from pytest_vmcontainer.comparison.measure import Comparison
    from pytest_vmcontainer.targets.base import Target, TargetSpec

TARGET_FIXTURES = ("vm", "container")
PARAMETRIZED_FIXTURES = ("target", "host", "parity")
COMPARISON_FIXTURES = ("comparison", "vmc_comparison")
REFUSED = pytest.StashKey[UsageError]()  # on a comparison test the run refuses (collection)


class TerminalProgress:
    """Progress lines from any thread, printed by the main thread around pytest's capture."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._pending: queue.SimpleQueue[str] = queue.SimpleQueue()
        # The xdist controller runs no tests and captures nothing: it prints from any thread.
        self.direct = False
        self._direct_lock = threading.Lock()

    def write(self, text: str) -> None:
        """Queue a line; the main thread prints at once, other threads' lines wait for it."""
        self._pending.put(text)
        if self.direct:
            with self._direct_lock:
                self.flush(capture_active=False)
        elif threading.current_thread() is threading.main_thread():
            self.flush()

    def _drain(self) -> list[str]:
        lines = []
        while True:
            try:
                lines.append(self._pending.get_nowait())
            except queue.Empty:
                return lines

    def flush(self, capture_active: bool = True) -> None:
        """Print pending lines; call from the main thread only.

        Heartbeats queued while the main thread was busy are stale: only the last
        one of each step is printed.
        """
        lines = _latest_heartbeats(self._drain())
        if not lines:
            return
        capman = self._config.pluginmanager.getplugin("capturemanager")
        reporter = self._config.pluginmanager.getplugin("terminalreporter")
        suspend: AbstractContextManager[Any] = (
            capman.global_and_fixture_disabled() if capture_active and capman else nullcontext())
        with suspend:
            for line in lines:
                if reporter is not None:
                    reporter.write_line(line)
                else:
                    sys.stderr.write(line + "\n")


def _latest_heartbeats(lines: list[str]) -> list[str]:
    last = {line.rsplit(": still running", 1)[0]: i for i, line in enumerate(lines)
            if ": still running" in line}
    return [line for i, line in enumerate(lines)
            if ": still running" not in line or last[line.rsplit(": still running", 1)[0]] == i]


def harness_hooks(config: pytest.Config) -> HarnessHooks:
    """The harness's extension points, answered by the plugin's hookspecs."""
    hook = config.hook

    def make_target(kind: str, spec: TargetSpec, progress: Progress) -> Target:
        target: Target = hook.pytest_vmcontainer_make_target(kind=kind, spec=spec,
                                                             progress=progress)
        if config.pluginmanager.has_plugin("dsession"):  # the xdist controller: before up
            capabilities.require(target, ["attach"], "running tests in pytest-xdist workers")
        return target

    def ready(target: Target) -> bool:
        return all(hook.pytest_vmcontainer_ready(target=target))

    def on_teardown(target: Target, kept: bool) -> None:
        hook.pytest_vmcontainer_teardown(target=target, kept=kept)

    has_ready = bool(hook.pytest_vmcontainer_ready.get_hookimpls())
    return HarnessHooks(make_target=make_target, ready=ready if has_ready else None,
                        teardown=on_teardown)


@dataclass
class RunState:
    """Everything the plugin keeps for one pytest run (in ``config.stash``)."""

    settings: RunSettings
    kinds: tuple[str, ...]  # selected by --target
    terminal: TerminalProgress
    hooks: HarnessHooks = field(default_factory=HarnessHooks)
    extra_rows: list[Any] = field(default_factory=list)  # from pytest_vmcontainer_comparison_rows
    needed: set[str] = field(default_factory=set)  # kinds the selected tests use
    harness: Harness | None = None
    kept: list[str] = field(default_factory=list)
    previous_sigterm: Any = None
    xdist: XdistRole = field(default_factory=XdistRole)  # a worker, or the targets' owner
    results: RunResults = field(default_factory=RunResults)  # parity, comparison, scan, report

    def get_harness(self) -> Harness:
        if self.harness is None:
            self.harness = Harness(self.settings.harness_config(),
                                   Progress(write=self.terminal.write), self.hooks)
        return self.harness

    def get_comparison(self) -> Comparison:
        """Made on first use, from the harness: kept with the results it measures into."""
        if self.results.comparison is None:
            from pytest_vmcontainer.comparison.measure import Comparison

            # A probe may measure several targets at once, but only those the selected tests
            # need: nothing boots for a target no selected test uses.
            kinds = tuple(kind for kind in self.kinds if kind in self.needed)
            self.results.comparison = Comparison(self.get_harness(),
                                                 self.settings.measure_settings(),
                                                 self.extra_rows, kinds=kinds)
        return self.results.comparison


STATE = pytest.StashKey[RunState]()

def state_of(config: pytest.Config) -> RunState:
    return config.stash[STATE]


def fail_for(kind: str | None, error: VmcError) -> NoReturn:
    """Fail the current test with the error's one line and its log tail, no traceback."""
    prefix = f"{kind} target: " if kind else ""
    where = f"the {kind} log" if kind else "the log"
    detail = f"\n--- last lines of {where} ---\n{error.detail}" if error.detail else ""
    # Raised bare: the failure is the message, without "During handling of ..." chains.
    raise pytest.fail.Exception(f"{prefix}{error.one_line()}{detail}", pytrace=False) from None


def check_targets_alive(funcargs: dict[str, Any]) -> None:
    """Fail the current test if a target it uses stopped running since it came up."""
    from pytest_vmcontainer.targets.base import Target

    for name in ("target", *TARGET_FIXTURES):
        target = funcargs.get(name)
        if isinstance(target, Target) and target.was_ready:
            reason = target.alive()
            if reason is not None:
                fail_for(target.kind, TargetError(
                    reason, "the run does not restart targets: later tests on it fail too; "
                    "check what stopped it, then run again"))


def parity_row(item: pytest.Item) -> tuple[str, str] | None:
    """(row of the parity matrix, target kind) for a test that runs once per target.

    The row is the test without its target: ``test_parity.py::test_x[path=/etc/a]``
    on the vm and on the container share a row; other parameters keep rows apart.
    """
    callspec = getattr(item, "callspec", None)
    if callspec is None or "target" not in callspec.params:
        return None
    test = item.nodeid.split("[", 1)[0].split("::", 1)[-1]
    others = [f"{name}={value}" for name, value in callspec.params.items() if name != "target"]
    row = f"{item.path.name}::{test}" + (f"[{', '.join(others)}]" if others else "")
    return row, str(callspec.params["target"])


def expect_diff_reason(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("expect_diff")
    if marker is None:
        return None
    return str(marker.kwargs.get("reason") or (marker.args[0] if marker.args else "expected"))


# --- what target tests' reports carry: the parity matrix is made of them (results.py) ------

def target_properties(item: pytest.Item) -> list[tuple[str, object]]:
    """What a target test's reports carry from collection on: its target, row, expect_diff.

    Set before setup, so that a test whose target failed to come up still has its row.
    """
    row = parity_row(item)
    if row is None:  # a test of the vm or container fixture has a target, but no row
        names = getattr(item, "fixturenames", ())
        return [(PROP_TARGET, kind) for kind in TARGET_FIXTURES if kind in names]
    properties: list[tuple[str, object]] = [(PROP_TARGET, row[1]), (PROP_ROW, row[0])]
    reason = expect_diff_reason(item)
    if reason is not None:
        properties.append((PROP_EXPECT_DIFF, reason))
    return properties


def mode_properties(item: pytest.Item) -> list[tuple[str, object]]:
    """How the test's target ran (kvm, tcg, container), once its fixtures are set up."""
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    mode = getattr(funcargs.get("target"), "mode", None)
    if not isinstance(mode, str) or (PROP_MODE, mode) in item.user_properties:
        return []
    return [(PROP_MODE, mode)]


_MEASURE_THERE = ("run the comparison on the machine that runs both targets (there, e.g. a CI "
                  "job on that host; here, with DOCKER_HOST and VMC_LIBVIRT_URI unset), or run "
                  "the parity tests alone (e.g. pytest suites/test_parity.py)")


def comparison_refusal(state: RunState) -> UsageError | None:
    """Timed rows need the host to themselves, both targets on that one host, and their
    table is made where they ran. Read from the settings alone: refused rows start nothing."""
    if state.xdist.worker is not None:
        return UsageError("comparison rows cannot be measured in an xdist worker "
                          f"({state.xdist.worker}): "
                          "other workers would load the host during the timings",
                          "run the comparison without workers, e.g. pytest -n 0 (or -p no:xdist) "
                          "suites/test_comparison.py")
    spread = sites.split(state.kinds)
    if spread is None:
        try:
            place = sites.vm_place() if "vm" in state.kinds else None
        except (HostSetupError, ValueError):
            return None  # the target's own start names the bad URI
        if place is None or place.here:
            return None
        return UsageError(f"comparison rows are measured on the machine pytest runs on (the "
                          f"VM's QEMU process, the host's kernel and load), and this run puts "
                          f"the vm on {place.shown}", _MEASURE_THERE)
    return UsageError(f"comparison rows need both targets on one machine, and this run puts "
                      f"{spread}", _MEASURE_THERE)


def uses_comparison(item: pytest.Item) -> bool:
    return any(name in COMPARISON_FIXTURES for name in getattr(item, "fixturenames", ()))
