"""The comparison as plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_vmcontainer.comparison.report.tables import (
    BENCHMARK_HEADER,
    BENCHMARK_NOTE,
    benchmark_rows,
    main_rows,
    mode_line,
)
from pytest_vmcontainer.comparison.results import ComparisonReport

CLAIM_WIDTH = 44
REASON_WIDTH = 70


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def terminal_lines(report: ComparisonReport) -> list[str]:
    """The comparison as a plain-text table, led by the line saying which VM mode was used."""
    header = ["row", "claim (VM / container)", "VM", "container", "verdict"]
    table = [header]
    for aspect, claim_vm, claim_container, vm, container, status, reason in main_rows(report):
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
    table = [BENCHMARK_HEADER, *benchmark_rows(report.user_benchmarks)]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(BENCHMARK_HEADER))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths,
                                                                   strict=True)).rstrip()

    return [line(table[0]), line(["-" * w for w in widths]),
            *(line(cells) for cells in table[1:]), f"({BENCHMARK_NOTE})"]
