"""A stand-in backend for pytester projects: the test process itself, through testinfra's
``local://``, answering for "vm", "container" or both through the plugin's own hook. Real
commands run; no engine is needed. ``conftest()`` gives a conftest.py's source."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

STAND_IN = """
import os
from dataclasses import replace
from pathlib import Path

from pytest_vmcontainer.targets.base import Target

KINDS = {kinds!r}  # the kinds this stand-in answers for
MODES = {modes!r}  # the mode each kind reports (a "vm" as "tcg" meets the TCG rules)
DECLARED = {declared!r}  # the guest ports each kind's "files" declare
EVENTS = []  # what happened, in this process
EVENTS_FILE = Path(__file__).parent / "events.log"  # and across processes (xdist)


def event(text):
    EVENTS.append(text)
    with open(EVENTS_FILE, "a") as log:
        log.write(f"{{text}} pid={{os.getpid()}}\\n")


class LocalTarget(Target):
    def __init__(self, kind, spec, progress):
        self.kind = kind
        super().__init__(spec, progress)

    @property
    def mode(self):
        return MODES[self.kind]

    def declared_ports(self):
        return DECLARED.get(self.kind, ())

    def up(self):
        event(f"up {{self.kind}}")
        self.seen_guest_ports = self.spec.guest_ports  # what the harness forwarded
        self.spec = replace(self.spec, guest_ports=(), ready_path=None, ready_timeout=5)
        self.wait_ready()

    @classmethod
    def attach(cls, spec, state):
        target = cls(state["kind"], spec, None)
        target.was_ready = True
        return target

    def stop(self):
        pass

    def start(self, ready_path=None):
        pass

    def destroy(self):
        event(f"destroy {{self.kind}}")

    def _make_host(self):
        import testinfra

        return testinfra.get_host("local://")


def pytest_vmcontainer_make_target(kind, spec, progress):
    return LocalTarget(kind, spec, progress) if kind in KINDS else None
"""


def conftest(kinds: tuple[str, ...] = ("vm", "container"), vm_mode: str = "tcg",
             declared: dict[str, tuple[int, ...]] | None = None, extra: str = "") -> str:
    """The stand-in's conftest.py source; ``extra`` is appended (more hooks, say)."""
    modes = {"vm": vm_mode, "container": "container"}
    return STAND_IN.format(kinds=kinds, modes=modes, declared=declared or {}) + extra


def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, home: Path,
            source: str, clear: tuple[str, ...] = ("VMC_",)) -> pytest.Pytester:
    """A pytester project answered by the stand-in: no VMC_ settings from outside, a
    VMC_HOME of its own, a Vagrantfile and a Dockerfile (checked, never used), ``source``
    as its conftest.py."""
    for name in list(os.environ):
        if name.startswith(clear):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VMC_SCAN", "off")  # the scan's own tests turn it on (tests/conftest.py)
    monkeypatch.setenv("VMC_HOME", str(home))
    (pytester.path / "Vagrantfile").write_text('Vagrant.configure("2") do |config|\nend\n')
    (pytester.path / "Dockerfile").write_text("FROM scratch\n")
    pytester.makeconftest(source)
    return pytester
