"""A team's own benchmarks: which tests count, and what the VM-vs-container ratio says."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from pytest_vmcontainer.comparison import userbench


def _item(rounds: list[float] | None, fixtures: tuple[str, ...] = ("target", "benchmark"),
          mode: str = "tcg") -> Any:
    stats = SimpleNamespace(stats=SimpleNamespace(data=rounds)) if rounds is not None else None
    return SimpleNamespace(fixturenames=fixtures,
                           funcargs={"benchmark": SimpleNamespace(stats=stats),
                                     "target": SimpleNamespace(mode=mode)})


def test_only_benchmarks_of_a_team_count() -> None:
    assert userbench.benchmark_rounds(_item([0.1, 0.2])) == [0.1, 0.2]
    assert userbench.benchmark_rounds(_item([0.1], ("target", "benchmark", "comparison"))) \
        is None  # the table's own measurement
    assert userbench.benchmark_rounds(_item([0.1], ("target",))) is None
    assert userbench.benchmark_rounds(_item(None)) is None  # --benchmark-disable: no stats
    assert userbench.benchmark_rounds(_item([])) is None


def _lognormal(median: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [median * rng.lognormvariate(0, 0.05) for _ in range(n)]


def test_the_verdict_names_a_side_only_when_the_interval_clears_10_percent() -> None:
    fast, slow = _lognormal(1e-3, 40, 1), _lognormal(2e-3, 40, 2)
    assert userbench.verdict_text(slow, fast)[1] == "the VM is more than 10% slower"
    assert userbench.verdict_text(fast, slow)[1] == "the container is more than 10% slower"
    assert userbench.verdict_text(fast, _lognormal(1e-3, 40, 3))[1] == "within 10% of each other"
    noisy = [1e-3, 3e-3, 1.2e-3, 2.5e-3, 0.9e-3]
    interval, text = userbench.verdict_text(noisy, [1.1e-3, 1.0e-3, 1.3e-3, 1.05e-3, 1.2e-3])
    assert text.startswith("undecided: ") and interval.known
    interval, text = userbench.verdict_text([1.0, 2.0], [1.0, 1.0])
    assert not interval.known and "at least 3 needed" in text


def test_results_pair_the_targets_by_test_and_keep_the_vm_mode() -> None:
    store = userbench.UserBenchmarks()
    store.collect("test_api.py::test_latency", "vm", _item(_lognormal(2e-3, 30, 4)))
    store.collect("test_api.py::test_latency", "container",
                  _item(_lognormal(1e-3, 30, 5), mode="container"))
    store.collect("test_api.py::test_only_vm", "vm", _item([1.0, 1.1, 1.2]))
    store.collect("test_api.py::test_table_row", "vm",
                  _item([1.0], ("target", "benchmark", "comparison")))
    latency, only_vm = store.results()
    assert latency.name == "test_api.py::test_latency"
    assert latency.figures["vm"]["mode"] == "tcg" and latency.figures["vm"]["rounds"] == 30
    assert latency.ratio is not None and 1.8 < latency.ratio["estimate"] < 2.2
    assert latency.verdict == "the VM is more than 10% slower"
    assert only_vm.ratio is None and only_vm.verdict == "measured on the vm only"
