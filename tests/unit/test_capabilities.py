"""Optional capabilities: declared by a backend, checked by who needs them before any work.

The stand-in backends here have the core only (``CoreOnly``), or the core and ``attach``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer import targets
from pytest_vmcontainer.comparison import probes, rows
from pytest_vmcontainer.comparison.measure import Comparison, TestMeasurer
from pytest_vmcontainer.comparison.results import NOT_MEASURABLE
from pytest_vmcontainer.errors import UsageError
from pytest_vmcontainer.targets import capabilities
from pytest_vmcontainer.targets.base import Target, TargetSpec
from pytest_vmcontainer.targets.docker import DockerTarget
from pytest_vmcontainer.targets.vagrant import VagrantTarget


class CoreOnly(Target):
    kind = "container"
    mode = "container"

    def up(self) -> None:
        raise AssertionError("not brought up here")

    stop = start = destroy = up

    def _make_host(self) -> Any:
        raise AssertionError("no host here")


class Attachable(CoreOnly):
    @classmethod
    def attach(cls, spec: TargetSpec, state: dict[str, Any]) -> Target:
        return cls(spec)


def _spec(tmp_path: Path) -> TargetSpec:
    return TargetSpec("s1", tmp_path / "work", tmp_path / "Vagrantfile", tmp_path / "Dockerfile")


def test_the_shipped_backends_declare_every_capability() -> None:
    for backend in (DockerTarget, VagrantTarget):
        assert capabilities.missing(backend, capabilities.CAPABILITIES) == []
        assert all(issubclass(backend, protocol)
                   for protocol in capabilities.CAPABILITIES.values())


def test_a_core_only_backend_lacks_them_all_and_is_told_so_in_one_line(tmp_path: Path) -> None:
    target = CoreOnly(_spec(tmp_path))
    assert capabilities.missing(target, capabilities.CAPABILITIES) == [
        "export", "measure", "attach", "shell"]
    reason = capabilities.lacks(target, ("export", "measure"), "the comparison row 'density'")
    assert reason == ("the comparison row 'density' needs the 'export' capability and the "
                      "'measure' capability, which the container backend CoreOnly does not "
                      "provide")
    assert capabilities.lacks(Attachable, ("attach",), "anyone") is None
    with pytest.raises(UsageError, match=r"'measure' capability.*CoreOnly"):
        capabilities.as_measuring(target)


class NoInstances:
    """The harness side of the comparison: a row that lacks a capability must ask nothing."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the comparison asked the harness for {name}")


def test_a_row_that_needs_what_the_backend_lacks_is_skipped_before_its_probe(
        tmp_path: Path) -> None:
    comparison = Comparison(NoInstances(), probes.MeasureSettings())  # type: ignore[arg-type]
    target = CoreOnly(_spec(tmp_path))
    needing = [row.id for row in rows.ROWS if row.needs]
    assert needing == ["size", "boot_time", "portability", "resource_usage", "density",
                       "storage"]
    for row_id in needing:
        with pytest.raises(pytest.skip.Exception, match=f"row '{row_id}' needs the '"):
            TestMeasurer(comparison, []).measure(row_id, target)
        with pytest.raises(UsageError, match="CoreOnly does not provide"):
            comparison.measure(row_id, target)
    comparison.figures["isolation"] = {"container": {"separate_kernel": False}}
    verdicts = {result.id: result.verdict for result in comparison.report({}).rows}
    assert verdicts["density"] is not None and verdicts["density"].status == NOT_MEASURABLE
    assert verdicts["density"].reason == (
        "the comparison row 'density' needs the 'export' capability and the 'measure' "
        "capability, which the container backend CoreOnly does not provide")


def _saved(tmp_path: Path, backend: type[Target]) -> Path:
    workdir = tmp_path / "session" / "container"
    workdir.mkdir(parents=True)
    state = {"kind": "container", "backend": f"{backend.__module__}:{backend.__name__}",
             "session": "s1", "vagrantfile": "Vagrantfile", "dockerfile": "Dockerfile"}
    (workdir / Target.STATE_FILE).write_text(json.dumps(state))
    return workdir


def test_xdist_workers_and_the_cli_need_attach_and_say_so_before_attaching(
        tmp_path: Path) -> None:
    workdir = _saved(tmp_path, CoreOnly)
    with pytest.raises(UsageError) as raised:
        targets.attach(workdir, "a pytest-xdist worker")
    assert str(raised.value).splitlines()[0] == (
        "a pytest-xdist worker needs the 'attach' capability, which the container backend "
        "CoreOnly does not provide: use a backend that provides it (see "
        "pytest_vmcontainer.targets.capabilities)")


def test_login_and_exec_need_a_shell_as_well(tmp_path: Path) -> None:
    workdir = _saved(tmp_path, Attachable)
    assert isinstance(targets.attach(workdir, "list"), Attachable)
    with pytest.raises(UsageError, match=r"^login and exec needs the 'shell' capability, "
                                          r"which the container backend Attachable"):
        targets.attach(workdir, "login and exec", also=("shell",))
