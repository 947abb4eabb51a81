"""The plugin's hookspecs, used the way a team would: another backend for a kind, an app's own
readiness check, a teardown hook. The stand-in backend is the test process itself, through
testinfra's ``local://``: no engine is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit import standin

pytest_plugins = ["pytester"]

HOOKS = """

polls = []


def pytest_vmcontainer_ready(target):
    polls.append(target.kind)
    return len(polls) >= 2  # "not yet" once: the harness must poll again


def pytest_vmcontainer_teardown(target, kept):
    event(f"teardown hook {target.kind} kept={kept}")


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"EVENTS {EVENTS} polls={len(polls)}")
"""
LOCAL_BACKEND = standin.conftest(kinds=("container",), extra=HOOKS)


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> pytest.Pytester:
    return standin.project(pytester, monkeypatch, tmp_path / "vmc-home", LOCAL_BACKEND)


def test_a_hook_swaps_the_backend_of_a_kind(project: pytest.Pytester) -> None:
    project.makepyfile(test_local="""
        def test_fixture_hands_over_the_swapped_backend(container):
            assert type(container).__name__ == "LocalTarget"
            assert container.mode == "container"

        def test_testinfra_reaches_it(host, parity):
            assert host.run("echo hello").stdout.strip() == "hello"
            parity.check("hostname", host.run("hostname").stdout.strip())
    """)
    result = project.runpytest("--target=container", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.re_match_lines([
        r"EVENTS \['up container', 'teardown hook container kept=False', "
        r"'destroy container'\] polls=2$",
        r"container: vmc-\w+-container \(CONTAINER, up in [\d.]+s\)$",
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
    standin.project(pytester, monkeypatch, tmp_path / "vmc-home",
                    standin.conftest(declared={"vm": (8080,), "container": (80, 8080)}))
    pytester.makepyfile(test_one="""
        def test_both_forward_the_union(target):
            assert target.seen_guest_ports == (80, 8080)
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "ports the files declare (Dockerfile EXPOSE, Vagrantfile forwarded_port)*passed*passed*"
        "guest ports DIFFERS: vm=[[]8080[]], container=[[]80, 8080[]]*"])
