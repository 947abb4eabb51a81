"""The pytest plugin: options and hooks only; state lives in ``runstate``, fixtures in ``fixtures``.

Registered through the ``pytest11`` entry point. The fixtures module is
registered from ``pytest_configure`` so that its ``host`` fixture (the current
target's testinfra Host) takes precedence over pytest-testinfra's own.
Loading the plugin imports neither the docker SDK, nor python-vagrant, nor
psutil: those load when a target is made.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

import pytest

from pytest_vmcontainer import (
    hookspecs,
    options,
    runend,
    runreport,
    runstate,
    scanrun,
    shared,
    targets,
)
from pytest_vmcontainer.errors import SettingError, VmcError
from pytest_vmcontainer.runend import teardown
from pytest_vmcontainer.runstate import (
    PARAMETRIZED_FIXTURES,
    STATE,
    TARGET_FIXTURES,
    RunState,
    TerminalProgress,
    check_targets_alive,
    fail_for,
    harness_hooks,
    parity_row,
    state_of,
)
from pytest_vmcontainer.runtime import signals
from pytest_vmcontainer.settings import RunSettings

if TYPE_CHECKING:
    pass

# --- hooks and options -------------------------------------------------------------------------


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


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


@pytest.hookimpl(trylast=True)
def pytest_vmcontainer_make_target(kind: str, spec: Any, progress: Any) -> Any:
    """The default backends (Vagrant for "vm", Docker for "container"), after any other."""
    return targets.make(kind, spec, progress)


# --- configuration and lifecycle -------------------------------------------------------------

@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "expect_diff(reason): the VM and the container legitimately differ in what "
        "this test records; both values are shown in the parity matrix instead of compared")
    ini_dir = config.inipath.parent if config.inipath else config.rootpath
    xdist = shared.XdistRole.from_config(config)
    try:
        resolved = options.resolve(_PytestSources(config), os.environ,
                                   config.invocation_params.dir, ini_dir)
        settings = RunSettings.from_resolved(resolved)
        settings.export_engines(os.environ)
        kinds = settings.kinds
        options.check_files(resolved, kinds, lambda p: p.is_file() and os.access(p, os.R_OK))
        if not xdist.in_worker and settings.report is not None:
            runreport.ensure_directory(settings.report, settings.where("vmc_report"))
    except SettingError as error:
        raise pytest.UsageError(str(error)) from None
    extra_rows = [row for rows in config.hook.pytest_vmcontainer_comparison_rows() for row in rows]
    state = RunState(settings, kinds, TerminalProgress(config), hooks=harness_hooks(config),
                     extra_rows=extra_rows, xdist=xdist)
    try:
        scanrun.user_rules(state)  # a bad vmc_scan_expect line stops the run before it starts
    except SettingError as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[STATE] = state
    from pytest_vmcontainer import fixtures

    config.pluginmanager.register(fixtures, "vmcontainer-fixtures")
    config.pluginmanager.register(ParityReports(state), "vmcontainer-parity")
    state.previous_sigterm = signals.sigterm_as_interrupt()


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = state_of(config).settings
    shown: tuple[tuple[str, object], ...] = (
        ("vmc_target", settings.target), ("vmc_vagrantfile", settings.vagrantfile),
        ("vmc_dockerfile", settings.dockerfile), ("vmc_keep", settings.keep),
        ("vmc_reuse", settings.reuse), ("vmc_ports", ",".join(map(str, settings.ports))))
    parts = [f"{options.BY_NAME[name].flag.lstrip('-')}={value} ({settings.sources[name]})"
             for name, value in shown]
    return ["vmcontainer: " + ", ".join(parts)]


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests using ``target`` (or ``host``/``parity``) run once per selected target.

    First, so the target's id leads the test id (``test_x[vm-a]``): ``scheduling`` relies on it.
    """
    if any(name in metafunc.fixturenames for name in PARAMETRIZED_FIXTURES):
        kinds = list(state_of(metafunc.config).kinds)
        metafunc.parametrize("target", kinds, indirect=True, ids=kinds, scope="session")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Remember which targets the selected tests need (nothing else boots; nor do refused
    comparison tests), the collection's order, and label each target test's reports with
    its target and parity row.

    Last of this hook (after -k and -m deselected theirs), and before collection finishes:
    an xdist worker's needs must be on disk before its collection reaches the controller.
    """
    state = state_of(config)
    refusal = runstate.comparison_refusal(state)
    for item in items:
        item.user_properties.extend(runstate.target_properties(item))
        if refusal is not None and runstate.uses_comparison(item):
            item.stash[runstate.REFUSED] = refusal  # fails at its setup, and starts nothing
            continue
        names = getattr(item, "fixturenames", ())
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "target" in callspec.params:
            state.needed.add(callspec.params["target"])
        state.needed.update(kind for kind in TARGET_FIXTURES if kind in names)
    state.needed &= set(state.kinds)
    scanrun.add_item(session, items)
    state.results.note_collection(item.nodeid for item in items)
    state.xdist.publish_needed(state.needed)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """On the xdist controller: every worker shares the controller's session (``shared``)."""
    state = state_of(node.config)
    node.workerinput[shared.SESSION_KEY] = str(state.get_harness().open_session().dir)
    state.terminal.direct = True  # the controller captures nothing: print progress at once


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """On the xdist controller (which collects nothing itself): the workers' collection order;
    and the bring-up of the targets that worker's tests need."""
    state = state_of(node.config)
    state.results.note_collection(ids)
    harness = state.get_harness()
    kinds = shared.read_needed(harness.open_session().dir, str(node.workerinput["workerid"]))
    if kinds:
        try:
            harness.start(kinds)
            scanrun.start(state)
        except VmcError as error:
            harness.publish_failure(kinds, error)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``--dist load``, both targets of a parity row go to the same worker."""
    from pytest_vmcontainer import scheduling

    return scheduling.make_scheduler(config, log)


class ParityReports:
    """Registered per run: target tests' reports carry their mode, and build the matrix."""

    def __init__(self, state: RunState) -> None:
        self._state = state

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Any:
        if call.when == "call":
            item.user_properties.extend(runstate.mode_properties(item))
        return (yield)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Every phase of every test, here and, under xdist, on the controller from workers."""
        self._state.results.take_report(report)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A comparison test the run refused at collection fails before its fixtures start."""
    refusal = item.stash.get(runstate.REFUSED, None)
    if refusal is not None:
        fail_for(None, refusal)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """A team's own benchmark on a target: its rounds join the VM-vs-container summary."""
    row = parity_row(item) if call.when == "call" else None
    if row is not None:
        state_of(item.config).results.user_benchmarks.collect(row[0], row[1], item)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """A target that died since the last test fails this one with one line saying so. A harness
    error raised inside a test (an export, an extra instance, a probe) reads like one raised
    while bringing a target up: cause, remedy and log tail, not plugin internals."""
    check_targets_alive(pyfuncitem.funcargs)
    try:
        return (yield)
    except VmcError as error:
        callspec = getattr(pyfuncitem, "callspec", None)
        kind = callspec.params.get("target") if callspec is not None else None
        fail_for(str(kind) if kind else None, error)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Backstop: the harness fixture's finalizer normally tears down before this."""
    state = state_of(session.config)
    # An interrupted run is not a failed one: --vmc-keep=on-failure keeps nothing after Ctrl-C.
    teardown(state, failed=bool(session.testsfailed))
    scanrun.finish(state)
    state.terminal.flush(capture_active=False)
    try:
        runend.write_report(state)
    except VmcError as error:
        state.terminal.write(f"[vmcontainer] error: {error.one_line()}")
        state.terminal.flush(capture_active=False)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    runend.terminal_summary(state_of(config), terminalreporter)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None:
        return
    teardown(state, failed=False)
    if state.previous_sigterm is not None:
        signal.signal(signal.SIGTERM, state.previous_sigterm)
