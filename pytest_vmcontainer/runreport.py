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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_vmcontainer.comparison import report as rendering
from pytest_vmcontainer.comparison import rows as row_rules
from pytest_vmcontainer.comparison.results import ComparisonReport
from pytest_vmcontainer.errors import ReportError, SettingError
from pytest_vmcontainer.parity import KINDS, ParityStore, TestRow
from pytest_vmcontainer.runtime import hashing

JSON_NAME = "comparison.json"


def inputs_hash(vagrantfile: Path, dockerfile: Path, provision_inputs: Sequence[Path]) -> str:
    """What both targets are provisioned from: the Vagrantfile, the Dockerfile, the
    provisioning inputs and both base recipes (as ``HarnessConfig.reuse_key``, without the
    forwarded ports). File names count relative to each path given, so checkouts in
    different directories hash the same. Reads files only; brings nothing up."""
    from pytest_vmcontainer.host import bases

    return hashing.content_hash(
        [vagrantfile, dockerfile, *provision_inputs],
        extra=[bases.box_recipe_hash(), bases.docker_recipe_hash()])[:16]


@dataclass
class RunReport:
    comparison: ComparisonReport
    parity: ParityStore
    targets: list[str]  # the kinds that ran tests or were measured, in column order
    inputs_hash: str | None  # None: written before reports carried it
    merged_from: list[dict[str, Any]] = field(default_factory=list)

    def columns(self) -> tuple[str, ...]:
        return tuple(self.targets) or KINDS

    def extra_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"inputs_hash": self.inputs_hash, "targets": list(self.targets),
                                "parity": self.parity.to_json()}
        if self.merged_from:
            data["merged_from"] = self.merged_from
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
    if not row.values:
        return [[row.test, *outcomes, "-", *["-" for _ in columns], "no values recorded"]]
    return [[row.test, *outcomes, check,
             *[value_text(row.values[check], kind) for kind in columns],
             row.verdict(check)] for check in row.values]


def parity_table(report: RunReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the matrix with every value: one line per test and check."""
    columns = report.columns()
    header = ["test", *columns, "check", *[f"{kind} value" for kind in columns], "parity"]
    return header, [cells for row in report.parity.ordered()
                    for cells in _check_rows(row, columns)]


def _parity_class(cells: Sequence[str]) -> str:
    verdict = cells[-1]
    if verdict == "DIFFERS":
        return "verdict-does-not-hold"
    if verdict.startswith("same"):
        return "verdict-holds"
    return "verdict-not-measurable"


def sections(report: RunReport) -> list[rendering.Section]:
    """The run and its parity matrix, for the Markdown and HTML pages."""
    vm_mode = report.comparison.vm_mode or report.parity.modes.get("vm")
    run_facts = [["targets", ", ".join(report.targets) or "none"],
                 ["inputs hash", report.inputs_hash or "not recorded"],
                 ["VM mode", vm_mode.upper() if vm_mode else "no VM ran"]]
    run_facts += [["merged from", f"{run['file']} ({', '.join(run['targets']) or 'no target'}, "
                   f"{run['generated_at']})"] for run in report.merged_from]
    header, table = parity_table(report)
    differences = report.parity.unexpected_differences()
    summary = (f"{len(report.parity.rows)} tests; unexpected differences: "
               + ("; ".join(differences) if differences else "none"))
    if table:
        markdown = [summary, "", *rendering.md_table(header, table)]
        html = (f"<p>{rendering.escape(summary)}</p>\n" + rendering.html_table(
            header, table, lambda r, c: _parity_class(table[r]) if c == len(header) - 1 else ""))
    else:
        markdown = ["_No parity tests ran._"]
        html = "<p>No parity tests ran.</p>"
    return [rendering.Section("Run", rendering.md_table(["fact", "value"], run_facts),
                              rendering.html_table(["fact", "value"], run_facts)),
            rendering.Section("Parity matrix", markdown, html)]


def terminal_lines(report: RunReport) -> list[str]:
    """The run line, the comparison table (when rows were measured) and the parity matrix."""
    lines = [run_line(report)]
    if report.comparison.rows:
        lines += rendering.terminal_lines(report.comparison)
    matrix = report.parity.render(report.columns())
    lines += ["parity matrix:", *matrix] if matrix else ["parity matrix: no parity tests ran"]
    return lines


def write(report: RunReport, directory: Path) -> dict[str, Path]:
    return rendering.write_reports(report.comparison, directory, sections(report),
                                   report.extra_json())


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
    except (OSError, ValueError, TypeError) as error:
        raise ReportError(f"cannot read {path} ({error})",
                          f"pass a {JSON_NAME} written by --vmc-report") from None
    targets = data.get("targets")
    if not isinstance(targets, list):  # an older file: from what it measured
        targets = targets_of(comparison, parity)
    redecide(comparison)
    found = data.get("inputs_hash")
    return RunReport(comparison, parity, [str(kind) for kind in targets],
                     str(found) if found else None, list(data.get("merged_from") or []))


def settings_shown(settings: Mapping[str, Any]) -> dict[str, str]:
    """The settings a report lists (those that change what is measured)."""
    names = ("vmc_target", "vmc_rounds", "vmc_warmup", "vmc_boot_rounds", "vmc_density_vms",
             "vmc_density_containers", "vmc_http_requests", "vmc_http_seconds")
    return {name: str(settings[name]) for name in names if name in settings}
