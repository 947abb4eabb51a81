"""One run's report: the parity matrix, the comparison table, and what the run was made from.

``--vmc-report=DIR`` writes it as ``comparison.json`` (schema
``pytest-vmcontainer/comparison/1``: the comparison's keys, plus ``inputs_hash``,
``targets`` and ``parity``), ``comparison.md`` and ``comparison.html`` (the parity
matrix is a section of each), also for runs that measured no comparison row.
``python -m pytest_vmcontainer report`` shows a saved one again, and ``report
merge`` puts together the runs of different targets made from the same inputs,
e.g. a ``--target=vm`` run on a KVM runner and a ``--target=container`` run on
another machine. Files written before these keys existed still load: they have
an empty matrix and no inputs hash (so they cannot be merged).
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_vmcontainer.comparison import report as rendering
from pytest_vmcontainer.comparison import rows as row_rules
from pytest_vmcontainer.comparison.results import ComparisonReport, RowResult
from pytest_vmcontainer.errors import ReportError, SettingError
from pytest_vmcontainer.parity import KINDS, ParityStore, TestRow
from pytest_vmcontainer.scan import render as scan_rendering
from pytest_vmcontainer.scan.model import ScanResult

JSON_NAME = "comparison.json"


def inputs_hash(vagrantfile: Path, dockerfile: Path, provision_inputs: Sequence[Path]) -> str:
    """What both targets are provisioned from (see ``host.bases.inputs_hash``)."""
    from pytest_vmcontainer.host import bases

    return bases.inputs_hash(vagrantfile, dockerfile, provision_inputs)


@dataclass
class RunReport:
    comparison: ComparisonReport
    parity: ParityStore
    targets: list[str]  # the kinds that ran tests or were measured, in column order
    inputs_hash: str | None  # None: written before reports carried it
    merged_from: list[dict[str, Any]] = field(default_factory=list)
    scan: ScanResult | None = None  # the parity scan of both targets, when the run made one

    def columns(self) -> tuple[str, ...]:
        return tuple(self.targets) or KINDS

    def extra_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"inputs_hash": self.inputs_hash, "targets": list(self.targets),
                                "parity": self.parity.to_json()}
        if self.merged_from:
            data["merged_from"] = self.merged_from
        if self.scan is not None:
            data["scan"] = self.scan.to_json()
        return data


def targets_of(comparison: ComparisonReport, parity: ParityStore) -> list[str]:
    """Kinds with a parity outcome or comparison figures."""
    measured = {who for row in comparison.rows for who, figures in row.figures.items()
                if who in KINDS and figures}
    seen = set(parity.kinds_seen()) | measured
    return [kind for kind in KINDS if kind in seen]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def ensure_directory(directory: Path, where: str) -> None:
    """Fail before the tests run, not after, when the report could not be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SettingError(f"{where}: cannot create {directory} ({error.strerror})",
                           "give a writable directory") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise SettingError(f"{where}: {directory} is not writable", "give a writable directory")


# ---------------------------------------------------------------------------- rendering


def run_line(report: RunReport) -> str:
    targets = ", ".join(report.targets) or "none"
    line = f"targets: {targets}; inputs hash: {report.inputs_hash or 'not recorded'}"
    if report.merged_from:
        line += "; merged from " + ", ".join(str(run["file"]) for run in report.merged_from)
    return line


def value_text(seen: Mapping[str, Any], kind: str) -> str:
    """A recorded value as text: a string as it is, anything else as JSON; "-" if not seen."""
    if kind not in seen:
        return "-"
    value = seen[kind]
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _check_rows(row: TestRow, columns: Sequence[str]) -> list[list[str]]:
    outcomes = [row.outcomes.get(kind, "-") for kind in columns]
    return [[row.test, *outcomes, check,
             *[value_text(row.values[check], kind) for kind in columns],
             row.verdict(check)] for check in row.values]


def parity_table(report: RunReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the matrix with every value: one line per test and check. Tests
    that recorded no value are left out (see ``valueless``)."""
    columns = report.columns()
    header = ["test", *columns, "check", *[f"{kind} value" for kind in columns], "parity"]
    return header, [cells for row in report.parity.ordered()
                    for cells in _check_rows(row, columns)]


def valueless(report: RunReport) -> str:
    """One line on the tests that recorded no value: how many, and those that did not pass."""
    rows = [row for row in report.parity.ordered() if not row.values]
    if not rows:
        return ""
    columns = report.columns()
    failing = [row.test + " (" + ", ".join(f"{k} {row.outcomes.get(k, '-')}" for k in columns)
               + ")" for row in rows if any(row.outcomes.get(k) != "passed" for k in columns)]
    tests = f"{len(rows)} test{'s' if len(rows) > 1 else ''}"
    return (f"{tests} recorded no value and {'are' if len(rows) > 1 else 'is'} not in the "
            "matrix; "
            + (f"not passed on every target: {'; '.join(failing)}" if failing
               else "all passed on every target"))


def _parity_class(cells: Sequence[str]) -> str:
    verdict = cells[-1]
    if verdict == "DIFFERS":
        return "verdict-does-not-hold"
    if verdict.startswith("same"):
        return "verdict-holds"
    return "verdict-not-measurable"


DIFFERENCE_HEADER = ["found by", "what", "vm", "container", "why"]


def differences(report: RunReport, expected: bool) -> list[list[str]]:
    """The scan's and the parity matrix's differences, unexpected or expected: one list each
    (found by, what, vm value, container value, why)."""
    rows = []
    if report.scan is not None:
        found = report.scan.expected if expected else report.scan.unexpected
        rows += [["scan", f"{d.category}: {d.item}", d.vm if d.vm is not None else "(absent)",
                  d.container if d.container is not None else "(absent)",
                  d.expected or "unexpected"] for d in found]
    for row in report.parity.ordered():
        if bool(row.expected_diff) != expected:
            continue
        rows += [["parity test", f"{row.test}: {check}", value_text(seen, "vm"),
                  value_text(seen, "container"), row.expected_diff or "DIFFERS"]
                 for check, seen in row.differences().items()]
    return rows


def _verdict_column(column: int) -> Callable[[int, int], str]:
    return lambda row, c: "verdict-does-not-hold" if c == column else ""


def _difference_section(report: RunReport) -> rendering.Section:
    unexpected, expected = differences(report, False), differences(report, True)
    markdown, html = [], []
    for title, rows in (("Unexpected", unexpected), ("Expected", expected)):
        markdown += [f"### {title} ({len(rows)})", ""]
        html.append(f"<h3>{title} ({len(rows)})</h3>")
        if not rows:
            markdown += ["None.", ""]
            html.append("<p>None.</p>")
            continue
        markdown += [*rendering.md_table(DIFFERENCE_HEADER, [
            [*cells[:2], *(_cut(value, 120) for value in cells[2:4]), cells[4]]
            for cells in rows]), ""]
        html.append(rendering.html_markup_table(DIFFERENCE_HEADER, [
            [rendering.escape(cells[0]), rendering.html_cut(cells[1], 70),
             rendering.html_cut(cells[2], 50), rendering.html_cut(cells[3], 50),
             rendering.escape(cells[4])] for cells in rows],
            _verdict_column(4) if title == "Unexpected" else None))
    if report.scan is None:
        note = "No parity scan in this run (it runs when both targets do; --vmc-scan)."
        markdown.append(note)
        html.append(f"<p>{rendering.escape(note)}</p>")
    return rendering.Section("Differences", markdown, "\n".join(html))


def _scan_section(scan: ScanResult) -> rendering.Section:
    """The scan's summary: cost per target, counts, expected differences by reason, notes."""
    lines = [scan_rendering.summary(scan)]
    lines += [f"{n} expected: {reason}" for reason, n in scan_rendering.expected_counts(scan)]
    lines += [f"note: {note}" for note in scan.notes]
    return rendering.Section("Parity scan", [f"- {rendering.md_cell(line)}" for line in lines],
                             "<ul>" + "".join(f"<li>{rendering.escape(line)}</li>"
                                              for line in lines) + "</ul>")


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def sections(report: RunReport) -> list[rendering.Section]:
    """The differences first (scan and parity matrix, unexpected then expected), then the run,
    the parity matrix and the scan's summary, for the Markdown and HTML pages."""
    vm_mode = report.comparison.vm_mode or report.parity.modes.get("vm")
    run_facts = [["targets", ", ".join(report.targets) or "none"],
                 ["inputs hash", report.inputs_hash or "not recorded"],
                 ["VM mode", vm_mode.upper() if vm_mode else "no VM ran"]]
    run_facts += [["merged from", f"{run['file']} ({', '.join(run['targets']) or 'no target'}, "
                   f"{run['generated_at']})"] for run in report.merged_from]
    header, table = parity_table(report)
    unexpected = report.parity.unexpected_differences()
    summary = (f"{len(report.parity.rows)} tests; unexpected differences: "
               + ("; ".join(unexpected) if unexpected else "none"))
    notes = [line for line in (summary, valueless(report)) if line]
    if report.parity.rows:
        markdown = [*(f"{line}  " for line in notes), ""]
        if table:
            markdown += rendering.md_table(header, [
                [*cells[:-1 - len(report.columns())],
                 *(_cut(value, 120) for value in cells[-1 - len(report.columns()):-1]),
                 cells[-1]] for cells in table])
        values = range(len(header) - 1 - len(report.columns()), len(header) - 1)
        html = "".join(f"<p>{rendering.escape(line)}</p>\n" for line in notes)
        if table:
            html += rendering.html_markup_table(
                header, [[rendering.html_cut(cell, 40 if c in values else 70)
                          for c, cell in enumerate(cells)] for cells in table],
                lambda r, c: _parity_class(table[r]) if c == len(header) - 1 else "")
    else:
        markdown = ["_No parity tests ran._"]
        html = "<p>No parity tests ran.</p>"
    found = [_difference_section(report),
             rendering.Section("Run", rendering.md_table(["fact", "value"], run_facts),
                               rendering.html_table(["fact", "value"], run_facts)),
             rendering.Section("Parity matrix", markdown, html)]
    return found + ([_scan_section(report.scan)] if report.scan is not None else [])


def terminal_lines(report: RunReport) -> list[str]:
    """The run line, the comparison table (when rows were measured) and the parity matrix."""
    lines = [run_line(report)]
    if report.comparison.rows:
        lines += rendering.terminal_lines(report.comparison)
    lines += rendering.benchmark_lines(report.comparison)
    matrix = report.parity.render(report.columns())
    lines += ["parity matrix:", *matrix] if matrix else ["parity matrix: no parity tests ran"]
    if report.scan is not None:
        lines += ["parity scan:", *scan_rendering.terminal_lines(report.scan)]
    return lines


def write(report: RunReport, directory: Path) -> dict[str, Path]:
    """comparison.json, .md and .html; and scan.json when the run made a scan."""
    written = rendering.write_reports(report.comparison, directory, sections(report),
                                      report.extra_json())
    if report.scan is not None:
        written["scan"] = scan_rendering.write_json(report.scan, directory)
    return written


# ---------------------------------------------------------------------------- reading back


def redecide(comparison: ComparisonReport, keep_unknown: bool = True) -> None:
    """Verdicts by this version's rules; a row this version does not know (one added through
    ``pytest_vmcontainer_comparison_rows``) keeps its saved verdict, or none."""
    for row in comparison.rows:
        rule = row_rules.BY_ID.get(row.id)
        if rule is not None:
            row.verdict = row_rules.decide(rule, row.figures, comparison.vm_mode)
        elif not keep_unknown:
            row.verdict = None


def load(path: Path) -> RunReport:
    """A saved comparison.json; ReportError (one line) when it cannot be read."""
    try:
        data = rendering.load_report(Path(path))
        comparison = rendering.report_from_json(data)
        parity = ParityStore.from_json(data.get("parity") or {})
        scan = ScanResult.from_json(data["scan"]) if data.get("scan") else None
    except (OSError, ValueError, TypeError) as error:
        raise ReportError(f"cannot read {path} ({error})",
                          f"pass a {JSON_NAME} written by --vmc-report") from None
    targets = data.get("targets")
    if not isinstance(targets, list):  # an older file: from what it measured
        targets = targets_of(comparison, parity)
    redecide(comparison)
    found = data.get("inputs_hash")
    return RunReport(comparison, parity, [str(kind) for kind in targets],
                     str(found) if found else None, list(data.get("merged_from") or []), scan)


# ---------------------------------------------------------------------------- merging


def _label(report: RunReport, index: int) -> str:
    return f"{'+'.join(report.targets)} run" if report.targets else f"run {index + 1}"


def _merge_figures(a: RowResult, b: RowResult, a_targets: Sequence[str]) -> dict[str, Any]:
    """Each target's figures from its run; the host's from both (the host of the VM's run
    first), the larger ``spread`` of the two (a noisy host makes a speed claim unmeasurable)."""
    figures: dict[str, Any] = {}
    for who in KINDS:
        first, second = (a, b) if who in a_targets else (b, a)
        chosen = first.figures.get(who) or second.figures.get(who)
        if chosen:
            figures[who] = dict(chosen)
    hosts = [run.figures.get("host") or {} for run in ((a, b) if "vm" in a_targets else (b, a))]
    if any(hosts):
        host = {**hosts[1], **hosts[0]}
        spreads = [h["spread"] for h in hosts if isinstance(h.get("spread"), int | float)]
        if spreads:
            host["spread"] = max(spreads)
        figures["host"] = host
    return figures


def _merge_comparison(a: RunReport, b: RunReport, labels: Sequence[str]) -> ComparisonReport:
    ca, cb = a.comparison, b.comparison
    by_id: dict[str, tuple[RowResult | None, RowResult | None]] = {}
    for row in ca.rows:
        by_id[row.id] = (row, None)
    for row in cb.rows:
        by_id[row.id] = (by_id.get(row.id, (None, None))[0], row)
    rows = []
    for first, second in by_id.values():
        if first is None or second is None:
            only = first or second
            assert only is not None
            rows.append(only)
            continue
        merged = RowResult(**{**vars(first), "figures": _merge_figures(first, second, a.targets),
                              "verdict": first.verdict})
        if row_rules.BY_ID.get(merged.id) is None and first.figures and second.figures:
            merged.verdict = None  # a rule this version does not have: no verdict on both
        rows.append(merged)
    vm_run = (ca if "vm" in a.targets else cb if "vm" in b.targets
              else ca if ca.vm_mode else cb)
    host = {f"{label}: {key}": value for label, run in zip(labels, (ca, cb), strict=True)
            for key, value in run.host.items()}
    settings: dict[str, Any] = {}
    for key in [*ca.settings, *(k for k in cb.settings if k not in ca.settings)]:
        values = [run.settings.get(key) for run in (ca, cb)]
        settings[key] = (values[0] if values[0] == values[1] else " / ".join(
            f"{value} ({label})" for value, label in zip(values, labels, strict=True)
            if value is not None))
    merged_report = ComparisonReport(
        generated_at=now(), host=host, vm_mode=vm_run.vm_mode or ca.vm_mode or cb.vm_mode,
        vm_mode_reason=vm_run.vm_mode_reason, settings=settings, rows=rows)
    redecide(merged_report)
    return merged_report


def merge(a: RunReport, b: RunReport, names: Sequence[str]) -> RunReport:
    """Two runs of different targets, made from the same inputs, as one report.

    Refuses (ReportError, one line naming what differs) runs without an inputs hash, runs
    with different inputs hashes, and two runs that both ran the same target.
    """
    for run, name in zip((a, b), names, strict=True):
        if run.inputs_hash is None:
            raise ReportError(f"cannot merge {name}: it records no inputs hash (written by an "
                              "older pytest-vmcontainer)",
                              "re-run its tests with --vmc-report and merge the new report")
    if a.inputs_hash != b.inputs_hash:
        raise ReportError(f"cannot merge {names[0]} and {names[1]}: they were made from "
                          f"different inputs (inputs hash {a.inputs_hash} vs {b.inputs_hash})",
                          "merge runs of the same Vagrantfile, Dockerfile, provisioning inputs "
                          "and base recipes (the same commit)")
    both = [kind for kind in a.targets if kind in b.targets]
    if both:
        raise ReportError(f"cannot merge {names[0]} and {names[1]}: both ran the "
                          f"{' and '.join(both)} target{'s' if len(both) > 1 else ''}",
                          "merge one run per target, e.g. a --target=vm run with a "
                          "--target=container run")
    labels = [_label(run, i) for i, run in enumerate((a, b))]
    comparison = _merge_comparison(a, b, labels)
    parity = a.parity.merged(b.parity)
    if not comparison.rows:  # parity-only runs: their VM's mode is the one to show
        comparison.vm_mode = parity.modes.get("vm")
    targets = [kind for kind in KINDS if kind in a.targets or kind in b.targets]
    merged_from = [{"file": str(name), "targets": list(run.targets),
                    "generated_at": run.comparison.generated_at}
                   for run, name in zip((a, b), names, strict=True)]
    # A scan needs both targets in one run: a merge carries the one either run made.
    return RunReport(comparison, parity, targets, a.inputs_hash, merged_from,
                     a.scan if a.scan is not None else b.scan)


def settings_shown(settings: Mapping[str, Any]) -> dict[str, str]:
    """The settings a report lists (those that change what is measured)."""
    names = ("vmc_target", "vmc_rounds", "vmc_warmup", "vmc_boot_rounds", "vmc_density_vms",
             "vmc_density_containers", "vmc_http_requests", "vmc_http_seconds")
    return {name: str(settings[name]) for name in names if name in settings}
