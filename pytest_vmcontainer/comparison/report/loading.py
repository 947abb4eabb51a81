"""A saved comparison.json read back into a ComparisonReport (to render or merge it again)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_vmcontainer.comparison.results import (
    READABLE_SCHEMAS,
    ComparisonReport,
    RowResult,
    UserBenchmark,
    Verdict,
)


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
