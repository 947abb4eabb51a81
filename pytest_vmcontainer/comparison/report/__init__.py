"""Render a ComparisonReport: terminal table, JSON, Markdown and a self-contained HTML page.

One module a format, as pytest-benchmark has them; this package gives the names callers use.

- ``values``: one figure as text (units, intervals).
- ``tables``: the report as rows of text cells, the same for every format.
- ``terminal``, ``markdown``, ``htmlpage`` (with ``charts``, its inline SVG): the formats.
- ``files``: comparison.json, .md and .html written; ``loading``: a comparison.json read back.

Rendering only reads the report. A missing row, target, figure or verdict shows
as "not measured" or "-"; nothing here raises on incomplete results. The HTML
page has inline CSS and inline SVG bar charts, no scripts and no external URLs.
Each row's verdict evidence (ratios with their 95% intervals, the like-for-like
pair, the VM's disk cache mode) has a table of its own, and a team's own
benchmarks are listed VM against container after the table.
"""

from __future__ import annotations

from pytest_vmcontainer.comparison.report.files import write_reports
from pytest_vmcontainer.comparison.report.htmlpage import (
    escape,
    html_cut,
    html_markup_table,
    html_table,
    render_html,
)
from pytest_vmcontainer.comparison.report.loading import load_report, report_from_json
from pytest_vmcontainer.comparison.report.markdown import md_cell, md_table, render_markdown
from pytest_vmcontainer.comparison.report.tables import (
    BENCHMARK_NOTE,
    BENCHMARK_TITLE,
    NOT_MEASURED,
    TARGETS,
    TITLE,
    Section,
    mode_line,
)
from pytest_vmcontainer.comparison.report.terminal import (
    CLAIM_WIDTH,
    REASON_WIDTH,
    benchmark_lines,
    terminal_lines,
)
from pytest_vmcontainer.comparison.report.values import (
    MISSING,
    figure_unit,
    format_value,
    interval_text,
)

__all__ = [
    "BENCHMARK_NOTE",
    "BENCHMARK_TITLE",
    "CLAIM_WIDTH",
    "MISSING",
    "NOT_MEASURED",
    "REASON_WIDTH",
    "TARGETS",
    "TITLE",
    "Section",
    "benchmark_lines",
    "escape",
    "figure_unit",
    "format_value",
    "html_cut",
    "html_markup_table",
    "html_table",
    "interval_text",
    "load_report",
    "md_cell",
    "md_table",
    "mode_line",
    "render_html",
    "render_markdown",
    "report_from_json",
    "terminal_lines",
    "write_reports",
]
