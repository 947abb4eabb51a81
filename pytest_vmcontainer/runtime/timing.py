"""Timing work in rounds: the ``Timer`` protocol, and a plain timer for use without pytest.

In the comparison suite a Timer runs through pytest-benchmark's pedantic mode
(``comparison.measure.benchmark_timer``); elsewhere ``plain_timer`` loops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def __call__(self, work: Callable[[], object], setup: Callable[[], object] | None = None,
                 rounds: int | None = None, warmup: int | None = None) -> list[float]:
        """Run ``work`` for the warm-up and timed rounds; return the timed rounds' seconds."""


def plain_timer(default_rounds: int, default_warmup: int) -> Timer:
    """A Timer without pytest-benchmark (command line, library use)."""

    def timer(work: Callable[[], object], setup: Callable[[], object] | None = None,
              rounds: int | None = None, warmup: int | None = None) -> list[float]:
        durations = []
        total = (warmup if warmup is not None else default_warmup) + (rounds or default_rounds)
        for _ in range(total):
            if setup is not None:
                setup()
            started = time.perf_counter()
            work()
            durations.append(time.perf_counter() - started)
        return durations[total - (rounds or default_rounds):]

    return timer


def time_once(work: Callable[[], object], timer: Timer | None = None) -> float:
    """Seconds ``work`` took, timed once (through ``timer`` when one is given)."""
    return (timer or plain_timer(1, 0))(work, rounds=1, warmup=0)[-1]
