"""The run's report drawn: its sections of the Markdown and HTML pages (differences, the run,
the parity matrix, the scan), its terminal lines, and the files --vmc-report writes."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_vmcontainer.comparison import report as rendering
from pytest_vmcontainer.host import sites
from pytest_vmcontainer.parity import KINDS, TestRow
from pytest_vmcontainer.runreport.model import RunReport
from pytest_vmcontainer.scan import render as scan_rendering
from pytest_vmcontainer.scan.model import ScanResult


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


def places(report: RunReport) -> list[tuple[str, str]]:
    """(kind, where it ran) for every target, once one of them ran on another machine (its
    engine's URL, from ``runend``); nothing when all ran on this host."""
    host = report.comparison.host
    elsewhere = {kind: str(host[f"{kind}_engine"]) + (
        f" ({host[f'{kind}_engine_versions']})" if f"{kind}_engine_versions" in host else "")
        for kind in KINDS if f"{kind}_engine" in host}
    if not elsewhere:
        return []
    return [(kind, elsewhere.get(kind, sites.THIS_HOST)) for kind in KINDS
            if kind in report.targets or kind in elsewhere]


def sections(report: RunReport) -> list[rendering.Section]:
    """The differences first (scan and parity matrix, unexpected then expected), then the run,
    the parity matrix and the scan's summary, for the Markdown and HTML pages."""
    vm_mode = report.comparison.vm_mode or report.parity.modes.get("vm")
    run_facts = [["targets", ", ".join(report.targets) or "none"],
                 ["inputs hash", report.inputs_hash or "not recorded"],
                 ["VM mode", vm_mode.upper() if vm_mode else "no VM ran"]]
    run_facts += [[f"{kind} ran on", place] for kind, place in places(report)]
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

