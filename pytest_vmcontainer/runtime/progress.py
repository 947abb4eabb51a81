"""Progress output for long steps (base builds, image builds, `vagrant up`).

Each step prints when it starts and ends with its duration; while a step runs,
a heartbeat line shows the time spent whenever the step itself stays quiet,
so a cold box build never looks hung.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Writer = Callable[[str], None]


def _stderr_writer(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class Progress:
    """Prints step boundaries, selected output lines and heartbeats, thread-safe."""

    def __init__(self, write: Writer | None = None, heartbeat_seconds: float = 15.0,
                 verbose: bool = False) -> None:
        self._write = write or _stderr_writer
        self._heartbeat_seconds = heartbeat_seconds
        self._lock = threading.Lock()
        self.verbose = verbose

    def say(self, text: str) -> None:
        with self._lock:
            self._write(f"[vmcontainer] {text}")

    def detail(self, text: str) -> None:
        """A line of a tool's own output; shown only in verbose mode."""
        if self.verbose:
            self.say(f"    {text.rstrip()}")

    @contextmanager
    def step(self, name: str) -> Iterator[Callable[[str], None]]:
        """Run a named step; yields a function to report what the step is doing now."""
        started = time.monotonic()
        last_note = [time.monotonic()]
        done = threading.Event()

        def note(text: str) -> None:
            last_note[0] = time.monotonic()
            self.say(f"{name}: {text}")

        def heartbeat() -> None:
            while not done.wait(self._heartbeat_seconds):
                if time.monotonic() - last_note[0] >= self._heartbeat_seconds:
                    self.say(f"{name}: still running ({time.monotonic() - started:.0f}s)")

        self.say(f"{name} ...")
        beat = threading.Thread(target=heartbeat, name=f"progress:{name}", daemon=True)
        beat.start()
        try:
            yield note
        except BaseException:
            self.say(f"{name}: failed after {time.monotonic() - started:.1f}s")
            raise
        finally:
            done.set()
            beat.join()
        self.say(f"{name}: done in {time.monotonic() - started:.1f}s")


def quiet() -> Progress:
    """A Progress that discards everything (for unit tests and library use)."""
    return Progress(write=lambda _text: None)
