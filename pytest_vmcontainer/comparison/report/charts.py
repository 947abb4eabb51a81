"""Inline SVG bar charts for the HTML page: boot, memory, latency, disk and CPU, per target."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape as _e

from pytest_vmcontainer.comparison.report.tables import (
    NOT_MEASURED,
    TARGETS,
    target_figures,
    vm_mode,
)
from pytest_vmcontainer.comparison.report.values import format_value, number
from pytest_vmcontainer.comparison.results import ComparisonReport, RowResult


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


def _target_label(who: str, row: RowResult | None, report: ComparisonReport) -> str:
    if who == "vm":
        return f"VM ({vm_mode(row, report) or 'mode unknown'})"
    return who


def _charts(report: ComparisonReport) -> list[_Chart]:
    rows = {row.id: row for row in report.rows}

    def bars(row_id: str, key: str, targets: Sequence[str] = ("vm", "container")) -> list[_Bar]:
        row = rows.get(row_id)
        result = []
        for who in targets:
            figures = target_figures(row, who)
            value = number(figures.get(key)) if figures else None
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


def svg_charts(report: ComparisonReport) -> list[str]:
    """The report's charts, one ``<svg>`` element each; a chart of nothing says so."""
    return [_svg_chart(chart) for chart in _charts(report)]
