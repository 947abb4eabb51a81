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
from tests.unit import standin

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]


class CoreOnly(Target):
    kind = "container"
    mode = "container"

    def up(self) -> None:
        raise AssertionError("not brought up here")

    def start(self, ready_path: str | None = None) -> None:
        self.up()

    stop = destroy = up

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
    assert target.describe_kept() == (
        "container vmc-s1-container: login needs the 'attach' capability and the 'shell' "
        "capability, which the container backend CoreOnly does not provide")


class NoInstances:
    """The harness side of the comparison: a row that lacks a capability must ask nothing."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the comparison asked the harness for {name}")


def test_a_row_that_needs_what_the_backend_lacks_is_skipped_before_its_probe(
        tmp_path: Path) -> None:
    comparison = Comparison(NoInstances(), probes.MeasureSettings())
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


# --- a third backend with the core only, run by the plugin --------------------------------------

CORE_ONLY = '''
import os
import subprocess
import sys
from pathlib import Path

from pytest_vmcontainer.host.ports import free_port
from pytest_vmcontainer.runtime.waiting import http_ok, wait_for
from pytest_vmcontainer.targets.base import Target

EVENTS_FILE = Path(__file__).parent / "events.log"  # what happened, across processes


def event(text):
    with open(EVENTS_FILE, "a") as log:
        log.write(f"{text}\\n")


class LocalHttpTarget(Target):
    """The core and nothing else: commands run on this host (testinfra's local://), and the
    app is python's http.server on a free 127.0.0.1 port, a subprocess it tracks and stops.
    Its guest is the host itself, so a guest port is the same port on the host."""

    kind = "container"

    def __init__(self, spec, progress=None):
        super().__init__(spec, progress)
        self.port = free_port()
        self.server = None

    @property
    def mode(self):
        return "local"

    def declared_ports(self):
        return (self.port,)

    def up(self):
        (self.spec.workdir / "index.html").write_text("hello from the stand-in\\n")
        self.host_ports = {self.port: self.port}
        event("up")
        self.start()

    def start(self, ready_path=None):
        self.server = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1",
             "--directory", str(self.spec.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        event(f"server {self.server.pid}")
        self.wait_ready()

    def wait_ready(self):
        # Listening on loopback only, which the core's check (made for forwards into a
        # guest) does not count: the page answering is the readiness here.
        wait_for(http_ok(self.url("/")), timeout=self.spec.ready_timeout,
                 what=f"http.server on port {self.port}")
        self.was_ready = True

    def stop(self):
        if self.server is not None:
            self.server.terminate()
            self.server.wait(timeout=10)
            self.server = None

    def destroy(self):
        self.stop()
        event("destroy")

    def _make_host(self):
        import testinfra

        return testinfra.get_host("local://")


def pytest_vmcontainer_make_target(kind, spec, progress):
    return LocalHttpTarget(spec, progress) if kind == "container" else None
'''

PARITY_SUITE = """
import urllib.request


def test_the_page_answers(target, parity):
    with urllib.request.urlopen(target.url("/"), timeout=10) as response:
        parity.check("page", response.read().decode().strip())


def test_commands_run_inside(host, parity):
    parity.check("echo", host.run("echo hi").stdout.strip())
    assert host.file("/etc/passwd").exists
"""


@pytest.fixture
def core_only(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
              tmp_path: Path) -> pytest.Pytester:
    return standin.project(pytester, monkeypatch, tmp_path / "vmc-home", CORE_ONLY)


def _events(project: pytest.Pytester) -> list[str]:
    return (project.path / "events.log").read_text().splitlines()


def _server_stopped(project: pytest.Pytester) -> bool:
    pids = [int(line.split()[1]) for line in _events(project) if line.startswith("server ")]
    return bool(pids) and all(not Path(f"/proc/{pid}").exists() for pid in pids)


def test_the_parity_tests_run_on_a_backend_with_the_core_only(core_only: pytest.Pytester) -> None:
    core_only.makepyfile(test_app=PARITY_SUITE)
    result = core_only.runpytest("-p", "no:cacheprovider", "--target=container",
                                 "--vmc-no-host-setup")
    result.assert_outcomes(passed=2)
    assert _events(core_only)[0] == "up" and _events(core_only)[-1] == "destroy"
    assert _server_stopped(core_only)


def test_the_comparison_skips_the_rows_whose_capabilities_it_lacks(
        core_only: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    hash_script = probes.cpu_script
    monkeypatch.setattr(probes, "cpu_script", lambda mib: hash_script(1))  # quick rounds
    core_only.makepyfile(test_comparison=(ROOT / "suites" / "test_comparison.py").read_text())
    # The rows that need only the core run on it, lightly; security is left out: its test
    # asserts the app listens on port 80 inside, and this app listens on a free port.
    result = core_only.runpytest("-p", "no:cacheprovider", "--target=container",
                                 "--vmc-no-host-setup", "-k", "not security", "-rs",
                                 "--vmc-rounds=1", "--vmc-warmup=0", "--vmc-http-requests=20",
                                 "--vmc-http-seconds=2")
    result.assert_outcomes(passed=4, skipped=7, deselected=1)
    assert "Benchmark fixture was not used" not in result.stdout.str()
    backend = "which the container backend LocalHttpTarget does not provide"
    for row, needs in (("size", "'measure'"), ("resource_usage", "'measure'"),
                       ("portability", "'export'"), ("storage", "'export'"),
                       ("density", "'export' capability and the 'measure'"),
                       ("boot_time", "'export'")):
        result.stdout.fnmatch_lines([f"SKIPPED * the comparison row '{row}' needs the {needs} "
                                     f"capability, {backend}"])
    assert _events(core_only).count("up") == 1  # no instance made for any row
    assert _server_stopped(core_only)


def test_xdist_refuses_a_backend_that_cannot_attach_before_bringing_it_up(
        core_only: pytest.Pytester) -> None:
    core_only.makepyfile(test_app=PARITY_SUITE)
    result = core_only.runpytest_subprocess("-p", "no:cacheprovider", "--target=container",
                                            "--vmc-no-host-setup", "-n", "2")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*running tests in pytest-xdist workers needs the 'attach' "
                                 "capability, which the container backend LocalHttpTarget "
                                 "does not provide*"])
    assert not (core_only.path / "events.log").exists()  # nothing was brought up
