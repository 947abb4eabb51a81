"""The shipped GitLab pipeline (examples/ci/gitlab-ci.yml), run by gitlab-ci-local's shell
executor on this machine: its container job alone (container lane), and the whole pipeline,
VM job, container job and the merge of their reports with --fail-on-diff (VM lane).

The pipeline runs in a temporary git repository holding the project's files and the pipeline
as ``.gitlab-ci.yml``, as a user's repository would. Two pipeline variables narrow it for a
test, as GitLab's would: SUITES to the parity suite (the comparison takes minutes on a TCG
VM) and VMC_HOME to this host's, whose bases and saved VM spare the jobs their build and
boot. ``--shell-isolation`` gives each job its own copy of the repository and hands the
artifacts of the jobs it ``needs`` to it, as a GitLab runner does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer import runreport
from pytest_vmcontainer.host import paths
from pytest_vmcontainer.runtime import procs
from tests import npmtools
from tests.integration.conftest import ROOT

# What the pipeline's jobs read: the package they install, the shipped files and suites.
PROJECT_FILES = ("pyproject.toml", "README.md", "pytest_vmcontainer", "Dockerfile",
                 "Vagrantfile", ".dockerignore", "fixtures", "suites")
PARITY_SUITE = "suites/test_parity.py"


def make_repository(directory: Path) -> Path:
    """A git repository of the project's files with the shipped pipeline as .gitlab-ci.yml
    (gitlab-ci-local copies tracked files only into each job's directory)."""
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, directory / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copyfile(source, directory / name)
    shutil.copyfile(ROOT / "examples" / "ci" / "gitlab-ci.yml", directory / ".gitlab-ci.yml")
    for command in (["init", "-q"], ["add", "-A"],
                    ["-c", "user.name=tests", "-c", "user.email=tests@localhost", "commit",
                     "-q", "-m", "the project, with the shipped pipeline"]):
        subprocess.run(["git", *command], cwd=directory, check=True, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    return directory


def run_pipeline(repository: Path, *jobs: str, timeout: float) -> tuple[int, str, float]:
    """gitlab-ci-local on ``repository`` (all jobs, or ``jobs``): exit status, output and
    seconds. A run past ``timeout`` is stopped, its job's pytest tearing down on SIGINT."""
    package = npmtools.package(*npmtools.GITLAB_CI_LOCAL)
    command = [npmtools.node(), str(package / "src" / "index.js"), "--shell-executor-no-image",
               "--shell-isolation", "--no-color", "--variable", f"SUITES={PARITY_SUITE}",
               "--variable", f"VMC_HOME={paths.home()}", *jobs]
    started = time.monotonic()
    process = procs.spawn(command, cwd=repository, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        procs.stop(process)
        pytest.fail(f"gitlab-ci-local did not finish within {timeout:.0f}s", pytrace=False)
    finally:
        procs.wait(process)
    return process.returncode, output.decode(errors="replace"), time.monotonic() - started


def artifact(repository: Path, job: str, path: str) -> Path:
    """A file that ``job`` exported as an artifact (gitlab-ci-local keeps them per job)."""
    return repository / ".gitlab-ci-local" / "artifacts" / job / path


def shipped_inputs_hash() -> str:
    return runreport.inputs_hash(ROOT / "Vagrantfile", ROOT / "Dockerfile", [ROOT / "fixtures"])


def check_suites_job(repository: Path, target: str) -> dict[str, Any]:
    """The suites job's artifacts: its report of the shipped files' inputs, with the parity
    suite's values for its target, and its JUnit XML with a passing case per test."""
    report: dict[str, Any] = json.loads(artifact(repository, f"suites-{target}",
                                                 f"report-{target}/comparison.json").read_text())
    assert report["targets"] == [target] and report["inputs_hash"] == shipped_inputs_hash()
    rows = report["parity"]["rows"]
    assert len(rows) >= 12 and all(target in seen for row in rows
                                   for seen in row["values"].values())
    junit = ElementTree.parse(artifact(repository, f"suites-{target}", f"junit-{target}.xml"))
    cases = junit.getroot().findall(".//testcase")
    assert cases and not junit.getroot().findall(".//failure")
    assert all(f"[{target}" in case.get("name", "") for case in cases)
    return report


def test_the_pipelines_container_job_runs_under_gitlab_ci_local(
        tmp_path: Path, docker_base: None, leak_check: None) -> None:
    repository = make_repository(tmp_path)
    status, output, seconds = run_pipeline(repository, "suites-container", timeout=900)
    assert status == 0 and "PASS  suites-container" in output, output[-4000:]
    print(f"\n[tests] gitlab-ci-local, job suites-container: {seconds:.0f}s")
    check_suites_job(repository, "container")


@pytest.mark.vm
@pytest.mark.slow
def test_the_whole_pipeline_merges_a_vm_run_and_a_container_run(
        tmp_path: Path, shipped_vm: None, leak_check: None) -> None:
    repository = make_repository(tmp_path)
    status, output, seconds = run_pipeline(repository, timeout=1800)
    assert status == 0, output[-4000:]
    for job in ("suites-vm", "suites-container", "merge"):
        assert f"PASS  {job}" in output, output[-4000:]
    print(f"\n[tests] gitlab-ci-local, the whole pipeline: {seconds:.0f}s")
    reports = {target: check_suites_job(repository, target) for target in ("vm", "container")}
    merged = json.loads(artifact(repository, "merge", "merged/comparison.json").read_text())
    assert sorted(merged["targets"]) == ["container", "vm"]
    assert merged["inputs_hash"] == shipped_inputs_hash()
    # Every check has both targets' values, as each job recorded them.
    for row in merged["parity"]["rows"]:
        for check, seen in row["values"].items():
            for target, report in reports.items():
                assert seen[target] == _value(report, row["test"], check, target)


def _value(report: dict[str, Any], test: str, check: str, target: str) -> Any:
    return next(row["values"][check][target] for row in report["parity"]["rows"]
                if row["test"] == test)
