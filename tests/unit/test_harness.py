"""The harness's answers to the comparison that need no engine."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pytest_vmcontainer.harness import Harness, HarnessConfig
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
