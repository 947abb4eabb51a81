"""The harness's answers to the comparison that need no engine, and its log directory."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_vmcontainer.harness import Harness, HarnessConfig, prune_logs
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.targets.base import Export


def _harness(tmp_path: Path) -> Harness:
    config = HarnessConfig(tmp_path / "Vagrantfile", tmp_path / "Dockerfile")
    return Harness(config, Progress(write=lambda _line: None))


def test_an_export_that_starts_warm_needs_no_untimed_first_instance(tmp_path: Path) -> None:
    harness = _harness(tmp_path)
    assert not harness.primed("vm")
    harness.exports["vm"] = Export(tmp_path / "app.box", 1, 0.5, "libvirt box",
                                   starts_warm=True)
    harness.exports["container"] = Export(tmp_path / "app.tar", 1, 0.5, "docker save (tar)")
    assert harness.primed("vm")
    assert not harness.primed("container")


def test_an_export_is_primed_once_an_instance_from_it_was_ready(tmp_path: Path) -> None:
    harness = _harness(tmp_path)
    harness.exports["container"] = Export(tmp_path / "app.tar", 1, 0.5, "docker save (tar)")
    made: Any = SimpleNamespace(kind="container", was_ready=False)
    harness._made.append(made)
    assert not harness.primed("container")
    made.was_ready = True
    assert harness.primed("container")
    assert not harness.primed("vm")


def _logs(directory: Path, count: int) -> list[Path]:
    """``count`` target logs, the first the oldest (mtimes one second apart)."""
    made = []
    for number in range(count):
        log = directory / f"s{number:02d}-{'vm' if number % 2 else 'container'}.log"
        log.write_text("")
        os.utime(log, (1_000_000 + number, 1_000_000 + number))
        made.append(log)
    return made


def test_only_the_newest_logs_stay(tmp_path: Path) -> None:
    logs = _logs(tmp_path, 6)
    (tmp_path / "tests-prepared.log").write_text("")  # not a target's: never pruned
    prune_logs(tmp_path, keep=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [log.name for log in logs[2:]] + ["tests-prepared.log"])


def test_a_log_another_run_pruned_meanwhile_is_skipped(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs at once prune one directory: a log listed here and removed by another run before
    its stat is gone already, not an error (seen with three runs at once)."""
    logs = _logs(tmp_path, 6)
    real_stat = Path.stat

    def stat_after_another_run(self: Path, **kwargs: Any) -> os.stat_result:
        if self == logs[0]:
            self.unlink()  # the other run's prune, between this one's listing and stat
        return real_stat(self, **kwargs)

    monkeypatch.setattr(Path, "stat", stat_after_another_run)
    prune_logs(tmp_path, keep=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(log.name for log in logs[2:])
