"""Parity between targets: what each test saw on each target, and the end-of-run matrix.

A test records values with ``parity.check(name, value)``. When the other
target already recorded the same check in this run, the values must be equal,
unless the test is marked ``@pytest.mark.expect_diff(reason=...)``: then both
values are kept and shown, not compared, so the difference stays visible.

Two stores live in a run. The *live* one backs ``parity.check`` inside the
process that runs the tests (an xdist worker keeps both targets of a row, see
``scheduling.py``). The *matrix* is assembled from test reports alone: every
target test carries its row, target and values as ``user_properties``
(``PROP_*`` below), which pytest-xdist ships to the controller and
``--junitxml`` writes as properties. A run with or without xdist builds its
matrix the same way, from the same reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

OUTCOME_ORDER = ("failed", "error", "skipped", "passed")
KINDS = ("vm", "container")  # column order wherever targets are listed

PROP_TARGET = "vmc.target"  # "vm" or "container"
PROP_ROW = "vmc.row"  # the test without its target: one row of the matrix
PROP_EXPECT_DIFF = "vmc.expect_diff"  # the reason of an expect_diff marker
PROP_MODE = "vmc.mode"  # how the target ran: kvm, tcg, container
PROP_CHECK = "vmc.parity."  # + the check's name; the value as JSON-safe data

Properties = Iterable[tuple[str, object]]


def json_safe(value: Any) -> Any:
    """``value`` as JSON data that survives xdist's serialization and a JSON file unchanged:
    None, bools, strings, finite numbers, lists and string-keyed dicts of those; anything
    else (a tuple becomes a list) is its ``repr``."""
    if value is None or type(value) in (bool, str, int):  # exact types: no enums, no numpy
        return value
    if type(value) is float:
        return value if math.isfinite(value) else repr(value)
    if type(value) in (list, tuple):
        return [json_safe(item) for item in value]
    if type(value) is dict and all(type(key) is str for key in value):
        return {key: json_safe(item) for key, item in value.items()}
    return repr(value)


def _show(value: Any, width: int = 40) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass
class TestRow:
    __test__ = False  # not a pytest test class

    test: str
    expected_diff: str | None = None
    outcomes: dict[str, str] = field(default_factory=dict)  # kind -> passed/failed/...
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # check -> kind -> value
    rank: float = math.inf  # position of its first test in the collection; orders the matrix

    def differences(self) -> dict[str, dict[str, Any]]:
        return {check: seen for check, seen in self.values.items()
                if len(seen) > 1 and len({repr(v) for v in seen.values()}) > 1}

    def verdict(self, check: str) -> str:
        """One check's result: same, DIFFERS, differs as expected, or one target only."""
        seen = self.values.get(check, {})
        if len(seen) < 2:
            return "one target only"
        if check in self.differences():
            return (f"differs as expected ({self.expected_diff})" if self.expected_diff
                    else "DIFFERS")
        return (f"same, though expected to differ ({self.expected_diff})" if self.expected_diff
                else "same")

    def to_json(self) -> dict[str, Any]:
        return {"test": self.test, "expected_diff": self.expected_diff,
                "outcomes": dict(self.outcomes),
                "values": {check: dict(seen) for check, seen in self.values.items()}}


class ParityStore:
    """Everything the parity matrix shows, filled by the fixture or from test reports."""

    def __init__(self) -> None:
        self.rows: dict[str, TestRow] = {}
        self.modes: dict[str, str] = {}  # kind -> how it ran (kvm, tcg, container)

    def row(self, test: str) -> TestRow:
        return self.rows.setdefault(test, TestRow(test))

    def ordered(self) -> list[TestRow]:
        """Rows in collection order (then in the order first seen): the same under xdist."""
        return sorted(self.rows.values(), key=lambda row: row.rank)

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

    def add_report(self, properties: Properties, when: str, outcome: str,
                   rank: float = math.inf) -> None:
        """One phase's test report (setup, call or teardown) of a target test.

        ``outcome`` is the report's: passed, failed or skipped. A failure outside the
        call is an error; a report without ``PROP_ROW`` is not a target test's.
        """
        props = dict(properties)
        test, kind = props.get(PROP_ROW), props.get(PROP_TARGET)
        if not isinstance(test, str) or not isinstance(kind, str):
            return
        row = self.row(test)
        row.rank = min(row.rank, rank)
        reason = props.get(PROP_EXPECT_DIFF)
        if reason is not None:
            row.expected_diff = str(reason)
        mode = props.get(PROP_MODE)
        if isinstance(mode, str):
            self.modes[kind] = mode
        for name, value in props.items():
            if name.startswith(PROP_CHECK):
                self.record(test, name[len(PROP_CHECK):], kind, value)
        if when == "call":
            self.outcome(test, kind, outcome)
        elif outcome == "failed":
            self.outcome(test, kind, "error")
        elif outcome == "skipped":
            self.outcome(test, kind, "skipped")

    def kinds_seen(self) -> list[str]:
        """The targets that ran at least one test of the matrix, in column order."""
        seen = {kind for row in self.rows.values() for kind in row.outcomes}
        return [kind for kind in KINDS if kind in seen] + sorted(seen - set(KINDS))

    def unexpected_differences(self) -> list[str]:
        return [f"{row.test}: {check}" for row in self.ordered() if not row.expected_diff
                for check in row.differences()]

    def render(self, kinds: tuple[str, ...]) -> list[str]:
        """The matrix as text lines: check, result per target, values where they differ."""
        if not self.rows:
            return []
        width = max(len(name) for name in self.rows) + 2
        lines = [f"{'check':<{width}}" + "".join(f"{k:<11}" for k in kinds) + "values"]
        for row in self.ordered():
            cells = "".join(f"{row.outcomes.get(k, '-'):<11}" for k in kinds)
            notes = []
            for check, seen in row.differences().items():
                values = ", ".join(f"{k}={_show(seen[k])!s}" for k in kinds if k in seen)
                label = (f"differs as expected ({row.expected_diff})" if row.expected_diff
                         else "DIFFERS")
                notes.append(f"{check} {label}: {values}")
            compared = any(len(seen) > 1 for seen in row.values.values())
            if row.expected_diff and compared and not row.differences():
                notes.append(f"expected to differ ({row.expected_diff}), but the values match")
            lines.append(f"{row.test:<{width}}{cells}{'; '.join(notes)}".rstrip())
        return lines

    # --- saved reports ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"modes": dict(self.modes), "rows": [row.to_json() for row in self.ordered()]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ParityStore:
        """Rebuild a store from ``to_json()``; ValueError when it is not of that shape."""
        store = cls()
        try:
            store.modes = {str(k): str(v) for k, v in (data.get("modes") or {}).items()}
            for rank, saved in enumerate(data.get("rows") or []):
                row = store.row(str(saved["test"]))
                row.rank = rank
                reason = saved.get("expected_diff")
                row.expected_diff = None if reason is None else str(reason)
                row.outcomes = {str(k): str(v) for k, v in (saved.get("outcomes") or {}).items()}
                row.values = {str(check): dict(seen)
                              for check, seen in (saved.get("values") or {}).items()}
        except (AttributeError, KeyError, TypeError) as error:
            raise ValueError(f"not a parity matrix ({error!r})") from None
        return store

    def merged(self, other: ParityStore) -> ParityStore:
        """This store and ``other`` (runs of other targets) in one: rows in this store's order,
        then the rows only ``other`` has, in its order."""
        merged = ParityStore.from_json(self.to_json())
        merged.modes.update(other.modes)
        offset = len(merged.rows)
        for rank, theirs in enumerate(other.ordered()):
            row = merged.row(theirs.test)
            if row.rank == math.inf:
                row.rank = offset + rank
            row.expected_diff = row.expected_diff or theirs.expected_diff
            row.outcomes.update(theirs.outcomes)
            for check, seen in theirs.values.items():
                row.values.setdefault(check, {}).update(seen)
        return merged


class ParityMismatch(AssertionError):
    pass


class Parity:
    """The ``parity`` fixture: records a value for the current target and compares.

    ``properties`` (the test's ``user_properties``) receives each value, so the
    test report carries it to the matrix and to JUnit XML.
    """

    def __init__(self, store: ParityStore, test: str, kind: str,
                 expected_diff: str | None,
                 properties: list[tuple[str, object]] | None = None) -> None:
        self._store = store
        self._test = test
        self._properties = properties
        self.kind = kind
        self.expected_diff = expected_diff
        store.row(test).expected_diff = expected_diff

    def check(self, name: str, value: Any) -> Any:
        if self._properties is not None:
            self._properties.append((PROP_CHECK + name, json_safe(value)))
        others = self._store.record(self._test, name, self.kind, value)
        if self.expected_diff is None:
            for other, other_value in others.items():
                if other_value != value:
                    raise ParityMismatch(f"{name} differs between targets: {self.kind}={value!r}, "
                                         f"{other}={other_value!r}")
        return value
