"""The container's image build, against a stand-in for the engine's build API."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.errors import BuildError
from pytest_vmcontainer.host import paths
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.runtime.waiting import wait_for
from pytest_vmcontainer.targets.base import TargetSpec
from pytest_vmcontainer.targets.docker import DockerTarget


class _Engine:
    """Answers ``api.build`` with the errors given, one per build, then with success."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        self.builds = 0
        self.api = self

    def build(self, **_: Any) -> Iterator[dict[str, str]]:
        self.builds += 1
        yield {"stream": "Step 1/2 : FROM pytest-vmcontainer/debian:bookworm\n"}
        if self.errors:
            yield {"error": self.errors.pop(0)}

    def images(self, **_: Any) -> list[Any]:  # api.images: no superseded images
        return []


class _HeldEngine(_Engine):
    """A build that stays inside the engine until ``release``; counts builds inside at once."""

    def __init__(self) -> None:
        super().__init__([])
        self.inside = self.most_inside = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self._count = threading.Lock()

    def build(self, **options: Any) -> Iterator[dict[str, str]]:
        with self._count:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        self.entered.set()
        self.release.wait(timeout=60)
        yield from super().build(**options)
        with self._count:
            self.inside -= 1


def _target(tmp_path: Path, engine: _Engine, session: str = "s1",
            progress: Progress | None = None) -> DockerTarget:
    (tmp_path / "Dockerfile").write_text("FROM pytest-vmcontainer/debian:bookworm\n")
    spec = TargetSpec(session, tmp_path / "work", tmp_path / "Vagrantfile",
                      tmp_path / "Dockerfile", log_dir=tmp_path)
    return DockerTarget(spec, progress, client=engine)


@dataclass
class _TwoRuns:
    """Two runs' container targets of one Dockerfile (one image, one tag), on one held
    engine; what the second run says is kept."""

    engine: _HeldEngine
    first: DockerTarget
    second: DockerTarget
    said: list[str] = field(default_factory=list)

    def second_waits(self) -> bool:
        return any("another run is building" in line for line in self.said)


@pytest.fixture
def two_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _TwoRuns:
    monkeypatch.setattr(paths, "machine_lock_dir", lambda: tmp_path)
    engine = _HeldEngine()
    said: list[str] = []
    runs = _TwoRuns(engine, _target(tmp_path, engine),
                    _target(tmp_path, engine, "s2", Progress(write=said.append)), said)
    assert runs.first.spec.dockerfile == runs.second.spec.dockerfile
    return runs


def test_two_runs_building_one_image_build_one_after_the_other(two_runs: _TwoRuns) -> None:
    """Side by side, each would make its own image and take the tag from the other, leaving
    the first one's image dangling; the second waits, then builds from the cache."""
    engine = two_runs.engine
    threads = [threading.Thread(target=target.build)
               for target in (two_runs.first, two_runs.second)]
    threads[0].start()
    assert engine.entered.wait(timeout=30)
    threads[1].start()
    try:
        wait_for(lambda: engine.most_inside > 1 or two_runs.second_waits(),
                 timeout=30, what="the second build to wait, or to start")
    finally:
        engine.release.set()
        for thread in threads:
            thread.join(timeout=60)
    assert engine.most_inside == 1 and engine.builds == 2, two_runs.said


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


def test_a_build_waiting_for_another_runs_ends_when_its_run_is_cancelled(
        two_runs: _TwoRuns) -> None:
    engine, second = two_runs.engine, two_runs.second
    raised: list[BaseException] = []

    def build_second() -> None:
        try:
            second.build()
        except BaseException as error:  # what the thread ended with
            raised.append(error)

    holder = threading.Thread(target=two_runs.first.build)
    holder.start()
    waiter = threading.Thread(target=build_second)
    try:
        assert engine.entered.wait(timeout=30)
        waiter.start()
        wait_for(two_runs.second_waits, timeout=30, what="the second build to wait")
        second.cancelled.set()  # what a teardown does
        waiter.join(timeout=30)
    finally:
        engine.release.set()
        holder.join(timeout=60)
    assert [type(error).__name__ for error in raised] == ["Cancelled"], raised
    assert engine.builds == 1


def test_images_are_listed_without_inspecting_each() -> None:
    """Another run may remove an image between the list and an inspect of it (the SDK's
    ``images.list`` inspects each, and raised ``ImageNotFound`` in CI): the engine's own
    list is used as it is."""
    from pytest_vmcontainer.targets.docker.client import ListedImage, listed_images

    class Api:
        def images(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
            assert filters == {"dangling": True}
            return [{"Id": "sha256:aa", "RepoTags": ["<none>:<none>"], "Labels": None},
                    {"Id": "sha256:bb", "RepoTags": ["app:1", "app:2"], "Labels": {"k": "v"}}]

        def inspect_image(self, name: str) -> None:
            raise AssertionError(f"inspected {name}")

    class Client:
        api = Api()

    assert listed_images(Client(), {"dangling": True}) == [
        ListedImage("sha256:aa", (), {}), ListedImage("sha256:bb", ("app:1", "app:2"), {"k": "v"})]
