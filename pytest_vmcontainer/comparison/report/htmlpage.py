"""The comparison as one self-contained HTML page (comparison.html): inline CSS and inline
SVG bar charts, no scripts and no external URLs."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence

from pytest_vmcontainer.comparison.report.charts import svg_charts
from pytest_vmcontainer.comparison.report.tables import (
    BENCHMARK_HEADER,
    BENCHMARK_NOTE,
    BENCHMARK_TITLE,
    FIGURE_HEADER,
    MAIN_HEADER,
    TITLE,
    Section,
    benchmark_rows,
    evidence_rows,
    fact_rows,
    figure_rows,
    main_rows,
    mode_line,
    reason,
    status,
    target_figures,
)
from pytest_vmcontainer.comparison.results import (
    DOES_NOT_HOLD,
    HOLDS,
    NOT_MEASURABLE,
    ComparisonReport,
    Verdict,
)

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


def _verdict_class(verdict: Verdict | None) -> str:
    classes = {HOLDS: "holds", DOES_NOT_HOLD: "does-not-hold", NOT_MEASURABLE: "not-measurable"}
    return "verdict-" + classes.get(status(verdict), "none")


def render_html(report: ComparisonReport, sections: Sequence[Section] = ()) -> str:
    """The comparison as one self-contained HTML page (inline CSS and SVG, no scripts)."""
    body = [f"<h1>{_e(TITLE)}</h1>", f"<p>Generated {_e(report.generated_at)}.</p>",
            f'<p class="mode">{_e(mode_line(report))}</p>']
    for section in sections:
        body += [f"<h2>{_e(section.title)}</h2>", section.html]
    body.append("<h2>Comparison</h2>")
    if report.rows:
        verdict_column = MAIN_HEADER.index("verdict")

        def verdict_class(r: int, c: int) -> str:
            return _verdict_class(report.rows[r].verdict) if c == verdict_column else ""

        body.append(html_table(MAIN_HEADER, main_rows(report), verdict_class))
    else:
        body.append("<p>No rows measured.</p>")
    if report.rows:  # no charts of nothing
        body.append("<h2>Charts</h2>")
        body += svg_charts(report)
    body.append("<h2>Host</h2>")
    host = fact_rows(report.host)
    body.append(html_table(["fact", "value"], host) if host else "<p>No host facts.</p>")
    settings = fact_rows(report.settings)
    if settings:
        body += ["<h2>Settings</h2>", html_table(["setting", "value"], settings)]
    if report.rows:
        body.append("<h2>Details</h2>")
    for row in report.rows:
        verdict = status(row.verdict) + (f" ({reason(row.verdict)})" if row.verdict else "")
        body += [f'<section id="row-{_e(row.id)}">', f"<h3>{_e(row.aspect)}</h3>",
                 f"<p>How it was measured: {_e(row.how)}</p>",
                 f"<p>Verdict rule: {_e(row.rule)}</p>",
                 f"<p>Verdict: {_e(verdict)}</p>"]
        missing = [who for who in ("vm", "container") if target_figures(row, who) is None]
        if missing:
            body.append(f"<p>Not measured: {_e(', '.join(missing))}</p>")
        evidence = evidence_rows(row.verdict)
        if evidence:
            body += ["<p>What the verdict rests on:</p>",
                     html_table(["evidence", "value"], evidence)]
        figures = figure_rows(row)
        body.append(html_table(FIGURE_HEADER, figures) if figures else "<p>No figures.</p>")
        body.append("</section>")
    if report.user_benchmarks:
        body += [f'<h2 id="user-benchmarks">{_e(BENCHMARK_TITLE)}</h2>',
                 f"<p>{_e(BENCHMARK_NOTE[0].upper() + BENCHMARK_NOTE[1:])}.</p>",
                 html_table(BENCHMARK_HEADER, benchmark_rows(report.user_benchmarks))]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_e(TITLE)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
