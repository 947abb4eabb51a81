"""The comparison as Markdown (comparison.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
from pytest_vmcontainer.comparison.report.values import one_line
from pytest_vmcontainer.comparison.results import ComparisonReport


def md_cell(text: str) -> str:
    """Text as one Markdown table cell (or list item): one line, escaped."""
    return one_line(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;") or " "


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
    host = fact_rows(report.host)
    out += [*md_table(["fact", "value"], host), ""] if host else ["_No host facts._", ""]
    settings = fact_rows(report.settings)
    if settings:
        out += ["## Settings", "", *md_table(["setting", "value"], settings), ""]
    out += ["## Comparison", ""]
    if report.rows:
        out += [*md_table(MAIN_HEADER, main_rows(report)), ""]
    else:
        out += ["_No rows measured._", ""]
    for row in report.rows:
        out += [f"## {md_cell(row.aspect)}", "",
                f"- How it was measured: {md_cell(row.how)}",
                f"- Verdict rule: {md_cell(row.rule)}",
                f"- Verdict: {md_cell(status(row.verdict))}"
                + (f" ({md_cell(reason(row.verdict))})" if reason(row.verdict) else "")]
        missing = [who for who in ("vm", "container") if target_figures(row, who) is None]
        if missing:
            out.append(f"- Not measured: {', '.join(missing)}")
        out.append("")
        evidence = evidence_rows(row.verdict)
        if evidence:
            out += ["What the verdict rests on:", "", *md_table(["evidence", "value"], evidence),
                    ""]
        figures = figure_rows(row)
        out += [*md_table(FIGURE_HEADER, figures), ""] if figures else ["_No figures._", ""]
    if report.user_benchmarks:
        out += [f"## {BENCHMARK_TITLE}", "", md_cell(BENCHMARK_NOTE[0].upper()
                                                     + BENCHMARK_NOTE[1:]) + ".", "",
                *md_table(BENCHMARK_HEADER, benchmark_rows(report.user_benchmarks)), ""]
    return "\n".join(out)
