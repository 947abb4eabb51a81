"""One pytest run's state: settings, the harness, parity, the comparison, and teardown.

Kept in ``config.stash`` by the plugin (``plugin.py``), used by the fixtures
(``fixtures.py``). Nothing here is a pytest hook.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from pytest_vmcontainer import options
from pytest_vmcontainer.comparison.userbench import UserBenchmarks
from pytest_vmcontainer.errors import VmcError
from pytest_vmcontainer.harness import Harness, HarnessConfig, HarnessHooks
from pytest_vmcontainer.parity import ParityStore
from pytest_vmcontainer.runtime.progress import Progress

if TYPE_CHECKING:
    from pytest_vmcontainer.comparison.measure import Comparison
    from pytest_vmcontainer.comparison.results import ComparisonReport
    from pytest_vmcontainer.targets.base import Target, TargetSpec

TARGET_FIXTURES = ("vm", "container")
PARAMETRIZED_FIXTURES = ("target", "host", "parity")


class TerminalProgress:
    """Progress lines from any thread, printed by the main thread around pytest's capture."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._pending: queue.SimpleQueue[str] = queue.SimpleQueue()

    def write(self, text: str) -> None:
        """Queue a line; the main thread prints at once, other threads' lines wait for it."""
        self._pending.put(text)
        if threading.current_thread() is threading.main_thread():
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

    settings: dict[str, options.Resolved]
    kinds: tuple[str, ...]  # selected by --target
    terminal: TerminalProgress
    hooks: HarnessHooks = field(default_factory=HarnessHooks)
    extra_rows: list[Any] = field(default_factory=list)  # from pytest_vmcontainer_comparison_rows
    parity: ParityStore = field(default_factory=ParityStore)
    needed: set[str] = field(default_factory=set)  # kinds the selected tests use
    harness: Harness | None = None
    kept: list[str] = field(default_factory=list)
    previous_sigterm: Any = None
    comparison: Comparison | None = None
    user_benchmarks: UserBenchmarks = field(default_factory=UserBenchmarks)

    def value(self, name: str) -> Any:
        return self.settings[name].value

    def get_harness(self) -> Harness:
        if self.harness is None:
            ready_path = self.value("vmc_ready_path")
            config = HarnessConfig(
                vagrantfile=self.value("vmc_vagrantfile"),
                dockerfile=self.value("vmc_dockerfile"),
                provision_inputs=self.value("vmc_provision_inputs"),
                guest_ports=self.value("vmc_ports"),
                ready_path=None if ready_path.lower() == "none" else ready_path,
                boot_timeout=self.value("vmc_boot_timeout"),
                rebuild_bases=self.value("vmc_rebuild_bases"),
                keep=self.value("vmc_keep"),
                reuse=self.value("vmc_reuse"),
                setup_host=self.value("vmc_host_setup"),
            )
            self.harness = Harness(config, Progress(write=self.terminal.write), self.hooks)
        return self.harness

    def get_comparison(self) -> Comparison:
        if self.comparison is None:
            from pytest_vmcontainer.comparison.measure import Comparison
            from pytest_vmcontainer.comparison.probes import MeasureSettings

            settings = MeasureSettings(
                rounds=self.value("vmc_rounds"), warmup=self.value("vmc_warmup"),
                boot_rounds=self.value("vmc_boot_rounds"),
                density_vms=self.value("vmc_density_vms"),
                density_containers=self.value("vmc_density_containers"),
                http_requests=self.value("vmc_http_requests"),
                http_seconds=self.value("vmc_http_seconds"))
            # A probe may measure several targets at once, but only those the selected tests
            # need: nothing boots for a target no selected test uses.
            kinds = tuple(kind for kind in self.kinds if kind in self.needed)
            self.comparison = Comparison(self.get_harness(), settings, self.extra_rows,
                                         kinds=kinds)
        return self.comparison


STATE = pytest.StashKey[RunState]()

REPORTED_SETTINGS = ("vmc_target", "vmc_rounds", "vmc_warmup", "vmc_boot_rounds",
                     "vmc_density_vms", "vmc_density_containers", "vmc_http_requests",
                     "vmc_http_seconds")


def comparison_report(state: RunState) -> ComparisonReport | None:
    """The end-of-run report: the table's rows if any was measured, a team's own benchmarks
    if any ran on a target; None when there is neither."""
    benchmarks = state.user_benchmarks.results()
    measured = state.comparison is not None and bool(state.comparison.figures)
    if not measured and not benchmarks:
        return None
    shown = {name: str(resolved.value) for name, resolved in state.settings.items()
             if name in REPORTED_SETTINGS}
    return state.get_comparison().report(shown, benchmarks)


def state_of(config: pytest.Config) -> RunState:
    return config.stash[STATE]


def fail_for(kind: str | None, error: VmcError) -> NoReturn:
    """Fail the current test with the error's one line and its log tail, no traceback."""
    prefix = f"{kind} target: " if kind else ""
    where = f"the {kind} log" if kind else "the log"
    detail = f"\n--- last lines of {where} ---\n{error.detail}" if error.detail else ""
    # Raised bare: the failure is the message, without "During handling of ..." chains.
    raise pytest.fail.Exception(f"{prefix}{error.one_line()}{detail}", pytrace=False) from None


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


def teardown(state: RunState, failed: bool) -> None:
    """Tear the targets down once; a second Ctrl-C meanwhile only prints a note."""
    harness = state.harness
    if harness is None:
        return
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _teardown_in_progress) if in_main else None
    try:
        state.kept += harness.teardown(failed=failed)
    except VmcError as error:
        state.terminal.write(f"[vmcontainer] {error.one_line()}")
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _teardown_in_progress(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write("\n[vmcontainer] removing the targets, please wait...\n")
