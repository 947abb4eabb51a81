"""The comparison's results as plain data: what the report renders and the JSON it writes.

Figures are flat dicts of name -> number, string or bool, per target ("vm",
"container") and for the host where a row measures native speed. Every VM
figure set carries ``mode`` ("kvm" or "tcg"), so no VM number travels without
the accelerator that produced it. A verdict carries its ``evidence``: what the
rule derived from the figures (ratios with their 95% intervals, the like-for-like
pair it compared), so the reports show what the verdict rests on.

Schema 2 added verdict evidence, the VM's disk cache mode, like-for-like export
sizes and ``user_benchmarks``; schema 1 files still load (their verdicts are
decided again by the current rules).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = "pytest-vmcontainer/comparison/2"
READABLE_SCHEMAS = ("pytest-vmcontainer/comparison/1", SCHEMA)
HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
NOT_MEASURABLE = "not measurable here"
STATUSES = (HOLDS, DOES_NOT_HOLD, NOT_MEASURABLE)

Figures = dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    status: str  # one of STATUSES
    reason: str
    # What the rule derived: name -> number, text, or an interval (stats.Interval.as_dict()).
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown verdict status {self.status!r}")


@dataclass
class RowResult:
    """One row of the table, measured on this host."""

    id: str
    aspect: str
    claim_vm: str
    claim_container: str
    unit: str  # unit of the headline figure: "bytes", "s", "ratio", "bool", "count", ...
    headline: str  # the figure key shown in the table
    how: str  # how it was measured, one line
    rule: str  # the verdict rule, one line
    figures: dict[str, Figures] = field(default_factory=dict)  # "vm" / "container" / "host"
    verdict: Verdict | None = None

    def headline_value(self, who: str) -> Any:
        return self.figures.get(who, {}).get(self.headline)


@dataclass
class UserBenchmark:
    """A team's own benchmark (a test with ``target`` and ``benchmark``), VM against container."""

    name: str  # the test without its target, e.g. "test_api.py::test_latency"
    figures: dict[str, Figures] = field(default_factory=dict)  # "vm" / "container"
    ratio: dict[str, Any] | None = None  # VM/container: stats.Interval.as_dict()
    verdict: str = ""  # e.g. "the VM is more than 10% slower", or why it is undecided


@dataclass
class ComparisonReport:
    """Everything the terminal table, JSON, Markdown and HTML are made from."""

    generated_at: str  # ISO 8601, UTC
    host: Figures  # kernel, cpu, memory, tool versions
    vm_mode: str | None  # "kvm", "tcg", or None when no VM was measured
    vm_mode_reason: str
    settings: dict[str, Any]
    rows: list[RowResult]
    user_benchmarks: list[UserBenchmark] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}
