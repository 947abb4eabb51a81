"""Work in daemon threads that the main thread can wait for and still be interrupted.

concurrent.futures joins its workers at interpreter exit, so a Ctrl-C during a
long build would hang until the build ends; these threads never block exit,
and teardown stops the processes they wait on (see ``procs``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class StillRunning(Exception):
    """``Job.wait`` timed out; the job goes on."""


class Job(Generic[T]):
    def __init__(self, name: str, work: Callable[[], T]) -> None:
        self.name = name
        self._work = work
        self._result: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._work()
        except BaseException as error:  # handed to whoever waits
            self._error = error

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> T:
        """The result, or the job's exception re-raised here."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise StillRunning(self.name)
        return self.result()

    def result(self) -> T:
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]


def run_all(works: list[Callable[[], object]], name: str = "job") -> list[object]:
    """Run concurrently; wait for all, then re-raise the first failure."""
    if len(works) == 1:
        return [works[0]()]
    jobs = [Job(f"{name}-{i}", work) for i, work in enumerate(works)]
    for job in jobs:
        job._thread.join()
    return [job.wait() for job in jobs]
