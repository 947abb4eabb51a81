"""SIGTERM unwinds like Ctrl-C, so teardown runs (CI cancellations send SIGTERM).

``INTERRUPTED`` says that one of them arrived: work that teardown would otherwise wait for
(a VM cache entry written in the background) is cancelled instead.
"""

from __future__ import annotations

import signal
import threading
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
