"""SIGTERM unwinds like Ctrl-C, so teardown runs (CI cancellations send SIGTERM)."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def sigterm_as_interrupt() -> Any:
    """Install the handler (main thread only); returns the previous one to restore, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, raise_interrupt)
