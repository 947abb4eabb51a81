"""The report as rows of text cells, the same for every format: the main table, a row's
figures and evidence, the host facts and a team's own benchmarks.

Rendering only reads the report. A missing row, target, figure or verdict shows
as "not measured" or "-"; nothing here raises on incomplete results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_vmcontainer.comparison.report.values import (
    MISSING,
    figure_unit,
    format_value,
    interval_text,
    number,
    one_line,
)
from pytest_vmcontainer.comparison.results import (
    ComparisonReport,
    RowResult,
    UserBenchmark,
    Verdict,
)


@dataclass(frozen=True)
class Section:
    """More of the page from elsewhere (the run's parity matrix), after the VM mode line."""

    title: str
    markdown: Sequence[str]  # lines under the "## title" heading
    html: str  # the body under the <h2>


NOT_MEASURED = "not measured"
TARGETS = ("vm", "container", "host")
TITLE = "VM vs container comparison"

MAIN_HEADER = ["aspect", "claim VM", "claim container", "VM", "container", "verdict", "reason"]
FIGURE_HEADER = ["figure", "vm", "container", "host"]
BENCHMARK_HEADER = ["benchmark", "VM (median)", "container (median)",
                    "VM/container (median ratio)", "verdict"]
BENCHMARK_TITLE = "Your benchmarks, VM against container"
BENCHMARK_NOTE = ("ratio of the medians of the benchmark's rounds, with a 95% bootstrap "
                  "interval; a side is named only when the interval clears 10%")


def target_figures(row: RowResult | None, who: str) -> Mapping[str, Any] | None:
    """A target's figures, or None when the target was not measured for this row."""
    if row is None or not isinstance(row.figures, Mapping):
        return None
    figures = row.figures.get(who)
    return figures if isinstance(figures, Mapping) and figures else None


def vm_mode(row: RowResult | None, report: ComparisonReport) -> str | None:
    """The VM's mode for this row (KVM, TCG), else the report's; upper case."""
    figures = target_figures(row, "vm")
    mode = figures.get("mode") if figures else None
    mode = mode or report.vm_mode
    return str(mode).upper() if mode else None


def _headline_cell(row: RowResult, who: str, report: ComparisonReport) -> str:
    figures = target_figures(row, who)
    if figures is None:
        return NOT_MEASURED
    text = format_value(figures.get(row.headline), row.unit)
    ci = figures.get(f"{row.headline}_ci95")
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(number(v) is not None for v in ci):
        text += f" ({ci[0]:.2f}-{ci[1]:.2f}x)"
    notes = []
    if who == "vm" and (mode := vm_mode(row, report)):
        notes.append(mode)
    if figures.get("disk_cache"):
        notes.append(f"disk cache {figures['disk_cache']}")
    return text + (f" [{', '.join(notes)}]" if notes else "")


def status(verdict: Verdict | None) -> str:
    """The verdict's status, or "not measured"."""
    return verdict.status if verdict is not None else NOT_MEASURED


def reason(verdict: Verdict | None) -> str:
    """The verdict's reason on one line, or ""."""
    return one_line(verdict.reason) if verdict is not None else ""


def mode_line(report: ComparisonReport) -> str:
    """E.g. "VM figures: TCG (KVM did not boot the box kernel within 10s)"."""
    mode = report.vm_mode.upper() if report.vm_mode else "none (no VM measured)"
    why = one_line(report.vm_mode_reason)
    return f"VM figures: {mode}" + (f" ({why})" if why else "")


def main_rows(report: ComparisonReport) -> list[list[str]]:
    """aspect, claim VM, claim container, VM, container, verdict, reason; one list per row."""
    return [
        [one_line(row.aspect), one_line(row.claim_vm), one_line(row.claim_container),
         _headline_cell(row, "vm", report), _headline_cell(row, "container", report),
         status(row.verdict), reason(row.verdict)]
        for row in report.rows
    ]


def figure_rows(row: RowResult) -> list[list[str]]:
    """figure, vm, container, host; every figure of the row, sorted by key."""
    targets = [target_figures(row, who) for who in TARGETS]
    keys = sorted({str(key) for figures in targets if figures for key in figures})
    return [
        [key] + [format_value(figures.get(key), figure_unit(key, row)) if figures else MISSING
                 for figures in targets]
        for key in keys
    ]


def fact_rows(facts: Mapping[str, Any] | None) -> list[list[str]]:
    """name, value; facts (host, settings) sorted by name."""
    if not isinstance(facts, Mapping):
        return []
    return [[str(key), format_value(value, figure_unit(str(key)))]
            for key, value in sorted(facts.items(), key=lambda item: str(item[0]))]


def evidence_rows(verdict: Verdict | None) -> list[list[str]]:
    """What the verdict rests on: name, value (intervals as text, ratios as "3.00x")."""
    evidence = getattr(verdict, "evidence", None)
    if not isinstance(evidence, Mapping):
        return []
    rows = []
    for name, value in evidence.items():
        if isinstance(value, Mapping):
            text = interval_text(value)
        elif isinstance(value, float):
            text = format_value(value, "ratio")
        else:
            text = format_value(value, "")
        rows.append([str(name), text])
    return rows


def benchmark_rows(benchmarks: Sequence[UserBenchmark]) -> list[list[str]]:
    """benchmark, VM median, container median, VM/container, verdict; one list each."""
    def median(benchmark: UserBenchmark, who: str) -> str:
        figures = benchmark.figures.get(who) if isinstance(benchmark.figures, Mapping) else None
        if not isinstance(figures, Mapping) or not figures:
            return NOT_MEASURED
        mode = figures.get("mode") if who == "vm" else None
        return (f"{format_value(figures.get('median_s'), 's')} "
                f"(n={format_value(figures.get('rounds'), 'count')})"
                + (f" [{str(mode).upper()}]" if mode else ""))

    return [[one_line(b.name), median(b, "vm"), median(b, "container"),
             interval_text(b.ratio) if b.ratio else MISSING, one_line(b.verdict)]
            for b in benchmarks]
