"""The parity scan in a pytest run: once per run, when both targets are ready, before tests.

Whoever owns the targets scans them: the process that runs the tests, or the xdist
controller (which runs none). Its bring-up starts the scan in the background as
soon as both targets' bring-ups have started; the scan waits for both to be ready.
Test processes wait for the scan before their first target test: in a plain run
for the job, in an xdist worker for the result the controller publishes in the
run's session directory. One test item, ``vmcontainer parity scan``, carries the
result (JUnit properties) and, under ``--vmc-scan=fail``, fails on unexpected
differences.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.errors import VmcError
from pytest_vmcontainer.runstate import STATE, RunState, state_of
from pytest_vmcontainer.runtime import background
from pytest_vmcontainer.runtime.waiting import wait_for
from pytest_vmcontainer.scan.model import SIDES, ScanResult
from pytest_vmcontainer.scan.rules import Rule, parse_user_rules

ITEM_NAME = "vmcontainer parity scan"
RESULT_FILE = "scan.result.json"  # in the run's session directory, for xdist workers
WAIT_SECONDS = 7200.0  # as long as a worker waits for its targets (shared.WAIT_SECONDS)
PROP = "vmc.scan."


def user_rules(state: RunState) -> tuple[Rule, ...]:
    """The ``vmc_scan_expect`` lines as rules (a SettingError names a bad line)."""
    return parse_user_rules(state.settings.scan_expect, state.settings.where("vmc_scan_expect"))


def wanted(state: RunState) -> bool:
    """Scan when both targets run: both selected, and the selected tests need both."""
    return (state.settings.scan != "off" and set(state.kinds) == set(SIDES)
            and set(SIDES) <= state.needed)


def start(state: RunState) -> None:
    """Where targets are owned, once both bring-ups started: scan in the background."""
    if state.results.scan_job is not None or state.xdist.in_worker:
        return
    if state.settings.scan == "off" or set(state.kinds) != set(SIDES):
        return
    harness = state.get_harness()
    if all(harness.started(kind) for kind in SIDES):
        state.results.scan_job = background.Job("parity-scan", lambda: _scan(state))


def _scan(state: RunState) -> ScanResult:
    from pytest_vmcontainer.scan import scan_hosts
    from pytest_vmcontainer.scan.bases import scan_bases

    harness = state.get_harness()
    try:
        targets = {kind: harness.get(kind) for kind in SIDES}
    except VmcError as error:
        result = ScanResult.skip(f"a target did not come up ({error.cause})")
    else:
        try:
            ports = {port for target in targets.values() for port in target.host_ports}
            bases = scan_bases(state.settings.vagrantfile, state.settings.dockerfile)
            result = scan_hosts({kind: target.host for kind, target in targets.items()},
                                {kind: target.resource_name for kind, target in targets.items()},
                                state.settings.scan_paths, user_rules(state), bases,
                                ports)
        except VmcError as error:
            result = ScanResult.skip(error.one_line())
        except Exception as error:  # a scan that breaks must not break the tests it precedes
            result = ScanResult.skip(f"the scan failed ({type(error).__name__}: {error}); "
                                     "please report it, and use --vmc-scan=off meanwhile")
        harness.progress.say("parity scan: " + (result.skipped or (
            f"{len(result.unexpected)} unexpected differences, {len(result.expected)} "
            "expected (details at the end of the run)")))
    if harness.session is not None:
        path = harness.session.dir / RESULT_FILE
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(result.to_json()))
        partial.replace(path)
    return result


def wait(state: RunState) -> ScanResult | None:
    """Before a target test: the run's scan, once it is made (None: no scan in this run)."""
    results = state.results
    if results.scan is not None:
        return results.scan
    if state.xdist.shared_dir is not None:  # an xdist worker: the controller scans
        if wanted(state):
            results.scan = _published(state.xdist.shared_dir)
        return results.scan
    if results.scan_job is None:
        return None
    while True:
        try:
            results.scan = results.scan_job.wait(timeout=0.5)
            return results.scan
        except background.StillRunning:
            state.terminal.flush()


def _published(session_dir: Path) -> ScanResult:
    path = session_dir / RESULT_FILE

    def read() -> ScanResult | None:
        return ScanResult.from_json(json.loads(path.read_text())) if path.exists() else None

    return wait_for(read, timeout=WAIT_SECONDS, interval=0.2, max_interval=1.0,
                    what="the parity scan from the xdist controller")


def properties(result: ScanResult, limit: int = 200) -> list[tuple[str, object]]:
    """The result as JUnit properties: counts, times, then each unexpected difference."""
    props: list[tuple[str, object]] = [
        (f"{PROP}same", result.same), (f"{PROP}unexpected", len(result.unexpected)),
        (f"{PROP}expected", len(result.expected)), (f"{PROP}ignored", result.ignored)]
    props += [(f"{PROP}collected_in_s.{side}", seconds)
              for side, seconds in result.collected_in_s.items()]
    props += [(f"{PROP}{d.category}: {d.item}", json.dumps({"vm": d.vm, "container": d.container}))
              for d in result.unexpected[:limit]]
    return props


class ScanItem(pytest.Item):
    """The scan's result as a test: passes with properties; fails under --vmc-scan=fail."""

    def runtest(self) -> None:
        from pytest_vmcontainer.scan.render import terminal_lines

        state = state_of(self.config)
        result = wait(state)  # made when the targets came up; this item brings up nothing
        if result is None or result.skipped:
            pytest.skip("no parity scan: " + (result.skipped if result and result.skipped
                                               else "the targets did not come up in this run"))
        self.user_properties.extend(properties(result))
        if state.settings.scan == "fail" and result.unexpected:
            raise ScanDrift("\n".join(terminal_lines(result)))

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, ScanDrift):
            return f"the parity scan found unexpected differences:\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[str, int | None, str]:
        return "", None, ITEM_NAME


class ScanDrift(Exception):
    """Unexpected differences under --vmc-scan=fail."""


def add_item(session: pytest.Session, items: list[pytest.Item]) -> None:
    """The scan's test item, last, when the run scans (the same in every xdist worker)."""
    state = session.config.stash.get(STATE, None)
    if state is not None and wanted(state):
        items.append(ScanItem.from_parent(session, name=ITEM_NAME, nodeid=ITEM_NAME))


def finish(state: RunState) -> None:
    """At the end of the run, where targets are owned: the scan's result for the reports."""
    results = state.results
    if results.scan is None and results.scan_job is not None and not state.xdist.in_worker:
        try:
            results.scan = results.scan_job.wait()
        except Exception as error:  # a broken scan must not lose the run's report
            results.scan = ScanResult.skip(f"the scan failed ({error})")
