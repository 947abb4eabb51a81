"""A team's own benchmarks, VM against container, with the same interval rule as the table.

A test that takes ``target`` and pytest-benchmark's ``benchmark`` runs once per
target as usual; after each call the plugin hands the test here, and the raw
rounds (``benchmark.stats.stats.data``: seconds per iteration, one value per
round) are kept. At the end of the run each benchmark measured on both targets
becomes a ratio VM/container of the medians with its bootstrap interval
(``stats.ratio_of_medians``: the two runs are not paired). Tests that use the
``comparison`` fixture are the table's own measurements and are left out.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from pytest_vmcontainer.comparison import stats
from pytest_vmcontainer.comparison.results import Figures, UserBenchmark

MARGIN = 1.10  # as the table's: "slower" means by more than 10%


def benchmark_rounds(item: Any) -> list[float] | None:
    """The raw rounds of a team's benchmark test, or None when ``item`` is not one (no
    ``benchmark`` fixture, a comparison test, benchmarks disabled or skipped)."""
    names = getattr(item, "fixturenames", ())
    if "benchmark" not in names or "comparison" in names:
        return None
    fixture = getattr(item, "funcargs", {}).get("benchmark")
    metadata = getattr(fixture, "stats", None)  # None until the benchmark ran
    data = getattr(getattr(metadata, "stats", None), "data", None)
    return [float(value) for value in data] if data else None


def _summary(rounds: Sequence[float]) -> Figures:
    return {"median_s": statistics.median(rounds), "min_s": min(rounds), "rounds": len(rounds)}


def verdict_text(vm: Sequence[float], container: Sequence[float]) -> tuple[stats.Interval, str]:
    """The VM/container interval and what it says, by the 10% margin both ways."""
    interval = stats.ratio_of_medians(vm, container)
    slower_vm = stats.against(interval, MARGIN)
    if slower_vm.side == stats.ABOVE:
        return interval, "the VM is more than 10% slower"
    if slower_vm.side == stats.UNDECIDED:
        why = interval.reason or "the 95% interval straddles the 10% margin"
        return interval, f"undecided: {why}"
    slower_container = stats.against(stats.ratio_of_medians(container, vm), MARGIN)
    if slower_container.side == stats.ABOVE:
        return interval, "the container is more than 10% slower"
    if slower_container.side == stats.NOT_ABOVE:
        return interval, "within 10% of each other"
    return interval, "the VM is not more than 10% slower; the container might be"


class UserBenchmarks:
    """Raw rounds per benchmark (the test without its target) and target kind."""

    def __init__(self) -> None:
        self.rounds: dict[str, dict[str, list[float]]] = {}
        self.modes: dict[str, str] = {}  # kind -> "kvm", "tcg", "container": shown with figures

    def collect(self, name: str, kind: str, item: Any) -> None:
        rounds = benchmark_rounds(item)
        if rounds:
            self.rounds.setdefault(name, {})[kind] = rounds
            target = getattr(item, "funcargs", {}).get("target")
            if target is not None:
                self.modes[kind] = str(target.mode)

    def results(self) -> list[UserBenchmark]:
        found = []
        for name, by_kind in sorted(self.rounds.items()):
            result = UserBenchmark(name, {kind: {**_summary(rounds), "mode": self.modes.get(kind)}
                                          for kind, rounds in sorted(by_kind.items())})
            if "vm" in by_kind and "container" in by_kind:
                interval, result.verdict = verdict_text(by_kind["vm"], by_kind["container"])
                result.ratio = interval.as_dict()
            else:
                result.verdict = f"measured on the {', '.join(sorted(by_kind))} only"
            found.append(result)
        return found
