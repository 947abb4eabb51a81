"""95% confidence intervals for ratios of timings, and whether an interval clears a margin.

Two kinds of ratio:

- ``paired_ratio``: rounds taken together (round i of the target right after round i
  of the host), so each round gives one ratio ``a_i / b_i`` and noise that hits a
  whole round cancels out. Summary: the **geometric mean** of the per-round ratios.
  Ratios are multiplicative, so they are averaged on the log scale: the geometric
  mean of ``a/b`` is exactly the reciprocal of that of ``b/a`` (the median of
  ratios is too, but with the 3-10 rounds a run can afford, the median's bootstrap
  distribution has only a handful of distinct values, so its percentile interval
  collapses onto single rounds; the mean of logs moves smoothly). A disturbed round
  is still one round in n; pairing, not the summary, is what removes shared noise.
- ``ratio_of_medians``: two independent samples (a user's benchmark on the VM and on
  the container, run at different times), so nothing pairs; the summary is the
  ratio of the medians, which one slow outlier round barely moves.

Both intervals are bootstraps: ``RESAMPLES`` resamples with replacement (of round
indices for paired rounds, of each sample independently otherwise), the statistic
recomputed on each, and percentiles of those taken (Efron & Tibshirani, *An
Introduction to the Bootstrap*, 1993, ch. 13). The plain 2.5/97.5 percentiles are
known to be too narrow for small samples, so the percentiles are widened by the
*expanded percentile* correction (Hesterberg, "What Teachers Should Know About the
Bootstrap", The American Statistician 69(4), 2015): the tail probability is
``Phi(-sqrt(n/(n-1)) * t(0.975, n-1))`` instead of 2.5%. Simulated on rounds whose
speed swings by 3x from round to round (paired ratio 1.3, 10% per-round noise),
the interval covered the true ratio 73% of the time with 3 rounds (with 3 rounds it
is simply the range of the three paired ratios: a verdict needs every round to
agree), 92% with 5 and 95% with 10. For a 95% claim, take 5 rounds or more. The
generator is ``random.Random(seed)`` with a fixed seed, so the same rounds always
give the same interval, and a saved report replays to the same verdict.

Why not what the usual tools print: hyperfine reports ``mean_a / mean_b ± stddev``
with the stddev from first-order error propagation assuming independent, normal samples
(``relative_speed.rs``: covariance taken as 0), a spread rather than an interval,
and it cannot use the pairing; pytest-benchmark's ``--benchmark-compare`` shows
each statistic side by side with its factor to the best, and
``--benchmark-compare-fail=median:10%`` fails on the point values alone, however
noisy. Both are fine on a quiet machine; on shared CI runners the per-round spread
is the size of the effect, which is what an interval makes visible.

Below ``MIN_ROUNDS`` rounds no interval is given at all (a bootstrap of two values
is not an interval). Samples longer than ``MAX_BOOTSTRAP_VALUES`` (a
micro-benchmark's thousands of rounds) enter the unpaired bootstrap as that many
evenly spaced order statistics: the interval is then as wide as if fewer rounds
had been taken (wider, never narrower), and it costs about a second per benchmark
in pure Python. For two samples the expansion uses the smaller one's size.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

CONFIDENCE = 0.95
RESAMPLES = 10_000
SEED = 20261128
MIN_ROUNDS = 3
MAX_BOOTSTRAP_VALUES = 200

ABOVE = "above"
NOT_ABOVE = "within or below"
UNDECIDED = "undecided"

PAIRED_METHOD = (f"paired rounds, geometric mean of per-round ratios, {RESAMPLES:,} "
                 "bootstrap resamples (expanded percentile)")
UNPAIRED_METHOD = (f"ratio of medians of two samples, {RESAMPLES:,} bootstrap resamples "
                   "of each (expanded percentile)")


@dataclass(frozen=True)
class Interval:
    """A ratio's estimate and its 95% interval; ``low``/``high`` are None when refused."""

    estimate: float | None
    low: float | None
    high: float | None
    n: int  # rounds (paired), or the smaller sample (unpaired)
    method: str
    reason: str = ""  # why there is no interval (or no estimate)

    @property
    def known(self) -> bool:
        return self.low is not None and self.high is not None

    def text(self, suffix: str = "x") -> str:
        """E.g. "1.29x (95% CI 1.10x-1.45x, 5 rounds)" or "1.29x (no interval: ...)"."""
        if self.estimate is None:
            return f"no ratio ({self.reason})"
        if not self.known:
            return f"{self.estimate:.2f}{suffix} (no interval: {self.reason})"
        assert self.low is not None and self.high is not None
        return (f"{self.estimate:.2f}{suffix} (95% CI {self.low:.2f}{suffix}-"
                f"{self.high:.2f}{suffix}, n={self.n:,})")

    def as_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "n": self.n,
                "method": self.method, "reason": self.reason}


def _usable(values: Sequence[float]) -> str:
    """Why these timings cannot enter a ratio ("" when they can)."""
    if any(not isinstance(v, int | float) or isinstance(v, bool) for v in values):
        return "a round is not a number"
    if any(not math.isfinite(v) or v <= 0 for v in values):
        return "a round is zero, negative or not finite"
    return ""


# Student's t, 97.5th percentile, by degrees of freedom (beyond 30: Cornish-Fisher).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def _t975(df: int) -> float:
    if df <= len(_T975):
        return _T975[df - 1]
    z = NormalDist().inv_cdf(0.975)
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def expanded_tail(n: int) -> float:
    """The lower tail probability of the expanded percentile interval for n values."""
    return NormalDist().cdf(-math.sqrt(n / (n - 1)) * _t975(n - 1))


def _percentiles(statistics_seen: list[float], n: int) -> tuple[float, float]:
    ordered = sorted(statistics_seen)
    tail = expanded_tail(n)
    low_index = math.floor(tail * len(ordered))
    high_index = min(len(ordered) - 1, math.ceil((1 - tail) * len(ordered)) - 1)
    return ordered[low_index], ordered[high_index]


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float], *,
                 seed: int = SEED, resamples: int = RESAMPLES) -> Interval:
    """Geometric mean of ``numerators[i] / denominators[i]`` with its bootstrap interval."""
    if len(numerators) != len(denominators):
        return Interval(None, None, None, min(len(numerators), len(denominators)),
                        PAIRED_METHOD, f"{len(numerators)} rounds against "
                        f"{len(denominators)}: rounds are not paired")
    n = len(numerators)
    if n == 0:
        return Interval(None, None, None, 0, PAIRED_METHOD, "no rounds")
    problem = _usable(numerators) or _usable(denominators)
    if problem:
        return Interval(None, None, None, n, PAIRED_METHOD, problem)
    logs = [math.log(a / b) for a, b in zip(numerators, denominators, strict=True)]
    estimate = math.exp(statistics.fmean(logs))
    if n < MIN_ROUNDS:
        return Interval(estimate, None, None, n, PAIRED_METHOD,
                        f"{n} round{'s' if n != 1 else ''}, at least {MIN_ROUNDS} needed")
    rng = random.Random(seed)
    means = [statistics.fmean(rng.choices(logs, k=n)) for _ in range(resamples)]
    low, high = _percentiles(means, n)
    return Interval(estimate, math.exp(low), math.exp(high), n, PAIRED_METHOD)


def _thinned(values: Sequence[float]) -> list[float]:
    """At most MAX_BOOTSTRAP_VALUES evenly spaced order statistics (see the module doc)."""
    ordered = sorted(values)
    if len(ordered) <= MAX_BOOTSTRAP_VALUES:
        return ordered
    last = len(ordered) - 1
    return [ordered[round(i * last / (MAX_BOOTSTRAP_VALUES - 1))]
            for i in range(MAX_BOOTSTRAP_VALUES)]


def _median_of_sorted(values: list[float]) -> float:
    half = len(values) // 2
    return values[half] if len(values) % 2 else (values[half - 1] + values[half]) / 2


def ratio_of_medians(numerators: Sequence[float], denominators: Sequence[float], *,
                     seed: int = SEED, resamples: int = RESAMPLES) -> Interval:
    """``median(numerators) / median(denominators)`` with its bootstrap interval."""
    n = min(len(numerators), len(denominators))
    if n == 0:
        return Interval(None, None, None, 0, UNPAIRED_METHOD, "a sample has no rounds")
    problem = _usable(numerators) or _usable(denominators)
    if problem:
        return Interval(None, None, None, n, UNPAIRED_METHOD, problem)
    estimate = statistics.median(numerators) / statistics.median(denominators)
    if n < MIN_ROUNDS:
        return Interval(estimate, None, None, n, UNPAIRED_METHOD,
                        f"{n} round{'s' if n != 1 else ''} in the smaller sample, at least "
                        f"{MIN_ROUNDS} needed")
    a, b = _thinned(numerators), _thinned(denominators)
    rng = random.Random(seed)
    ratios = [_median_of_sorted(sorted(rng.choices(a, k=len(a))))
              / _median_of_sorted(sorted(rng.choices(b, k=len(b))))
              for _ in range(resamples)]
    low, high = _percentiles(ratios, n)
    return Interval(estimate, low, high, n, UNPAIRED_METHOD)


@dataclass(frozen=True)
class Decision:
    side: str  # ABOVE, NOT_ABOVE or UNDECIDED
    reason: str


def against(interval: Interval, margin: float) -> Decision:
    """Whether the ratio is clearly above ``margin``, clearly not above it, or undecided.

    Clearly above: the whole interval is above the margin. Clearly within or below:
    the whole interval is at or below it. Anything else, including no interval at
    all (too few rounds), is undecided, with the reason.
    """
    shown = interval.text()
    if not interval.known:
        return Decision(UNDECIDED, shown)
    assert interval.low is not None and interval.high is not None
    if interval.low > margin:
        return Decision(ABOVE, f"{shown} is above {margin:.2f}x")
    if interval.high <= margin:
        return Decision(NOT_ABOVE, f"{shown} is not above {margin:.2f}x")
    return Decision(UNDECIDED, f"{shown} straddles {margin:.2f}x")
