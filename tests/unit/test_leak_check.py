"""The leak check's rule for what another test process leaves for moments
(tests/integration/conftest.py): only another home's kept targets, never this home's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vmcontainer.host import paths
from tests.integration.conftest import Snapshot, _of_other_homes_only, other_live_runs

HOLDER = """
import fcntl, os, sys
lock = open(sys.argv[1], "w")
fcntl.flock(lock, fcntl.LOCK_EX)
if sys.argv[2] == "removing":
    os.unlink(sys.argv[1])  # as Session.close's rmtree does before it lets the lock go
print("held", flush=True)
sys.stdin.read()
"""


def _after(containers: set[tuple[str, str]], sessions: set[str]) -> Snapshot:
    return Snapshot(containers=frozenset(containers), volumes=frozenset(),
                    dangling_images=frozenset(), libvirt=frozenset(),
                    sessions=frozenset(sessions))


def test_another_homes_kept_container_may_settle() -> None:
    after = _after({("c1", "a1b2c3d4")}, sessions={"0badcafe"})
    assert _of_other_homes_only({"containers": {"c1"}}, after)
    assert _of_other_homes_only({"libvirt domains/volumes": {"vmc-a1b2c3d4-default"}}, after)


def test_this_homes_leak_or_one_of_no_session_does_not() -> None:
    ours = _after({("c1", "0badcafe")}, sessions={"0badcafe"})
    assert not _of_other_homes_only({"containers": {"c1"}}, ours)
    assert not _of_other_homes_only(
        {"containers": {"c1"}, "libvirt domains/volumes": {"vmc-0badcafe-default"}},
        _after({("c1", "a1b2c3d4")}, sessions={"0badcafe"}))
    assert not _of_other_homes_only({"containers": {"c1"}}, _after({("c1", "")}, set()))
    assert not _of_other_homes_only({"session dirs": {"a1b2c3d4"}},
                                    _after(set(), {"a1b2c3d4"}))


@pytest.mark.parametrize("state", ["live", "removing"])
def test_a_run_that_holds_its_lock_is_live_even_while_removing_its_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: str) -> None:
    """The run's directory outlives its lock file for a moment while it is removed: that
    is another live run's, not a leak (CI once reported such a directory as leaked)."""
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path))
    session = paths.sessions_dir() / "0badcafe"
    session.mkdir()
    (session / "meta.json").write_text("{}")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(session / "lock"), state],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert "0badcafe" in other_live_runs()
    finally:
        holder.communicate("", timeout=30)
    assert "0badcafe" not in other_live_runs()
