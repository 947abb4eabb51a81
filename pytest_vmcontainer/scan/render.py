"""The scan's result as terminal lines, Markdown lines, an HTML section and ``scan.json``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pytest_vmcontainer.scan.model import CATEGORIES, Difference, ScanResult

JSON_NAME = "scan.json"
TITLE = "vmcontainer parity scan"
ABSENT = "(absent)"
VALUE_WIDTH = 48
TERMINAL_LINES = 25  # per category; scan.json and the reports hold every difference


def shown(value: str | None, width: int = VALUE_WIDTH) -> str:
    text = ABSENT if value is None else " ".join(value.split()) or "(empty)"
    return text if len(text) <= width else text[: width - 3] + "..."


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def summary(result: ScanResult) -> str:
    if result.skipped:
        return f"scan skipped: {result.skipped}"
    took = ", ".join(f"{side} {_seconds(seconds)}"
                     for side, seconds in result.collected_in_s.items())
    return (f"scanned in {took} (at the same time); {result.same} the same, "
            f"{len(result.unexpected)} unexpected differences, {len(result.expected)} expected, "
            f"{result.ignored} identity values ignored")


def by_category(differences: list[Difference]) -> list[tuple[str, list[Difference]]]:
    return [(category, [d for d in differences if d.category == category])
            for category in CATEGORIES if any(d.category == category for d in differences)]


def expected_counts(result: ScanResult) -> list[tuple[str, int]]:
    """(reason, how many), most first."""
    return Counter(d.expected for d in result.expected if d.expected).most_common()


def terminal_lines(result: ScanResult) -> list[str]:
    """The unexpected differences by category with both values, then the expected count."""
    lines = [summary(result)]
    if result.skipped:
        return lines
    sides = tuple(result.collected_in_s) or ("vm", "container")
    if result.hosts:
        lines.append("hosts: " + ", ".join(f"{side}={host}" for side, host in
                                           result.hosts.items()))
    for category, differences in by_category(result.unexpected):
        lines.append(f"{category}:")
        width = min(max(len(d.item) for d in differences), 40)
        for d in differences[:TERMINAL_LINES]:
            lines.append(f"  {shown(d.item, 40):<{width}}  {sides[0]}: {shown(d.vm)}  "
                         f"{sides[1]}: {shown(d.container)}")
        if len(differences) > TERMINAL_LINES:
            lines.append(f"  ... and {len(differences) - TERMINAL_LINES} more (scan.json, "
                         "--vmc-report, has them all)")
    counts = expected_counts(result)
    if counts:
        lines.append(f"expected differences: {len(result.expected)} ("
                     + "; ".join(f"{n} {reason}" for reason, n in counts) + ")")
    lines += [f"note: {note}" for note in result.notes]
    return lines


def _md(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;") or " "


def markdown_lines(result: ScanResult) -> list[str]:
    lines = [_md(summary(result)), ""]
    if result.skipped:
        return lines
    for title, differences in (("Unexpected differences", result.unexpected),
                               ("Expected differences", result.expected)):
        lines += [f"### {title}", ""]
        if not differences:
            lines += ["None.", ""]
            continue
        lines.append("| category | item | vm | container | expected |")
        lines.append("|---|---|---|---|---|")
        lines += [f"| {d.category} | {_md(d.item)} | {_md(shown(d.vm, 120))} | "
                  f"{_md(shown(d.container, 120))} | {_md(d.expected or 'no')} |"
                  for d in differences]
        lines.append("")
    lines += [f"- {_md(note)}" for note in result.notes]
    return lines


def write_json(result: ScanResult, directory: Path) -> Path:
    path = Path(directory) / JSON_NAME
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
    partial.replace(path)
    return path
