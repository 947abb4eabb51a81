"""The interval rule: synthetic samples where it must decide, and where it must refuse."""

from __future__ import annotations

import math
import random

import pytest

from pytest_vmcontainer.comparison import stats

MARGIN = 1.10


def _noisy_host(n: int, seed: int = 1) -> list[float]:
    """Round times of a shared machine: each round's load swings by up to 3x."""
    rng = random.Random(seed)
    return [rng.uniform(0.5, 1.5) for _ in range(n)]


def test_pairing_sees_through_noise_that_hits_every_target_alike() -> None:
    host = _noisy_host(5)
    spread = (max(host) - min(host)) / min(host)
    assert spread > 0.5  # the old rule gave up on anything past 10%
    target = [h * 1.5 * (1 + 0.01 * (-1) ** i) for i, h in enumerate(host)]
    interval = stats.paired_ratio(target, host)
    assert interval.known and interval.n == 5
    assert 1.45 < interval.low <= interval.estimate <= interval.high < 1.55  # type: ignore[operator]
    assert stats.against(interval, MARGIN).side == stats.ABOVE


def test_a_near_native_target_is_clearly_not_above_the_margin() -> None:
    host = _noisy_host(6)
    target = [h * 1.02 for h in host]
    decision = stats.against(stats.paired_ratio(target, host), MARGIN)
    assert decision.side == stats.NOT_ABOVE
    assert "is not above 1.10x" in decision.reason


def test_ratios_that_straddle_the_margin_are_undecided() -> None:
    host = [1.0, 1.0, 1.0, 1.0]
    target = [0.95, 1.4, 1.05, 1.3]
    decision = stats.against(stats.paired_ratio(target, host), MARGIN)
    assert decision.side == stats.UNDECIDED and "straddles 1.10x" in decision.reason


def test_unpaired_noise_is_not_hidden() -> None:
    """The same 1.5x target, unpaired: the host's swings now widen the interval."""
    host = _noisy_host(5)
    target = [h * 1.5 for h in _noisy_host(5, seed=2)]
    interval = stats.ratio_of_medians(target, host)
    assert interval.known and interval.low < MARGIN < interval.high  # type: ignore[operator]
    assert stats.against(interval, MARGIN).side == stats.UNDECIDED


@pytest.mark.parametrize("rounds", [0, 1, 2])
def test_fewer_than_three_rounds_give_no_interval_and_say_why(rounds: int) -> None:
    host, target = [1.0] * rounds, [2.0] * rounds
    for interval in (stats.paired_ratio(target, host), stats.ratio_of_medians(target, host)):
        assert not interval.known and interval.low is None and interval.high is None
        assert interval.reason
        decision = stats.against(interval, MARGIN)
        assert decision.side == stats.UNDECIDED
        assert "no interval" in decision.reason or "no ratio" in decision.reason
    if rounds:
        interval = stats.paired_ratio(target, host)
        assert interval.estimate == pytest.approx(2.0)  # the point estimate is still shown
        assert "at least 3 needed" in interval.reason


@pytest.mark.parametrize(("timed", "native", "reason"), [
    ([1.0, 2.0, 3.0], [1.0, 2.0], "not paired"),
    ([1.0, 0.0, 3.0], [1.0, 2.0, 3.0], "zero, negative or not finite"),
    ([1.0, -2.0, 3.0], [1.0, 2.0, 3.0], "zero, negative or not finite"),
    ([1.0, math.nan, 3.0], [1.0, 2.0, 3.0], "zero, negative or not finite"),
])
def test_rounds_that_cannot_make_a_ratio_are_refused(timed: list[float], native: list[float],
                                                     reason: str) -> None:
    interval = stats.paired_ratio(timed, native)
    assert interval.estimate is None and not interval.known and reason in interval.reason
    assert stats.against(interval, MARGIN).side == stats.UNDECIDED


def test_identical_ratios_give_a_point_interval_that_decides() -> None:
    interval = stats.paired_ratio([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert (interval.low, interval.estimate, interval.high) == pytest.approx((2.0, 2.0, 2.0))
    assert stats.against(interval, MARGIN).side == stats.ABOVE


def test_the_interval_is_deterministic_and_depends_only_on_the_seed() -> None:
    host = _noisy_host(7)
    target = [h * f for h, f in zip(host, [1.1, 1.3, 1.2, 1.25, 1.15, 1.4, 1.05], strict=True)]
    first, again = stats.paired_ratio(target, host), stats.paired_ratio(target, host)
    assert first == again
    other = stats.paired_ratio(target, host, seed=7)
    assert other.estimate == first.estimate and (other.low, other.high) != (first.low, first.high)


def test_the_geometric_mean_makes_the_inverse_ratio_the_reciprocal() -> None:
    host = _noisy_host(6)
    target = [h * f for h, f in zip(host, [1.1, 1.3, 1.2, 1.25, 1.15, 1.4], strict=True)]
    forward, backward = stats.paired_ratio(target, host), stats.paired_ratio(host, target)
    assert forward.estimate == pytest.approx(1 / backward.estimate)  # type: ignore[operator]
    assert forward.low == pytest.approx(1 / backward.high)  # type: ignore[operator]
    assert forward.high == pytest.approx(1 / backward.low)  # type: ignore[operator]


def test_ratio_of_medians_decides_on_clearly_separated_samples() -> None:
    rng = random.Random(3)
    container = [rng.lognormvariate(0, 0.1) for _ in range(30)]
    vm = [rng.lognormvariate(math.log(2.0), 0.1) for _ in range(25)]
    interval = stats.ratio_of_medians(vm, container)
    assert interval.n == 25 and 1.7 < interval.low < 2.0 < interval.high < 2.3  # type: ignore[operator]
    assert stats.against(interval, MARGIN).side == stats.ABOVE
    same = stats.ratio_of_medians([rng.lognormvariate(0, 0.02) for _ in range(40)], container)
    assert stats.against(same, MARGIN).side == stats.NOT_ABOVE


def test_a_long_sample_is_thinned_not_truncated_and_stays_quick(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(4)
    fast = [rng.lognormvariate(0, 0.2) for _ in range(20_000)]
    slow = [rng.lognormvariate(math.log(1.5), 0.2) for _ in range(20_000)]
    resampled: list[int] = []  # the size of every bootstrap resample: the work, not the clock
    median = stats._median_of_sorted

    def counted_median(values: list[float]) -> float:
        resampled.append(len(values))
        return median(values)

    monkeypatch.setattr(stats, "_median_of_sorted", counted_median)
    interval = stats.ratio_of_medians(slow, fast)
    assert resampled and max(resampled) == stats.MAX_BOOTSTRAP_VALUES
    assert interval.n == 20_000 and interval.low < 1.5 < interval.high  # type: ignore[operator]
    assert stats.against(interval, MARGIN).side == stats.ABOVE


def test_the_paired_interval_covers_the_true_ratio_most_of_the_time() -> None:
    """Coverage on noisy synthetic rounds (true ratio 1.3, n=10): near the nominal 95%."""
    rng = random.Random(5)
    trials, covered = 200, 0
    for trial in range(trials):
        host = [rng.uniform(0.5, 1.5) for _ in range(10)]
        target = [h * 1.3 * rng.lognormvariate(0, 0.1) for h in host]
        interval = stats.paired_ratio(target, host, seed=trial, resamples=1000)
        covered += interval.low <= 1.3 <= interval.high  # type: ignore[operator]
    assert covered / trials >= 0.9


def test_three_rounds_decide_only_when_every_round_agrees() -> None:
    """With 3 rounds the expanded percentile interval is the range of the paired ratios."""
    assert stats.expanded_tail(3) < 1e-6
    assert stats.expanded_tail(1000) == pytest.approx(0.025, abs=0.001)
    interval = stats.paired_ratio([1.2, 1.5, 1.3], [1.0, 1.0, 1.0])
    assert (interval.low, interval.high) == pytest.approx((1.2, 1.5))
    assert stats.against(interval, MARGIN).side == stats.ABOVE
    one_round_disagrees = stats.paired_ratio([1.05, 1.5, 1.3], [1.0, 1.0, 1.0])
    assert stats.against(one_round_disagrees, MARGIN).side == stats.UNDECIDED


def test_interval_text_and_dict() -> None:
    interval = stats.paired_ratio([2.0, 2.2, 1.8], [1.0, 1.0, 1.0])
    assert interval.text().startswith("1.99x (95% CI ") and interval.text().endswith(", n=3)")
    assert set(interval.as_dict()) == {"estimate", "low", "high", "n", "method", "reason"}
    assert "paired rounds" in interval.method
