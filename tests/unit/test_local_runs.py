"""Whole pytest runs with both kinds answered by the test process itself (testinfra's
``local://``): the shipped comparison suite's interleaved rounds, and a team's own
benchmarks shown side by side. No engine is needed; the commands really run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pytest_vmcontainer.comparison import probes
from tests.unit.test_hooks import LOCAL_BACKEND

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]

# The same stand-in for both kinds; "vm" reports itself as KVM so no TCG rule interferes.
BOTH_LOCAL = LOCAL_BACKEND.replace(
    'class LocalTarget(Target):\n    kind = "container"\n',
    'class LocalTarget(Target):\n    kind = "container"\n\n'
    '    def __init__(self, spec, progress, kind="container"):\n'
    '        self.kind = kind\n'
    '        super().__init__(spec, progress)\n').replace(
    '        return "local"\n',
    '        return "kvm" if self.kind == "vm" else "local"\n').replace(
    '    return LocalTarget(spec, progress) if kind == "container" else None\n',
    '    return LocalTarget(spec, progress, kind)\n').replace(
    "    return len(polls) >= 2", "    return True")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> pytest.Pytester:
    for name in list(os.environ):
        if name.startswith("VMC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VMC_HOME", str(tmp_path / "vmc-home"))
    (pytester.path / "Vagrantfile").write_text('Vagrant.configure("2") do |config|\nend\n')
    (pytester.path / "Dockerfile").write_text("FROM scratch\n")
    pytester.makeconftest(BOTH_LOCAL)
    return pytester


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
