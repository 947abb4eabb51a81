"""Parity between targets: what each test saw on each target, and the end-of-run matrix.

A test records values with ``parity.check(name, value)``. When the other
target already recorded the same check in this run, the values must be equal,
unless the test is marked ``@pytest.mark.expect_diff(reason=...)``: then both
values are kept and shown, not compared, so the difference stays visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OUTCOME_ORDER = ("failed", "error", "skipped", "passed")


def _show(value: Any, width: int = 40) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass
class TestRow:
    test: str
    expected_diff: str | None = None
    outcomes: dict[str, str] = field(default_factory=dict)  # kind -> passed/failed/...
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # check -> kind -> value

    def differences(self) -> dict[str, dict[str, Any]]:
        return {check: seen for check, seen in self.values.items()
                if len(seen) > 1 and len({repr(v) for v in seen.values()}) > 1}


class ParityStore:
    """Everything the parity matrix shows, filled by fixtures and report hooks."""

    def __init__(self) -> None:
        self.rows: dict[str, TestRow] = {}

    def row(self, test: str) -> TestRow:
        return self.rows.setdefault(test, TestRow(test))

    def record(self, test: str, check: str, kind: str, value: Any) -> dict[str, Any]:
        """Store ``value``; return what the other targets saw for the same check."""
        seen = self.row(test).values.setdefault(check, {})
        seen[kind] = value
        return {other: v for other, v in seen.items() if other != kind}

    def outcome(self, test: str, kind: str, outcome: str) -> None:
        """Keep the worst outcome of a test's phases (an error in teardown counts)."""
        current = self.row(test).outcomes.get(kind)
        if current is None or OUTCOME_ORDER.index(outcome) < OUTCOME_ORDER.index(current):
            self.row(test).outcomes[kind] = outcome

    def unexpected_differences(self) -> list[str]:
        return [f"{row.test}: {check}" for row in self.rows.values() if not row.expected_diff
                for check in row.differences()]

    def render(self, kinds: tuple[str, ...]) -> list[str]:
        """The matrix as text lines: check, result per target, values where they differ."""
        if not self.rows:
            return []
        width = max(len(name) for name in self.rows) + 2
        lines = [f"{'check':<{width}}" + "".join(f"{k:<11}" for k in kinds) + "values"]
        for row in self.rows.values():
            cells = "".join(f"{row.outcomes.get(k, '-'):<11}" for k in kinds)
            notes = []
            for check, seen in row.differences().items():
                values = ", ".join(f"{k}={_show(seen[k])!s}" for k in kinds if k in seen)
                label = (f"differs as expected ({row.expected_diff})" if row.expected_diff
                         else "DIFFERS")
                notes.append(f"{check} {label}: {values}")
            if row.expected_diff and not row.differences():
                notes.append(f"expected to differ ({row.expected_diff}), but the values match")
            lines.append(f"{row.test:<{width}}{cells}{'; '.join(notes)}".rstrip())
        return lines


class ParityMismatch(AssertionError):
    pass


class Parity:
    """The ``parity`` fixture: records a value for the current target and compares."""

    def __init__(self, store: ParityStore, test: str, kind: str,
                 expected_diff: str | None) -> None:
        self._store = store
        self._test = test
        self.kind = kind
        self.expected_diff = expected_diff
        store.row(test).expected_diff = expected_diff

    def check(self, name: str, value: Any) -> Any:
        others = self._store.record(self._test, name, self.kind, value)
        if self.expected_diff is None:
            for other, other_value in others.items():
                if other_value != value:
                    raise ParityMismatch(f"{name} differs between targets: {self.kind}={value!r}, "
                                         f"{other}={other_value!r}")
        return value
