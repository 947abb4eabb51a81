"""The container's image build, against a stand-in for the engine's build API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.errors import BuildError
from pytest_vmcontainer.targets.base import TargetSpec
from pytest_vmcontainer.targets.docker import DockerTarget


class _Engine:
    """Answers ``api.build`` with the errors given, one per build, then with success."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        self.builds = 0
        self.api = self
        self.images = self

    def build(self, **_: Any) -> Iterator[dict[str, str]]:
        self.builds += 1
        yield {"stream": "Step 1/2 : FROM pytest-vmcontainer/debian:bookworm\n"}
        if self.errors:
            yield {"error": self.errors.pop(0)}

    def list(self, **_: Any) -> list[Any]:  # images.list: no superseded images
        return []


def _target(tmp_path: Path, engine: _Engine) -> DockerTarget:
    (tmp_path / "Dockerfile").write_text("FROM pytest-vmcontainer/debian:bookworm\n")
    spec = TargetSpec("s1", tmp_path / "work", tmp_path / "Vagrantfile", tmp_path / "Dockerfile",
                      log_dir=tmp_path)
    return DockerTarget(spec, client=engine)


def test_a_build_whose_cached_image_was_removed_meanwhile_is_built_again(
        tmp_path: Path) -> None:
    engine = _Engine(["No such image: sha256:aff6cec18b5c"])
    assert _target(tmp_path, engine).build().startswith("pytest-vmcontainer/app:")
    assert engine.builds == 2


def test_a_failing_step_is_not_built_again(tmp_path: Path) -> None:
    engine = _Engine(["The command '/bin/sh -c exit 3' returned a non-zero code: 3"])
    with pytest.raises(BuildError, match="provisioning failed in the container"):
        _target(tmp_path, engine).build()
    assert engine.builds == 1
