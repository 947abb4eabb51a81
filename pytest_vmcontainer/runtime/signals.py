"""SIGTERM unwinds like Ctrl-C, so teardown runs (CI cancellations send SIGTERM).

``INTERRUPTED`` says that one of them arrived: work that teardown would otherwise wait for
(a VM cache entry written in the background) is cancelled instead.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

INTERRUPTED = threading.Event()


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    INTERRUPTED.set()
    raise KeyboardInterrupt(signal.Signals(signum).name)


def sigterm_as_interrupt() -> Any:
    """Install the handler for SIGTERM, and for SIGINT where Python's default one is in place
    (main thread only); returns the previous SIGTERM handler to restore, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    INTERRUPTED.clear()
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, raise_interrupt)  # the same KeyboardInterrupt, flagged
    return signal.signal(signal.SIGTERM, raise_interrupt)


@contextlib.contextmanager
def teardown_uninterrupted() -> Iterator[None]:
    """Teardown runs to its end: a Ctrl-C or SIGTERM that arrives meanwhile prints a note and
    sets ``INTERRUPTED`` instead of stopping it halfway (a domain stopped but still defined,
    a session directory left). Main thread only (elsewhere Python delivers no signal)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _teardown_in_progress)
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _teardown_in_progress(signum: int, frame: FrameType | None) -> None:
    INTERRUPTED.set()
    sys.stderr.write("\n[vmcontainer] removing the targets, please wait...\n")
