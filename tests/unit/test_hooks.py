"""The plugin's hookspecs, used the way a team would: another backend for a kind, an app's own
readiness check, a teardown hook. The stand-in backend is the test process itself, through
testinfra's ``local://``: no engine is needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

LOCAL_BACKEND = """
from dataclasses import replace

from pytest_vmcontainer.targets.base import Target

EVENTS = []


class LocalTarget(Target):
    kind = "container"

    @property
    def mode(self):
        return "local"

    def up(self):
        self.spec = replace(self.spec, guest_ports=(), ready_path=None, ready_timeout=5)
        EVENTS.append(f"up {self.resource_name}")
        self.wait_ready()

    def stop(self):
        pass

    def start(self):
        pass

    def destroy(self):
        EVENTS.append("destroy")

    def _make_host(self):
        import testinfra

        return testinfra.get_host("local://")


def pytest_vmcontainer_make_target(kind, spec, progress):
    return LocalTarget(spec, progress) if kind == "container" else None


polls = []


def pytest_vmcontainer_ready(target):
    polls.append(target.kind)
    return len(polls) >= 2  # "not yet" once: the harness must poll again


def pytest_vmcontainer_teardown(target, kept):
    EVENTS.append(f"teardown hook {target.kind} kept={kept}")


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"EVENTS {EVENTS} polls={len(polls)}")
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> pytest.Pytester:
    for name in list(os.environ):
        if name.startswith("VMC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VMC_HOME", str(tmp_path / "vmc-home"))
    (pytester.path / "Vagrantfile").write_text('Vagrant.configure("2") do |config|\nend\n')
    (pytester.path / "Dockerfile").write_text("FROM scratch\n")
    pytester.makeconftest(LOCAL_BACKEND)
    return pytester


def test_a_hook_swaps_the_backend_of_a_kind(project: pytest.Pytester) -> None:
    project.makepyfile(test_local="""
        def test_fixture_hands_over_the_swapped_backend(container):
            assert type(container).__name__ == "LocalTarget"
            assert container.mode == "local"

        def test_testinfra_reaches_it(host, parity):
            assert host.run("echo hello").stdout.strip() == "hello"
            parity.check("hostname", host.run("hostname").stdout.strip())
    """)
    result = project.runpytest("--target=container", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.re_match_lines([
        r"EVENTS \['up vmc-\w+-container', 'teardown hook container kept=False', 'destroy'\] "
        r"polls=2$",
        r"container: vmc-\w+-container \(LOCAL, up in [\d.]+s\)$",
    ])


def test_the_hooks_are_documented_specs() -> None:
    from pytest_vmcontainer import hookspecs

    names = sorted(name for name in vars(hookspecs) if name.startswith("pytest_vmcontainer_"))
    assert names == ["pytest_vmcontainer_comparison_rows", "pytest_vmcontainer_make_target",
                     "pytest_vmcontainer_ready", "pytest_vmcontainer_teardown"]
    for name in names:
        doc = getattr(hookspecs, name).__doc__
        assert doc and len(doc.split()) > 30, name


def test_extra_comparison_rows_join_the_table(project: pytest.Pytester) -> None:
    project.makeconftest(LOCAL_BACKEND + """

from pytest_vmcontainer.comparison.results import HOLDS, Verdict
from pytest_vmcontainer.comparison.rows import Row


def probe_greeting(ctx, target):
    return {"greeting": target.run("echo hi").stdout.strip()}, None


def pytest_vmcontainer_comparison_rows():
    return [Row("greeting", "Greeting", "says hi", "says hi", "text", "greeting",
                probe_greeting, "echo inside", "holds if both say hi",
                lambda vm, ct, host: Verdict(HOLDS, "both said hi"))]
""")
    project.makepyfile(test_row="""
        def test_greeting(target, comparison):
            assert comparison.measure("greeting", target)["greeting"] == "hi"
    """)
    result = project.runpytest("--target=container", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["Greeting*says hi / says hi*not measured*hi*not measurable*"])


def test_a_port_declared_on_one_side_only_shows_as_a_difference(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VMC_HOME", str(tmp_path / "vmc-home"))
    (pytester.path / "Vagrantfile").write_text('Vagrant.configure("2") do |config|\nend\n')
    (pytester.path / "Dockerfile").write_text("FROM scratch\n")
    pytester.makeconftest("""
        from dataclasses import replace

        from pytest_vmcontainer.targets.base import Target

        DECLARED = {"vm": (8080,), "container": (80, 8080)}


        class Declaring(Target):
            def __init__(self, kind, spec, progress):
                self.kind = kind
                super().__init__(spec, progress)

            @property
            def mode(self):
                return "container" if self.kind == "container" else "tcg"

            def declared_ports(self):
                return DECLARED[self.kind]

            def up(self):
                # What the harness made of both declarations: the union, on both targets.
                assert self.spec.guest_ports == (80, 8080), self.spec.guest_ports
                self.spec = replace(self.spec, guest_ports=())
                self.wait_ready()

            def stop(self):
                pass

            def start(self):
                pass

            def destroy(self):
                pass

            def _make_host(self):
                import testinfra

                return testinfra.get_host("local://")


        def pytest_vmcontainer_make_target(kind, spec, progress):
            return Declaring(kind, spec, progress)
    """)
    pytester.makepyfile(test_one="def test_one(target):\n    assert target.mode\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "ports the files declare (Dockerfile EXPOSE, Vagrantfile forwarded_port)*passed*passed*"
        "guest ports DIFFERS: vm=[[]8080[]], container=[[]80, 8080[]]*"])
