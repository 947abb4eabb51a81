"""Whole pytest runs with both kinds answered by the test process itself (testinfra's
``local://``): the shipped comparison suite's interleaved rounds, and a team's own
benchmarks shown side by side. No engine is needed; the commands really run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_vmcontainer.comparison import probes
from tests.unit import standin

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]

# The stand-in for both kinds; "vm" reports itself as KVM so no TCG rule interferes.
BOTH_LOCAL = standin.conftest(vm_mode="kvm")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> pytest.Pytester:
    return standin.project(pytester, monkeypatch, tmp_path / "vmc-home", BOTH_LOCAL)


def test_the_performance_rounds_are_measured_once_for_both_targets(
        project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    hash_script = probes.cpu_script
    monkeypatch.setattr(probes, "cpu_script", lambda mib: hash_script(1))  # quick rounds
    suite = (ROOT / "suites" / "test_comparison.py").read_text()
    project.makepyfile(test_comparison=suite)
    reports, benchmarks = project.path / "report", project.path / "benchmarks.json"
    result = project.runpytest("-k", "performance", "-p", "no:cacheprovider", "--target=both",
                               "--vmc-rounds=3", "--vmc-warmup=0", "--vmc-no-host-setup",
                               f"--vmc-report={reports}", f"--benchmark-json={benchmarks}")
    result.assert_outcomes(passed=2)
    saved = json.loads((reports / "comparison.json").read_text())
    performance = next(row for row in saved["rows"] if row["id"] == "performance")
    figures = performance["figures"]
    assert figures["host"]["round_order"] == "host, container, vm"
    assert len(figures["vm"]["rounds_s"]) == len(figures["container"]["rounds_s"]) == 3
    assert performance["verdict"]["evidence"]["VM/container"]["n"] == 3
    assert "95% CI" in performance["verdict"]["reason"]  # whichever way these rounds went
    # Only the first test timed anything; the second reused its rounds.
    timed = [b["name"] for b in json.loads(benchmarks.read_text())["benchmarks"]]
    assert timed == ["test_performance[vm]"]
    assert "Benchmark fixture was not used" not in result.stdout.str()


USER_BENCHMARKS = """
import time

import pytest


def test_latency(target, benchmark):
    # Slower on the "vm" on purpose, so that the side-by-side ratio has a side to name. A
    # sleep bounds the vm's rounds from below: with CPU work on both sides (4x on the vm),
    # a busy host once slowed the container's rounds as much and the verdict was undecided.
    pause = 0.01 if target.kind == "vm" else 0.0
    benchmark.pedantic(lambda: time.sleep(pause) if pause else sum(range(100)), rounds=30)


@pytest.mark.parametrize("size", [1, 2])
def test_sizes(target, benchmark, size):
    benchmark(lambda: sum(range(200 * size)))


def test_not_a_benchmark(target):
    assert target.kind in ("vm", "container")
"""


def test_a_teams_benchmarks_are_shown_vm_against_container(project: pytest.Pytester) -> None:
    project.makepyfile(test_mine=USER_BENCHMARKS)
    reports = project.path / "report"
    result = project.runpytest("-p", "no:cacheprovider", "--target=both", "--vmc-no-host-setup",
                               f"--vmc-report={reports}", "--benchmark-min-rounds=5",
                               "--benchmark-max-time=0.05")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines([
        "*vmcontainer: your benchmarks, VM against container*",
        "benchmark*VM (median)*container (median)*VM/container (median ratio)*verdict",
        "test_mine.py::test_latency*(n=30) ?KVM?*(n=30)*x (95% CI *x-*x, n=30)*"
        "the VM is more than 10% slower",
        "test_mine.py::test_sizes?size=1?*95% CI*",
        "test_mine.py::test_sizes?size=2?*95% CI*",
    ])
    assert "test_not_a_benchmark" not in result.stdout.str().split("your benchmarks")[1]
    assert "VM vs container, measured on this host" not in result.stdout.str()  # no table rows
    saved = json.loads((reports / "comparison.json").read_text())
    assert saved["rows"] == [] and saved["vm_mode"] == "kvm"
    names = [b["name"] for b in saved["user_benchmarks"]]
    assert names == ["test_mine.py::test_latency", "test_mine.py::test_sizes[size=1]",
                     "test_mine.py::test_sizes[size=2]"]
    latency = saved["user_benchmarks"][0]
    assert latency["ratio"]["low"] > 1.1 and latency["figures"]["container"]["rounds"] == 30
    assert "Your benchmarks, VM against container" in (reports / "comparison.md").read_text()
    assert 'id="user-benchmarks"' in (reports / "comparison.html").read_text()


def test_the_interleaved_rounds_leave_out_a_target_no_selected_test_needs(
        project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    hash_script = probes.cpu_script
    monkeypatch.setattr(probes, "cpu_script", lambda mib: hash_script(1))
    project.makepyfile(test_comparison=(ROOT / "suites" / "test_comparison.py").read_text())
    reports = project.path / "report"
    result = project.runpytest("-k", "performance and container", "-p", "no:cacheprovider",
                               "--target=both", "--vmc-no-host-setup", f"--vmc-report={reports}")
    result.assert_outcomes(passed=1)
    ups = [line.split(" pid=")[0] for line in (project.path / "events.log").read_text().splitlines()
           if line.startswith("up ")]
    assert ups == ["up container"]  # no VM was brought up
    saved = json.loads((reports / "comparison.json").read_text())
    performance = next(row for row in saved["rows"] if row["id"] == "performance")
    assert performance["figures"]["host"]["round_order"] == "host, container"
