"""libvirtd or virtlogd that stops or restarts under a VM's start is named, and only then (the
logic of ``libvirt.daemon_went_away`` and ``failures.libvirt_daemon_gone``; the real restarts
are in ``tests/integration/test_faults.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_vmcontainer.errors import Cancelled, EngineStopped, PortInUse, TargetError
from pytest_vmcontainer.host import libvirt
from pytest_vmcontainer.targets.vagrant import domain
from pytest_vmcontainer.targets.vagrant.failures import libvirt_daemon_gone


@pytest.fixture
def pid_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    files = {daemon: tmp_path / f"{daemon}.pid" for daemon in ("libvirtd", "virtlogd")}
    for path in files.values():
        path.write_text("123\n")
        os.utime(path, (1_700_000_000, 1_700_000_000))
    monkeypatch.setattr(libvirt, "PID_FILES", files)
    monkeypatch.setattr(libvirt, "DAEMON_GONE_WAIT", 0.3)
    monkeypatch.delenv(libvirt.LIBVIRT_URI_ENV, raising=False)
    return files


@pytest.fixture
def pid_file(pid_files: dict[str, Path]) -> Path:
    return pid_files["libvirtd"]


def test_a_libvirtd_that_kept_running_is_not_blamed(pid_file: Path) -> None:
    before = libvirt.daemons_started()
    assert before["libvirtd"] == "2023-11-14T22:13:20+00:00"
    assert libvirt.daemon_went_away(before, "error: some other failure") is None
    # a lost connection alone is not a restart: the pid file has to go or change
    assert libvirt.daemon_went_away(before, "End of file while reading data") is None


def test_a_restarted_libvirtd_is_named_with_its_start(pid_file: Path) -> None:
    before = libvirt.daemons_started()
    os.utime(pid_file, (1_700_000_100, 1_700_000_100))
    assert libvirt.daemon_went_away(before, "") == (
        "libvirtd", "started again at 2023-11-14T22:15:00 UTC")


def test_a_stopped_libvirtd_is_named(pid_file: Path) -> None:
    before = libvirt.daemons_started()
    pid_file.unlink()
    assert libvirt.daemon_went_away(before, "Failed to connect socket") == (
        "libvirtd", "not running now")


def test_a_restarted_virtlogd_is_named_only_for_a_failure_that_names_it(
        pid_files: dict[str, Path]) -> None:
    """virtlogd serves only the starts' logs: a failure that does not name it is not its."""
    before = libvirt.daemons_started()
    os.utime(pid_files["virtlogd"], (1_700_000_100, 1_700_000_100))
    assert libvirt.daemon_went_away(before, "provisioning failed") is None
    assert libvirt.daemon_went_away(
        before, "error: can't connect to virtlogd: Cannot recv data: Connection reset by peer"
    ) == ("virtlogd", "started again at 2023-11-14T22:15:00 UTC")


def test_a_virtlogd_that_drops_the_call_is_waited_for(pid_files: dict[str, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The start fails before virtlogd exits: the pid file goes a moment later."""
    before = libvirt.daemons_started()
    monkeypatch.setattr(libvirt, "wait_for", lambda condition, **_: pid_files["virtlogd"].unlink())
    assert libvirt.daemon_went_away(before, "can't connect to virtlogd: Cannot recv data") == (
        "virtlogd", "not running now")


def test_a_libvirt_on_another_machine_is_not_watched(pid_file: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(libvirt.LIBVIRT_URI_ENV, "qemu+ssh://root@127.0.0.1:2222/system")
    assert libvirt.daemons_started() == {}
    assert libvirt.daemon_went_away({}, "End of file while reading data") is None


def _vm(before: dict[str, str | None]) -> Any:
    return SimpleNamespace(libvirt_daemons_before=before)


def test_the_error_names_libvirtd_the_step_and_what_it_said(pid_file: Path) -> None:
    vm = _vm(libvirt.daemons_started())
    pid_file.unlink()
    error = TargetError("virsh define failed: error: failed to connect\n  to the hypervisor",
                        "see the log", detail="the log's tail")
    gone = libvirt_daemon_gone(vm, "the start of vmc-x-default", error)
    assert isinstance(gone, EngineStopped)
    assert gone.one_line() == (
        "libvirtd stopped during the start of vmc-x-default (libvirtd not running now; the "
        "step said: virsh define failed: error: failed to connect to the hypervisor): run "
        "again once libvirtd answers (python -m pytest_vmcontainer setup starts it); check "
        "what stopped it")
    assert gone.detail == "the log's tail"


@pytest.mark.parametrize("error", [
    EngineStopped("libvirtd stopped during x", "run again"),  # named once, not twice
    PortInUse(port=2222),
    Cancelled("teardown stopped the start"),
])
def test_what_is_named_already_or_an_interrupt_stays_as_it_is(pid_file: Path,
                                                              error: Any) -> None:
    vm = _vm(libvirt.daemons_started())
    pid_file.unlink()
    assert libvirt_daemon_gone(vm, "the start", error) is None


def test_a_removal_that_libvirtd_cannot_take_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a quiet no-op: teardown then keeps the session for the next run's sweep."""
    monkeypatch.setattr(libvirt, "answers", lambda: False)
    monkeypatch.setattr(domain, "LIBVIRTD_BACK_WAIT", 0.2)
    with pytest.raises(TargetError) as failed:
        domain.remove_libvirt_leftovers("vmc-abc-")
    assert failed.value.one_line() == (
        "libvirtd did not answer within 0s, so the domain and volumes named vmc-abc-* could "
        "not be removed: start libvirtd (python -m pytest_vmcontainer setup); the next run's "
        "sweep removes them")
