"""The plugin in a real (in-process) pytest run: options, ids, skips, markers, header.

No target is ever brought up: tests that would need one are only collected, and a
guard turns any attempt to start the harness into a loud failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_vmcontainer.harness import Harness

pytest_plugins = ["pytester"]

TARGET_TEST = """
def test_x(target):
    pass

def test_h(host):
    pass

def test_plain():
    pass
"""

STATE_PROBE = """
from pytest_vmcontainer.runstate import state_of

def pytest_terminal_summary(terminalreporter, config):
    state = state_of(config)
    terminalreporter.write_line(f"PROBE harness={state.harness} needed={sorted(state.needed)}")
"""


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("VMC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VMC_SCAN", "off")  # the scan's own tests turn it on (tests/conftest.py)
    monkeypatch.setenv("VMC_HOME", str(tmp_path / "vmc-home"))

    def refuse(self: Harness, kinds: list[str]) -> None:
        raise RuntimeError(f"unit tests must not bring targets up (asked for {kinds})")

    monkeypatch.setattr(Harness, "start", refuse)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.path / "Vagrantfile").write_text('Vagrant.configure("2") do |config|\nend\n')
    (pytester.path / "Dockerfile").write_text("FROM scratch\n")
    return pytester


def collected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "::" in line]


def header(result: pytest.RunResult) -> str:
    lines = [line for line in result.outlines if line.startswith("vmcontainer:")]
    assert len(lines) == 1, result.outlines
    return lines[0]


# --- test ids ------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "ids"), [
    ((), ["[vm]", "[container]"]),
    (("--target=both",), ["[vm]", "[container]"]),
    (("--target=vm",), ["[vm]"]),
    (("--target", "container"), ["[container]"]),
])
def test_target_tests_get_one_id_per_selected_target(project: pytest.Pytester,
                                                     args: tuple[str, ...],
                                                     ids: list[str]) -> None:
    project.makepyfile(test_ids=TARGET_TEST)
    result = project.runpytest("--collect-only", "-q", *args)
    assert result.ret == pytest.ExitCode.OK
    assert sorted(collected(result)) == sorted(
        [f"test_ids.py::test_x{i}" for i in ids] + [f"test_ids.py::test_h{i}" for i in ids]
        + ["test_ids.py::test_plain"])


def test_parity_and_other_parameters_combine_with_the_target(project: pytest.Pytester) -> None:
    project.makepyfile(test_params="""
        import pytest

        @pytest.mark.parametrize("path", ["/etc/a", "/etc/b"])
        def test_p(parity, path):
            pass
    """)
    result = project.runpytest("--collect-only", "-q", "--target=vm")
    assert collected(result) == ["test_params.py::test_p[vm-/etc/a]",
                                 "test_params.py::test_p[vm-/etc/b]"]


# --- invalid values are usage errors -------------------------------------------------------

def test_bogus_target_on_the_command_line(project: pytest.Pytester) -> None:
    project.makepyfile(test_ids=TARGET_TEST)
    result = project.runpytest("--target=bogus")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--target (from command line): invalid value 'bogus'; "
                                 "allowed: both, vm, container*"])


def test_bogus_target_in_the_environment(project: pytest.Pytester,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    project.makepyfile(test_ids=TARGET_TEST)
    monkeypatch.setenv("VMC_TARGET", "bogus")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--target (from env VMC_TARGET): invalid value 'bogus'; "
                                 "allowed: both, vm, container*"])


@pytest.mark.parametrize("ini_file", ["pytest.ini", "tox.ini"])
def test_bogus_target_in_the_ini_file(project: pytest.Pytester, ini_file: str) -> None:
    project.makepyfile(test_ids=TARGET_TEST)
    (project.path / ini_file).write_text("[pytest]\nvmc_target = bogus\n")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--target (from ini vmc_target): invalid value 'bogus'; "
                                 "allowed: both, vm, container*"])


def test_missing_vagrantfile_is_a_usage_error_naming_the_path(project: pytest.Pytester) -> None:
    project.makepyfile(test_ids=TARGET_TEST)
    missing = project.path / "nowhere" / "Vagrantfile"
    result = project.runpytest(f"--vagrantfile={missing}", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--vagrantfile (from command line): {missing} does not exist*"])


def test_missing_vagrantfile_is_fine_for_the_container_only(project: pytest.Pytester) -> None:
    project.makepyfile(test_ids=TARGET_TEST)
    (project.path / "Vagrantfile").unlink()
    result = project.runpytest("--target=container", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert "test_ids.py::test_x[container]" in collected(result)
    assert project.runpytest("--collect-only").ret == pytest.ExitCode.USAGE_ERROR


def test_missing_dockerfile_is_fine_for_the_vm_only(project: pytest.Pytester) -> None:
    project.makepyfile(test_ids=TARGET_TEST)
    (project.path / "Dockerfile").unlink()
    assert project.runpytest("--target=vm", "--collect-only").ret == pytest.ExitCode.OK
    result = project.runpytest("--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--dockerfile (from default): {project.path / 'Dockerfile'} "
                                 "does not exist*"])


def test_empty_vagrantfile_setting_is_a_usage_error(project: pytest.Pytester,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    project.makepyfile(test_ids=TARGET_TEST)
    monkeypatch.setenv("VMC_VAGRANTFILE", "")
    result = project.runpytest("--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--vagrantfile (from env VMC_VAGRANTFILE)*"])


# --- precedence, end to end ----------------------------------------------------------------

def test_header_shows_each_value_and_its_source(project: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    project.makepyfile(test_ids=TARGET_TEST)
    project.makeini("[pytest]\nvmc_target = vm\nvmc_ports = 80 8080\n")
    monkeypatch.setenv("VMC_TARGET", "container")
    monkeypatch.setenv("VMC_KEEP", "on-failure")

    line = header(project.runpytest("--collect-only", "--target=both"))
    assert "target=both (command line)" in line
    assert "vmc-keep=on-failure (env VMC_KEEP)" in line
    assert "vmc-ports=80,8080 (ini vmc_ports)" in line
    assert f"vagrantfile={project.path / 'Vagrantfile'} (default)" in line
    assert "vmc-reuse=False (default)" in line
    assert "vmc-reuse=True (command line)" in header(
        project.runpytest("--collect-only", "--vmc-reuse"))

    assert "target=container (env VMC_TARGET)" in header(project.runpytest("--collect-only"))
    monkeypatch.delenv("VMC_TARGET")
    result = project.runpytest("--collect-only", "-q")
    assert collected(result) == ["test_ids.py::test_x[vm]", "test_ids.py::test_h[vm]",
                                 "test_ids.py::test_plain"]
    assert "target=vm (ini vmc_target)" in header(project.runpytest("--collect-only"))


def test_ini_paths_are_relative_to_the_ini_file(project: pytest.Pytester) -> None:
    project.mkdir("sub")
    project.makepyfile(**{"sub/test_ids": TARGET_TEST})
    (project.path / "Vagrantfile").rename(project.path / "vm.rb")
    project.makeini("[pytest]\nvmc_vagrantfile = vm.rb\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project.path / "sub")
        result = project.runpytest("--collect-only", ".")
    assert result.ret == pytest.ExitCode.OK, result.errlines
    assert f"vagrantfile={project.path / 'vm.rb'} (ini vmc_vagrantfile)" in header(result)


# --- skipping and laziness -----------------------------------------------------------------

@pytest.mark.parametrize(("selected", "fixture"), [("container", "vm"), ("vm", "container")])
def test_unselected_target_fixture_is_skipped(project: pytest.Pytester, selected: str,
                                              fixture: str) -> None:
    project.makepyfile(test_skip=f"def test_needs_it({fixture}):\n    raise AssertionError\n")
    result = project.runpytest(f"--target={selected}", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*the {fixture} target is not selected "
                                 f"(--target={selected})*"])


def test_plain_tests_never_start_the_harness(project: pytest.Pytester) -> None:
    project.makeconftest(STATE_PROBE)
    project.makepyfile(test_plain="def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    result = project.runpytest()
    result.assert_outcomes(passed=2)
    assert "PROBE harness=None needed=[]" in result.outlines
    assert not any("vmcontainer" in line and "===" in line for line in result.outlines)


def test_needed_targets_are_only_those_the_selected_tests_use(project: pytest.Pytester) -> None:
    project.makeconftest(STATE_PROBE)
    project.makepyfile(test_mixed="""
        def test_on_both(target):
            raise AssertionError("deselected")

        def test_on_the_container(container):
            raise AssertionError("deselected")

        def test_plain():
            pass
    """)
    result = project.runpytest("-k", "plain")
    result.assert_outcomes(passed=1, deselected=3)
    assert "PROBE harness=None needed=[]" in result.outlines
    result = project.runpytest("--collect-only", "-k", "container")
    assert "PROBE harness=None needed=['container']" in result.outlines


# --- marker and options --------------------------------------------------------------------

def test_expect_diff_marker_is_registered(project: pytest.Pytester) -> None:
    project.runpytest("--markers").stdout.fnmatch_lines(["@pytest.mark.expect_diff(reason)*"])
    project.makepyfile(test_marked="""
        import pytest

        @pytest.mark.expect_diff(reason="init differs")
        def test_a():
            pass
    """)
    project.runpytest("--strict-markers").assert_outcomes(passed=1)


def test_help_lists_the_option_group(project: pytest.Pytester) -> None:
    result = project.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*VM and container targets (pytest-vmcontainer)*"])
    for flag in ("--target=VALUE", "--vagrantfile=VALUE", "--dockerfile=VALUE",
                 "--vmc-keep=VALUE", "--vmc-reuse "):
        result.stdout.fnmatch_lines([f"  {flag}*"])
    result.stdout.fnmatch_lines(["*Env VMC_TARGET, ini vmc_target*"])


# --- parity through the fixture (targets replaced by a stand-in) ---------------------------

FAKE_TARGET = """
import pytest

class StandIn:
    def __init__(self, kind):
        self.kind = kind

@pytest.fixture(scope="session")
def target(request):
    return StandIn(request.param)
"""


def test_parity_fixture_compares_across_targets(project: pytest.Pytester) -> None:
    project.makeconftest(FAKE_TARGET)
    project.makepyfile(test_par="""
        import pytest

        def test_same(parity, target):
            parity.check("value", 1)

        def test_differs(parity, target):
            parity.check("value", target.kind)

        @pytest.mark.expect_diff(reason="by design")
        def test_expected(parity, target):
            parity.check("value", target.kind)
    """)
    result = project.runpytest()
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*test_differs[[]container[]]*",
                                 "E * value differs between targets: container='container', "
                                 "vm='vm'"])


def test_parity_keeps_other_parameters_apart(project: pytest.Pytester) -> None:
    project.makeconftest(FAKE_TARGET)
    project.makepyfile(test_par="""
        import pytest

        @pytest.mark.parametrize("path", ["a", "b"])
        def test_p(parity, target, path):
            parity.check("name", path)  # the same on both targets
    """)
    project.runpytest().assert_outcomes(passed=4)


# --- parity rows ---------------------------------------------------------------------------

def test_parity_rows_drop_only_the_target(project: pytest.Pytester) -> None:
    """Rows of the matrix: one per test and other parameters, shared by the two targets."""
    project.makeconftest(FAKE_TARGET + """

import pytest
from pytest_vmcontainer.runstate import parity_row

@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    for item in items:
        print("ROW", parity_row(item))
""")
    project.makepyfile(test_rows="""
        import pytest

        @pytest.mark.parametrize("path", ["/etc/a-b"])
        def test_p(target, path):
            pass

        def test_plain():
            pass
    """)
    result = project.runpytest("-s", "--collect-only", "-q")
    result.stdout.fnmatch_lines([
        "ROW ('test_rows.py::test_p[[]path=/etc/a-b[]]', 'vm')",
        "ROW ('test_rows.py::test_p[[]path=/etc/a-b[]]', 'container')",
        "ROW None",
    ])


# --- harness errors inside tests -----------------------------------------------------------

def test_harness_error_in_a_test_shows_cause_remedy_and_log_tail(project: pytest.Pytester) -> None:
    project.makepyfile(test_export="""
from pytest_vmcontainer.errors import TargetError

def test_export():
    raise TargetError("vagrant package failed", "see /x.log", detail="LOG-TAIL-LINE")
""")
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*vagrant package failed: see /x.log*",
                                 "*--- last lines of the log ---*", "*LOG-TAIL-LINE*"])
    assert "raise TargetError" not in result.stdout.str()  # no traceback into the raiser
    assert "During handling" not in result.stdout.str()


def test_failure_names_the_target_it_happened_on() -> None:
    from pytest_vmcontainer.errors import TargetError
    from pytest_vmcontainer.runstate import fail_for

    with pytest.raises(pytest.fail.Exception) as failure:
        fail_for("vm", TargetError("cause", "remedy", detail="tail"))
    assert str(failure.value) == "vm target: cause: remedy\n--- last lines of the vm log ---\ntail"
