"""The end of one pytest run: its report, --vmc-report, the terminal summary, and teardown.

Called by the plugin (``plugin.py``) and the fixtures (``fixtures.py``) with the run's
state (``runstate.py``). Nothing here is a pytest hook.
"""

from __future__ import annotations

from typing import Any

from pytest_vmcontainer import runreport
from pytest_vmcontainer.errors import ReportError, VmcError
from pytest_vmcontainer.parity import PROP_CHECK, PROP_ROW, PROP_TARGET
from pytest_vmcontainer.runstate import RunState
from pytest_vmcontainer.runtime import signals


def run_report(state: RunState) -> runreport.RunReport:
    """The matrix, the comparison (when rows were measured) and the inputs hash; made once,
    when every test has reported."""
    if state.results.final is None:
        state.results.final = _make_run_report(state)
    return state.results.final


def _make_run_report(state: RunState) -> runreport.RunReport:
    from pytest_vmcontainer.comparison.measure import host_facts
    from pytest_vmcontainer.comparison.results import ComparisonReport

    results = state.results
    shown = runreport.settings_shown(state.settings.by_name())
    benchmarks = results.user_benchmarks.results()
    if (results.comparison is not None and results.comparison.figures) or benchmarks:
        comparison = state.get_comparison().report(shown, benchmarks)
    else:
        comparison = ComparisonReport(
            generated_at=runreport.now(), host=host_facts(with_vm_tools=False, with_docker=False),
            vm_mode=None, vm_mode_reason="", settings=shown, rows=[])
    if not comparison.rows:  # a parity-only run: its VM's mode is the one to show
        comparison.vm_mode = results.matrix.modes.get("vm")
    for kind, target in (state.harness.targets.items() if state.harness else ()):
        facts = target.facts()
        if facts.get("engine"):  # where it ran, when not on this host, and with what
            comparison.host[f"{kind}_engine"] = facts["engine"]
            if facts.get("engine_versions"):
                comparison.host[f"{kind}_engine_versions"] = facts["engine_versions"]
    digest = runreport.inputs_hash(state.settings.vagrantfile, state.settings.dockerfile,
                                   state.settings.provision_inputs)
    return runreport.RunReport(comparison, results.matrix,
                               runreport.targets_of(comparison, results.matrix), digest,
                               scan=results.scan)


def write_report(state: RunState) -> None:
    """--vmc-report=DIR: the run's report, with or without comparison rows (not in a worker)."""
    directory = state.settings.report
    if directory is None or state.xdist.in_worker:
        return
    try:
        state.results.report_paths = runreport.write(run_report(state), directory)
    except OSError as error:
        raise ReportError(f"cannot write the report into {directory} ({error})",
                          "give --vmc-report a writable directory") from None


def terminal_summary(state: RunState, reporter: Any) -> None:
    """Targets, parity matrix and comparison, printed once: never by an xdist worker."""
    if state.xdist.in_worker:
        return
    write = reporter.write_line
    harness = state.harness
    if harness is not None and harness.targets:
        reporter.section("vmcontainer")
        for kind, target in harness.targets.items():
            mode = target.mode.upper()
            if target.mode_reason:
                mode = f"{mode}: {target.mode_reason}"
            took = f", up in {target.up_seconds:.1f}s" if target.up_seconds is not None else ""
            origin = f", {target.origin}" if target.origin else ""
            write(f"{kind}: {target.resource_name} ({mode}{took}{origin})")
        for line in state.kept:
            write(f"kept {line}")
        if state.kept:
            write("remove one with: python -m pytest_vmcontainer destroy [vm|container] "
                  "--session ID; all with: python -m pytest_vmcontainer clean")
    results = state.results
    matrix = results.matrix.render(state.kinds)
    if matrix:
        reporter.section("vmcontainer parity matrix", sep="-")
        for line in matrix:
            write(line)
    if results.scan is not None:
        from pytest_vmcontainer.scan import render

        reporter.section(render.TITLE, sep="-")
        for line in render.terminal_lines(results.scan):
            write(line)
    measured = run_report(state).comparison
    if measured.rows:
        from pytest_vmcontainer.comparison import report

        reporter.section("vmcontainer: VM vs container, measured on this host", sep="-")
        for line in report.terminal_lines(measured):
            write(line)
    if measured.user_benchmarks:
        from pytest_vmcontainer.comparison import report

        reporter.section("vmcontainer: your benchmarks, VM against container", sep="-")
        if not measured.rows:
            write(report.mode_line(measured))
        for line in report.benchmark_lines(measured):
            write(line)
    if results.report_paths:
        write("report: " + ", ".join(str(path) for path in results.report_paths.values()))


DECLARED_ROW = "ports the files declare (Dockerfile EXPOSE, Vagrantfile forwarded_port)"


def note_declared_ports(state: RunState) -> None:
    """A row of the matrix: the guest ports each target's files declare. Both targets forward
    the union, so a port declared on one side only works on both, but it is a difference
    between the two files, and the matrix shows it as one."""
    declared = state.harness.declared_ports if state.harness is not None else {}
    matrix = state.results.matrix
    if not any(declared.values()) or DECLARED_ROW in matrix.rows:
        return
    for kind, ports in sorted(declared.items()):
        matrix.add_report([(PROP_TARGET, kind), (PROP_ROW, DECLARED_ROW),
                           (f"{PROP_CHECK}guest ports", list(ports))], "call", "passed")


def teardown(state: RunState, failed: bool) -> None:
    """Tear the targets down once; a second Ctrl-C meanwhile only prints a note."""
    harness = state.harness
    if harness is None:
        return
    note_declared_ports(state)
    with signals.teardown_uninterrupted():
        try:
            state.kept += harness.teardown(failed=failed)
        except VmcError as error:
            state.terminal.write(f"[vmcontainer] {error.one_line()}")
