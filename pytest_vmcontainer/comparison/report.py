"""Render a ComparisonReport: terminal table, JSON, Markdown and a self-contained HTML page.

Rendering only reads the report. A missing row, target, figure or verdict shows
as "not measured" or "-"; nothing here raises on incomplete results. The HTML
page has inline CSS and inline SVG bar charts, no scripts and no external URLs.
Each row's verdict evidence (ratios with their 95% intervals, the like-for-like
pair, the VM's disk cache mode) has a table of its own, and a team's own
benchmarks are listed VM against container after the table.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_vmcontainer.comparison.results import (
    DOES_NOT_HOLD,
    HOLDS,
    NOT_MEASURABLE,
    READABLE_SCHEMAS,
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


MISSING = "-"
NOT_MEASURED = "not measured"
TARGETS = ("vm", "container", "host")
CLAIM_WIDTH = 44
REASON_WIDTH = 70
TITLE = "VM vs container comparison"

# ---------------------------------------------------------------------------- values

_BYTE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def _bytes(value: float) -> str:
    scaled, exponent = float(value), 0
    while abs(round(scaled, 1)) >= 1000 and exponent < len(_BYTE_UNITS) - 1:
        scaled, exponent = scaled / 1000, exponent + 1
    if exponent == 0:
        return f"{value:.0f} B"
    return f"{scaled:.1f} {_BYTE_UNITS[exponent]}"


def _seconds(value: float) -> str:
    size = abs(value)
    if size >= 120:
        return f"{value / 60:.1f} min"
    if size >= 10:
        return f"{value:.1f} s"
    if 0 < size < 1e-4:
        return f"{value * 1e6:.2f} us" if size < 1e-5 else f"{value * 1e6:.1f} us"
    if 0 < size < 0.01:
        return f"{value * 1000:.2f} ms" if size < 1e-3 else f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def _milliseconds(value: float) -> str:
    return f"{value:.2f} ms" if abs(value) < 10 else f"{value:.1f} ms"


def _plain(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


_FORMATTERS: dict[str, Callable[[float], str]] = {
    "bytes": _bytes,
    "s": _seconds,
    "ms": _milliseconds,
    "ratio": lambda v: f"{v:.2f}x",
    "count": lambda v: f"{round(v):,}",
    "req/s": lambda v: f"{round(v):,} req/s",
    "MB/s": lambda v: f"{v:.1f} MB/s",
    "IOPS": lambda v: f"{round(v):,} IOPS",
    "%": lambda v: f"{v:.1f}%",
}


def format_value(value: object, unit: str) -> str:
    """One figure as text: ``None`` is "-", bools are "yes"/"no", lists are comma-joined.

    Known units: bytes (decimal SI), s, ms, ratio, bool, count, req/s, MB/s, IOPS, %.
    Anything else is ``str(value)``, floats to 3 significant digits (whole above 1000).
    """
    if value is None:
        return MISSING
    if isinstance(value, list | tuple):
        return ", ".join(format_value(item, unit) for item in value) if value else "none"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {format_value(v, '')}" for k, v in sorted(value.items(), key=str))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    formatter = _FORMATTERS.get(unit, _plain)
    return formatter(value)


_KEY_UNITS = {
    "seconds": "s",
    "rps": "req/s",
    "requests": "count",
    "errors": "count",
    "started": "count",
    "visible_processes": "count",
    "extrapolated_instances": "count",
    "ratio_to_native": "ratio",
    "ratio_to_container": "ratio",
}
_SUFFIX_UNITS = (
    ("_ci95", "ratio"),
    ("_bytes", "bytes"),
    ("_mb_s", "MB/s"),
    ("_ms", "ms"),
    ("_percent", "%"),
    ("_iops", "IOPS"),
    ("_seconds", "s"),
    ("_s", "s"),
    ("_count", "count"),
)


def figure_unit(key: str, row: RowResult | None = None) -> str:
    """The unit a figure is formatted with: the row's unit for its headline, else by name."""
    if row is not None and key == row.headline:
        return row.unit
    if key in _KEY_UNITS:
        return _KEY_UNITS[key]
    for suffix, unit in _SUFFIX_UNITS:
        if key.endswith(suffix):
            return unit
    return ""


# ---------------------------------------------------------------------------- row access


def _one_line(text: object) -> str:
    return " ".join(str(text).split()) if text is not None else ""


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def _figures(row: RowResult | None, who: str) -> Mapping[str, Any] | None:
    """A target's figures, or None when the target was not measured for this row."""
    if row is None or not isinstance(row.figures, Mapping):
        return None
    figures = row.figures.get(who)
    return figures if isinstance(figures, Mapping) and figures else None


def _vm_mode(row: RowResult | None, report: ComparisonReport) -> str | None:
    figures = _figures(row, "vm")
    mode = figures.get("mode") if figures else None
    mode = mode or report.vm_mode
    return str(mode).upper() if mode else None


def interval_text(interval: object) -> str:
    """An interval (``stats.Interval.as_dict()``) as "2.73x (95% CI 2.61x-2.85x, n=5)"."""
    if not isinstance(interval, Mapping):
        return MISSING
    estimate, low, high = (_number(interval.get(key)) for key in ("estimate", "low", "high"))
    reason = _one_line(interval.get("reason"))
    if estimate is None:
        return f"no ratio ({reason})" if reason else MISSING
    if low is None or high is None:
        return f"{estimate:.2f}x (no interval: {reason})" if reason else f"{estimate:.2f}x"
    n = interval.get("n")
    return f"{estimate:.2f}x (95% CI {low:.2f}x-{high:.2f}x, n={format_value(n, 'count')})"


def _headline_cell(row: RowResult, who: str, report: ComparisonReport) -> str:
    figures = _figures(row, who)
    if figures is None:
        return NOT_MEASURED
    text = format_value(figures.get(row.headline), row.unit)
    ci = figures.get(f"{row.headline}_ci95")
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(_number(v) is not None for v in ci):
        text += f" ({ci[0]:.2f}-{ci[1]:.2f}x)"
    notes = []
    if who == "vm" and (mode := _vm_mode(row, report)):
        notes.append(mode)
    if figures.get("disk_cache"):
        notes.append(f"disk cache {figures['disk_cache']}")
    return text + (f" [{', '.join(notes)}]" if notes else "")


def _status(verdict: Verdict | None) -> str:
    return verdict.status if verdict is not None else NOT_MEASURED


def _reason(verdict: Verdict | None) -> str:
    return _one_line(verdict.reason) if verdict is not None else ""


def _verdict_class(verdict: Verdict | None) -> str:
    classes = {HOLDS: "holds", DOES_NOT_HOLD: "does-not-hold", NOT_MEASURABLE: "not-measurable"}
    return "verdict-" + classes.get(_status(verdict), "none")


def mode_line(report: ComparisonReport) -> str:
    """E.g. "VM figures: TCG (KVM did not boot the box kernel within 10s)"."""
    mode = report.vm_mode.upper() if report.vm_mode else "none (no VM measured)"
    reason = _one_line(report.vm_mode_reason)
    return f"VM figures: {mode}" + (f" ({reason})" if reason else "")


def _main_rows(report: ComparisonReport) -> list[list[str]]:
    """aspect, claim VM, claim container, VM, container, verdict, reason; one list per row."""
    return [
        [_one_line(row.aspect), _one_line(row.claim_vm), _one_line(row.claim_container),
         _headline_cell(row, "vm", report), _headline_cell(row, "container", report),
         _status(row.verdict), _reason(row.verdict)]
        for row in report.rows
    ]


def _figure_rows(row: RowResult) -> list[list[str]]:
    """figure, vm, container, host; every figure of the row, sorted by key."""
    targets = [_figures(row, who) for who in TARGETS]
    keys = sorted({str(key) for figures in targets if figures for key in figures})
    return [
        [key] + [format_value(figures.get(key), figure_unit(key, row)) if figures else MISSING
                 for figures in targets]
        for key in keys
    ]


def _facts(facts: Mapping[str, Any] | None) -> list[list[str]]:
    if not isinstance(facts, Mapping):
        return []
    return [[str(key), format_value(value, figure_unit(str(key)))]
            for key, value in sorted(facts.items(), key=lambda item: str(item[0]))]


def _evidence_rows(verdict: Verdict | None) -> list[list[str]]:
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


def _benchmark_rows(benchmarks: Sequence[UserBenchmark]) -> list[list[str]]:
    """benchmark, VM median, container median, VM/container, verdict; one list each."""
    def median(benchmark: UserBenchmark, who: str) -> str:
        figures = benchmark.figures.get(who) if isinstance(benchmark.figures, Mapping) else None
        if not isinstance(figures, Mapping) or not figures:
            return NOT_MEASURED
        mode = figures.get("mode") if who == "vm" else None
        return (f"{format_value(figures.get('median_s'), 's')} "
                f"(n={format_value(figures.get('rounds'), 'count')})"
                + (f" [{str(mode).upper()}]" if mode else ""))

    return [[_one_line(b.name), median(b, "vm"), median(b, "container"),
             interval_text(b.ratio) if b.ratio else MISSING, _one_line(b.verdict)]
            for b in benchmarks]


_BENCHMARK_HEADER = ["benchmark", "VM (median)", "container (median)",
                     "VM/container (median ratio)", "verdict"]
BENCHMARK_TITLE = "Your benchmarks, VM against container"
BENCHMARK_NOTE = ("ratio of the medians of the benchmark's rounds, with a 95% bootstrap "
                  "interval; a side is named only when the interval clears 10%")


# ---------------------------------------------------------------------------- terminal


def terminal_lines(report: ComparisonReport) -> list[str]:
    """The comparison as a plain-text table, led by the line saying which VM mode was used."""
    header = ["row", "claim (VM / container)", "VM", "container", "verdict"]
    table = [header]
    for aspect, claim_vm, claim_container, vm, container, status, reason in _main_rows(report):
        claim = _truncate(f"{claim_vm} / {claim_container}", CLAIM_WIDTH)
        verdict = f"{status}: {_truncate(reason, REASON_WIDTH)}" if reason else status
        table.append([aspect, claim, vm, container, verdict])
    widths = [max(len(cells[i]) for cells in table) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    lines = [mode_line(report), line(header).rstrip(), line(["-" * w for w in widths])]
    lines += [line(cells).rstrip() for cells in table[1:]]
    if not report.rows:
        lines.append("(no rows measured)")
    return lines


def benchmark_lines(report: ComparisonReport) -> list[str]:
    """A team's own benchmarks as a plain-text table (empty when there are none)."""
    if not report.user_benchmarks:
        return []
    table = [_BENCHMARK_HEADER, *_benchmark_rows(report.user_benchmarks)]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(_BENCHMARK_HEADER))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths,
                                                                   strict=True)).rstrip()

    return [line(table[0]), line(["-" * w for w in widths]),
            *(line(cells) for cells in table[1:]), f"({BENCHMARK_NOTE})"]


# ---------------------------------------------------------------------------- markdown

_MAIN_HEADER = ["aspect", "claim VM", "claim container", "VM", "container", "verdict", "reason"]
_FIGURE_HEADER = ["figure", "vm", "container", "host"]


def md_cell(text: str) -> str:
    """Text as one Markdown table cell (or list item): one line, escaped."""
    return _one_line(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;") or " "


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table; each cell is made one line and escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_cell(cell) for cell in row) + " |" for row in rows]
    return lines


def render_markdown(report: ComparisonReport, sections: Sequence[Section] = ()) -> str:
    """The comparison as Markdown: VM mode, ``sections``, host, main table, one part per row."""
    out = [f"# {TITLE}", "", f"Generated {md_cell(report.generated_at)}.", "",
           md_cell(mode_line(report)), ""]
    for section in sections:
        out += [f"## {md_cell(section.title)}", "", *section.markdown, ""]
    out += ["## Host", ""]
    host = _facts(report.host)
    out += [*md_table(["fact", "value"], host), ""] if host else ["_No host facts._", ""]
    settings = _facts(report.settings)
    if settings:
        out += ["## Settings", "", *md_table(["setting", "value"], settings), ""]
    out += ["## Comparison", ""]
    if report.rows:
        out += [*md_table(_MAIN_HEADER, _main_rows(report)), ""]
    else:
        out += ["_No rows measured._", ""]
    for row in report.rows:
        out += [f"## {md_cell(row.aspect)}", "",
                f"- How it was measured: {md_cell(row.how)}",
                f"- Verdict rule: {md_cell(row.rule)}",
                f"- Verdict: {md_cell(_status(row.verdict))}"
                + (f" ({md_cell(_reason(row.verdict))})" if _reason(row.verdict) else "")]
        missing = [who for who in ("vm", "container") if _figures(row, who) is None]
        if missing:
            out.append(f"- Not measured: {', '.join(missing)}")
        out.append("")
        evidence = _evidence_rows(row.verdict)
        if evidence:
            out += ["What the verdict rests on:", "", *md_table(["evidence", "value"], evidence),
                    ""]
        figures = _figure_rows(row)
        out += [*md_table(_FIGURE_HEADER, figures), ""] if figures else ["_No figures._", ""]
    if report.user_benchmarks:
        out += [f"## {BENCHMARK_TITLE}", "", md_cell(BENCHMARK_NOTE[0].upper()
                                                     + BENCHMARK_NOTE[1:]) + ".", "",
                *md_table(_BENCHMARK_HEADER, _benchmark_rows(report.user_benchmarks)), ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------- html

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td { overflow-wrap: anywhere; min-width: 4.5em; }
details summary { cursor: pointer; }
details pre { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 30em; overflow-y: auto; }
td.verdict-holds { background: #d4edda; color: #155724; }
td.verdict-does-not-hold { background: #f8d7da; color: #721c24; white-space: nowrap; }
td.verdict-not-measurable { background: #e2e3e5; color: #383d41; }
td.verdict-none { background: #e2e3e5; color: #6c757d; font-style: italic; }
.mode { font-weight: bold; }
svg.chart { display: block; margin: 0.5em 0 1.5em; font-size: 12px; }
svg.chart .chart-title { font-size: 14px; font-weight: bold; }
svg.chart .group { font-weight: bold; }
svg.chart .missing, svg.chart .scale { fill: #777; font-style: italic; }
.bar-vm { fill: #4e79a7; }
.bar-container { fill: #f28e2b; }
.bar-host { fill: #59a14f; }
""".strip()


def escape(value: object) -> str:
    """Text for an HTML page."""
    return html.escape(str(value))


_e = escape


def html_table(header: Sequence[str], rows: Iterable[Sequence[str]],
               cell_class: Callable[[int, int], str] | None = None) -> str:
    """A table; ``cell_class(row, column)`` gives a cell's CSS class ("" for none)."""
    return html_markup_table(header, ([_e(cell) for cell in row] for row in rows), cell_class)


def html_markup_table(header: Sequence[str], rows: Iterable[Sequence[str]],
                      cell_class: Callable[[int, int], str] | None = None) -> str:
    """``html_table`` whose cells are HTML already (``html_cut`` values, say)."""
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = []
    for r, row in enumerate(rows):
        cells = []
        for c, cell in enumerate(row):
            css = cell_class(r, c) if cell_class else ""
            attr = f' class="{_e(css)}"' if css else ""
            cells.append(f"<td{attr}>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body)
            + "\n</tbody>\n</table>")


def html_cut(text: str, width: int = 60) -> str:
    """A value as HTML, cut to ``width`` characters; the whole of it one click away."""
    if len(text) <= width and "\n" not in text:
        return _e(text)
    head = " ".join(text.split())[: width - 3]
    return (f"<details><summary>{_e(head)}...</summary><pre>{_e(text)}</pre></details>")


@dataclass(frozen=True)
class _Bar:
    label: str
    value: float | None
    target: str  # "vm", "container" or "host": the bar's CSS class


@dataclass(frozen=True)
class _Chart:
    title: str
    unit: str
    groups: list[tuple[str, list[_Bar]]]  # (group label, bars); "" for a single group


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _target_label(who: str, row: RowResult | None, report: ComparisonReport) -> str:
    if who == "vm":
        return f"VM ({_vm_mode(row, report) or 'mode unknown'})"
    return who


def _charts(report: ComparisonReport) -> list[_Chart]:
    rows = {row.id: row for row in report.rows}

    def bars(row_id: str, key: str, targets: Sequence[str] = ("vm", "container")) -> list[_Bar]:
        row = rows.get(row_id)
        result = []
        for who in targets:
            figures = _figures(row, who)
            value = _number(figures.get(key)) if figures else None
            result.append(_Bar(_target_label(who, row, report), value, who))
        return result

    return [
        _Chart("Boot time, cold and warm (lower is better)", "s",
               [("cold", bars("boot_time", "cold_s")), ("warm", bars("boot_time", "warm_s"))]),
        _Chart("Memory at idle (lower is better)", "bytes",
               [("", bars("resource_usage", "idle_memory_bytes"))]),
        _Chart("HTTP latency (lower is better)", "ms",
               [(p, bars("networking", f"{p}_ms")) for p in ("p50", "p90", "p99")]),
        _Chart("Disk throughput, O_DIRECT (higher is better)", "MB/s",
               [("write", bars("storage", "write_mb_s", TARGETS)),
                ("read", bars("storage", "read_mb_s", TARGETS)),
                ("write, container volume", bars("storage", "volume_write_mb_s",
                                                 ("container",))),
                ("read, container volume", bars("storage", "volume_read_mb_s",
                                                ("container",)))]),
        _Chart("CPU workload time, median of paired rounds (lower is better)", "s",
               [("", bars("performance", "seconds", TARGETS))]),
    ]


_WIDTH, _LABEL_RIGHT, _BAR_X, _BAR_MAX, _BAR_HEIGHT, _STEP = 720, 150, 160, 400, 16, 22


def _svg_text(x: float, y: float, text: str, css: str, anchor: str = "start") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" class="{css}" text-anchor="{anchor}">'
            f"{_e(text)}</text>")


def _svg_chart(chart: _Chart) -> str:
    """A horizontal bar chart on a linear scale from 0 to the chart's largest value."""
    parts = [_svg_text(8, 18, chart.title, "chart-title")]
    values = [bar.value for _, bars in chart.groups for bar in bars if bar.value is not None]
    if not values:
        parts.append(_svg_text(8, 44, NOT_MEASURED, "missing"))
        height = 56
    else:
        top = max(max(values), 0.0)
        y = 30.0
        for group, bars in chart.groups:
            if group:
                parts.append(_svg_text(8, y + 12, group, "group"))
                y += 18
            for bar in bars:
                parts.append(_svg_text(_LABEL_RIGHT, y + 12, bar.label, "label", "end"))
                if bar.value is None:
                    parts.append(_svg_text(_BAR_X, y + 12, NOT_MEASURED, "missing"))
                else:
                    width = _BAR_MAX * max(bar.value, 0.0) / top if top > 0 else 0.0
                    width = max(width, 1.0) if bar.value > 0 else width
                    parts.append(f'<rect x="{_BAR_X}" y="{y:.1f}" width="{width:.1f}" '
                                 f'height="{_BAR_HEIGHT}" class="bar-{_e(bar.target)}" />')
                    parts.append(_svg_text(_BAR_X + width + 6, y + 12,
                                           format_value(bar.value, chart.unit), "value"))
                y += _STEP
            y += 6
        scale = f"linear scale; longest bar = {format_value(top, chart.unit)}"
        parts.append(_svg_text(8, y + 10, scale, "scale"))
        height = round(y + 20)
    return (f'<svg class="chart" role="img" aria-label="{_e(chart.title)}" width="{_WIDTH}" '
            f'height="{height}" viewBox="0 0 {_WIDTH} {height}"><title>{_e(chart.title)}</title>'
            + "".join(parts) + "</svg>")


def render_html(report: ComparisonReport, sections: Sequence[Section] = ()) -> str:
    """The comparison as one self-contained HTML page (inline CSS and SVG, no scripts)."""
    body = [f"<h1>{_e(TITLE)}</h1>", f"<p>Generated {_e(report.generated_at)}.</p>",
            f'<p class="mode">{_e(mode_line(report))}</p>']
    for section in sections:
        body += [f"<h2>{_e(section.title)}</h2>", section.html]
    body.append("<h2>Comparison</h2>")
    if report.rows:
        verdict_column = _MAIN_HEADER.index("verdict")

        def verdict_class(r: int, c: int) -> str:
            return _verdict_class(report.rows[r].verdict) if c == verdict_column else ""

        body.append(html_table(_MAIN_HEADER, _main_rows(report), verdict_class))
    else:
        body.append("<p>No rows measured.</p>")
    if report.rows:  # no charts of nothing
        body.append("<h2>Charts</h2>")
        body += [_svg_chart(chart) for chart in _charts(report)]
    body.append("<h2>Host</h2>")
    host = _facts(report.host)
    body.append(html_table(["fact", "value"], host) if host else "<p>No host facts.</p>")
    settings = _facts(report.settings)
    if settings:
        body += ["<h2>Settings</h2>", html_table(["setting", "value"], settings)]
    if report.rows:
        body.append("<h2>Details</h2>")
    for row in report.rows:
        verdict = _status(row.verdict) + (f" ({_reason(row.verdict)})" if row.verdict else "")
        body += [f'<section id="row-{_e(row.id)}">', f"<h3>{_e(row.aspect)}</h3>",
                 f"<p>How it was measured: {_e(row.how)}</p>",
                 f"<p>Verdict rule: {_e(row.rule)}</p>",
                 f"<p>Verdict: {_e(verdict)}</p>"]
        missing = [who for who in ("vm", "container") if _figures(row, who) is None]
        if missing:
            body.append(f"<p>Not measured: {_e(', '.join(missing))}</p>")
        evidence = _evidence_rows(row.verdict)
        if evidence:
            body += ["<p>What the verdict rests on:</p>",
                     html_table(["evidence", "value"], evidence)]
        figures = _figure_rows(row)
        body.append(html_table(_FIGURE_HEADER, figures) if figures else "<p>No figures.</p>")
        body.append("</section>")
    if report.user_benchmarks:
        body += [f'<h2 id="user-benchmarks">{_e(BENCHMARK_TITLE)}</h2>',
                 f"<p>{_e(BENCHMARK_NOTE[0].upper() + BENCHMARK_NOTE[1:])}.</p>",
                 html_table(_BENCHMARK_HEADER, _benchmark_rows(report.user_benchmarks))]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_e(TITLE)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


# ---------------------------------------------------------------------------- files


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory, so a report is never half-written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass  # already gone
        raise


def write_reports(report: ComparisonReport, directory: Path, sections: Sequence[Section] = (),
                  extra_json: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write comparison.json, comparison.md and comparison.html into ``directory``;
    ``extra_json`` adds top-level keys to the JSON, ``sections`` parts to the pages."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = {**report.to_json(), **(extra_json or {})}
    # default=str: a stray non-JSON figure (a Path, say) must not lose the whole report.
    texts = {
        "json": json.dumps(data, indent=2, sort_keys=True, default=str) + "\n",
        "markdown": render_markdown(report, sections) + "\n",
        "html": render_html(report, sections),
    }
    names = {"json": "comparison.json", "markdown": "comparison.md", "html": "comparison.html"}
    paths = {kind: directory / names[kind] for kind in texts}
    for kind, text in texts.items():
        _write_text(paths[kind], text)
    return paths


def load_report(path: Path) -> dict[str, Any]:
    """Read a comparison.json back (schema 1 or 2); ValueError when it is not one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if schema not in READABLE_SCHEMAS:
        raise ValueError(f"{path}: schema {schema!r} is not one of {', '.join(READABLE_SCHEMAS)}; "
                         "written by another version of pytest-vmcontainer?")
    return data


def report_from_json(data: Mapping[str, Any]) -> ComparisonReport:
    """Rebuild a ComparisonReport from ``to_json()`` output (e.g. to re-render a saved run).

    Schema 1 files have no verdict evidence and no user benchmarks; their rows load as
    they are (the ``report`` command decides their verdicts again with today's rules).
    """
    if data.get("schema") not in READABLE_SCHEMAS:
        raise ValueError(f"schema {data.get('schema')!r} is not one of "
                         f"{', '.join(READABLE_SCHEMAS)}")
    rows = []
    for row in data.get("rows") or []:
        verdict = row.get("verdict")
        rows.append(RowResult(**{**row, "verdict": Verdict(**verdict) if verdict else None}))
    benchmarks = [UserBenchmark(**benchmark) for benchmark in data.get("user_benchmarks") or []]
    return ComparisonReport(
        generated_at=data.get("generated_at", ""), host=data.get("host") or {},
        vm_mode=data.get("vm_mode"), vm_mode_reason=data.get("vm_mode_reason", ""),
        settings=data.get("settings") or {}, rows=rows, user_benchmarks=benchmarks)
