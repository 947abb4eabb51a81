"""The pytest plugin: options, hooks, and the run's state. Fixtures live in ``fixtures.py``.

Registered through the ``pytest11`` entry point. The fixtures module is
registered from ``pytest_configure`` so that its ``host`` fixture (the current
target's testinfra Host) takes precedence over pytest-testinfra's own.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, NoReturn

import pytest

from pytest_vmcontainer import options, report
from pytest_vmcontainer.comparison import Comparison
from pytest_vmcontainer.errors import VmcError
from pytest_vmcontainer.harness import Harness, HarnessConfig
from pytest_vmcontainer.parity import ParityStore
from pytest_vmcontainer.probes import MeasureSettings
from pytest_vmcontainer.progress import Progress

TARGET_FIXTURES = {"vm": ("vm",), "container": ("container",)}
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


@dataclass
class RunState:
    """Everything the plugin keeps for one pytest run (in ``config.stash``)."""

    settings: dict[str, options.Resolved]
    kinds: tuple[str, ...]  # selected by --target
    terminal: TerminalProgress
    parity: ParityStore = field(default_factory=ParityStore)
    needed: set[str] = field(default_factory=set)  # kinds the selected tests use
    harness: Harness | None = None
    kept: list[str] = field(default_factory=list)
    previous_sigterm: Any = None
    comparison: Comparison | None = None

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
            self.harness = Harness(config, Progress(write=self.terminal.write))
        return self.harness


    def get_comparison(self) -> Comparison:
        if self.comparison is None:
            settings = MeasureSettings(
                rounds=self.value("vmc_rounds"), warmup=self.value("vmc_warmup"),
                boot_rounds=self.value("vmc_boot_rounds"),
                density_vms=self.value("vmc_density_vms"),
                density_containers=self.value("vmc_density_containers"),
                http_requests=self.value("vmc_http_requests"),
                http_seconds=self.value("vmc_http_seconds"))
            self.comparison = Comparison(self.get_harness(), settings)
        return self.comparison


STATE = pytest.StashKey[RunState]()


def state_of(config: pytest.Config) -> RunState:
    return config.stash[STATE]


# --- options -----------------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vmcontainer", "VM and container targets (pytest-vmcontainer)")
    for setting in options.SETTINGS:
        help_text = (f"{setting.help}. Env {setting.env}, ini {setting.name}; "
                     f"default: {setting.default!r}")
        if setting.flag_value is not None:
            group.addoption(setting.flag, dest=setting.name, default=None, action="store_const",
                            const=setting.flag_value, help=help_text)
        else:
            group.addoption(setting.flag, dest=setting.name, default=None, metavar="VALUE",
                            help=help_text)
        parser.addini(setting.name, help=setting.help, default=None)


class _PytestSources:
    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    def cli(self, name: str) -> str | None:
        value = self._config.getoption(name)
        return None if value is None else str(value)

    def ini(self, name: str) -> str | None:
        value = self._config.getini(name)
        if value is None or value == []:
            return None
        return " ".join(value) if isinstance(value, list) else str(value)


# --- configuration and lifecycle -------------------------------------------------------------

@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "expect_diff(reason): the VM and the container legitimately differ in what "
        "this test records; both values are shown in the parity matrix instead of compared")
    ini_dir = config.inipath.parent if config.inipath else config.rootpath
    try:
        settings = options.resolve(_PytestSources(config), os.environ,
                                   config.invocation_params.dir, ini_dir)
        kinds = options.TARGETS[settings["vmc_target"].value]
        options.check_files(settings, kinds, lambda p: p.is_file() and os.access(p, os.R_OK))
    except options.SettingError as error:
        raise pytest.UsageError(str(error)) from None
    state = RunState(settings, kinds, TerminalProgress(config))
    config.stash[STATE] = state
    from pytest_vmcontainer import fixtures

    config.pluginmanager.register(fixtures, "vmcontainer-fixtures")
    config.pluginmanager.register(ParityOutcomes(state), "vmcontainer-parity")
    if threading.current_thread() is threading.main_thread():
        # SIGTERM unwinds like Ctrl-C, so teardown runs (CI cancellations send SIGTERM).
        state.previous_sigterm = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt("SIGTERM")


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = state_of(config)
    shown = ("vmc_target", "vmc_vagrantfile", "vmc_dockerfile", "vmc_keep", "vmc_reuse",
             "vmc_ports")
    parts = []
    for name in shown:
        resolved = state.settings[name]
        value = resolved.value
        if isinstance(value, tuple):
            value = ",".join(str(v) for v in value)
        parts.append(f"{options.BY_NAME[name].flag.lstrip('-')}={value} ({resolved.source})")
    return ["vmcontainer: " + ", ".join(parts)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests using ``target`` (or ``host``/``parity``) run once per selected target."""
    if any(name in metafunc.fixturenames for name in PARAMETRIZED_FIXTURES):
        kinds = list(state_of(metafunc.config).kinds)
        metafunc.parametrize("target", kinds, indirect=True, ids=kinds, scope="session")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Remember which targets the selected tests need: nothing else boots."""
    state = state_of(session.config)
    for item in session.items:
        names = getattr(item, "fixturenames", ())
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "target" in callspec.params:
            state.needed.add(callspec.params["target"])
        state.needed.update(kind for kind in TARGET_FIXTURES if kind in names)
    state.needed &= set(state.kinds)


class ParityOutcomes:
    """Registered per run: feeds each target test's outcome into the parity matrix."""

    def __init__(self, state: RunState) -> None:
        self._state = state

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Any:
        report = yield
        row = parity_row(item)
        if row is not None:
            if report.when == "call":
                self._state.parity.outcome(row[0], row[1], report.outcome)
            elif report.failed:
                self._state.parity.outcome(row[0], row[1], "error")
            elif report.skipped:
                self._state.parity.outcome(row[0], row[1], "skipped")
        return report


def fail_for(kind: str | None, error: VmcError) -> NoReturn:
    """Fail the current test with the error's one line and its log tail, no traceback."""
    prefix = f"{kind} target: " if kind else ""
    where = f"the {kind} log" if kind else "the log"
    detail = f"\n--- last lines of {where} ---\n{error.detail}" if error.detail else ""
    # Raised bare: the failure is the message, without "During handling of ..." chains.
    raise pytest.fail.Exception(f"{prefix}{error.one_line()}{detail}", pytrace=False) from None


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """A harness error raised inside a test (an export, an extra instance) reads like one
    raised while bringing a target up: cause, remedy and log tail, not plugin internals."""
    try:
        return (yield)
    except VmcError as error:
        callspec = getattr(pyfuncitem, "callspec", None)
        kind = callspec.params.get("target") if callspec is not None else None
        fail_for(str(kind) if kind else None, error)


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


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Backstop: the harness fixture's finalizer normally tears down before this."""
    state = state_of(session.config)
    # An interrupted run is not a failed one: --vmc-keep=on-failure keeps nothing after Ctrl-C.
    teardown(state, failed=bool(session.testsfailed))
    state.terminal.flush(capture_active=False)


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


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = state_of(config)
    harness = state.harness
    if harness is None or not harness.targets:
        return
    write = terminalreporter.write_line
    terminalreporter.section("vmcontainer")
    for kind, target in harness.targets.items():
        mode = target.mode.upper()
        if kind == "vm" and harness.accel is not None:
            mode = f"{mode}: {harness.accel.reason}"
        took = f", up in {target.up_seconds:.1f}s" if target.up_seconds is not None else ""
        write(f"{kind}: {target.resource_name} ({mode}{took})")
    for line in state.kept:
        write(f"kept {line}")
    if state.kept:
        write("remove kept targets with: python -m pytest_vmcontainer clean")
    matrix = state.parity.render(state.kinds)
    if matrix:
        terminalreporter.section("vmcontainer parity matrix", sep="-")
        for line in matrix:
            write(line)
    if state.comparison is not None and state.comparison.figures:
        _comparison_summary(terminalreporter, state)


def _comparison_summary(terminalreporter: Any, state: RunState) -> None:
    assert state.comparison is not None
    shown = {name: str(resolved.value) for name, resolved in state.settings.items()
             if name in ("vmc_target", "vmc_rounds", "vmc_warmup", "vmc_boot_rounds",
                         "vmc_density_vms",
                         "vmc_density_containers", "vmc_http_requests", "vmc_http_seconds")}
    comparison_report = state.comparison.report(shown)
    terminalreporter.section("vmcontainer: VM vs container, measured on this host", sep="-")
    for line in report.terminal_lines(comparison_report):
        terminalreporter.write_line(line)
    directory = state.value("vmc_report")
    if directory is not None:
        written = report.write_reports(comparison_report, directory)
        terminalreporter.write_line("report: " + ", ".join(str(p) for p in written.values()))


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None:
        return
    teardown(state, failed=False)
    if state.previous_sigterm is not None:
        signal.signal(signal.SIGTERM, state.previous_sigterm)
