"""libvirtd that stops or restarts under a VM's start is named, and only then (the logic of
``libvirt.libvirtd_went_away`` and ``failures.libvirtd_gone``; the real restarts are in
``tests/integration/test_faults.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_vmcontainer.errors import Cancelled, EngineStopped, PortInUse, TargetError
from pytest_vmcontainer.host import libvirt
from pytest_vmcontainer.targets.vagrant import domain
from pytest_vmcontainer.targets.vagrant.failures import libvirtd_gone


@pytest.fixture
def pid_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "libvirtd.pid"
    path.write_text("123\n")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    monkeypatch.setattr(libvirt, "LIBVIRTD_PID_FILE", path)
    monkeypatch.setattr(libvirt, "DAEMON_GONE_WAIT", 0.3)
    monkeypatch.delenv(libvirt.LIBVIRT_URI_ENV, raising=False)
    return path


def test_a_libvirtd_that_kept_running_is_not_blamed(pid_file: Path) -> None:
    before = libvirt.libvirtd_started()
    assert before == "2023-11-14T22:13:20+00:00"
    assert libvirt.libvirtd_went_away(before, "error: some other failure") is None
    # a lost connection alone is not a restart: the pid file has to go or change
    assert libvirt.libvirtd_went_away(before, "End of file while reading data") is None


def test_a_restarted_libvirtd_is_named_with_its_start(pid_file: Path) -> None:
    before = libvirt.libvirtd_started()
    os.utime(pid_file, (1_700_000_100, 1_700_000_100))
    assert libvirt.libvirtd_went_away(before, "") == "started again at 2023-11-14T22:15:00 UTC"


def test_a_stopped_libvirtd_is_named(pid_file: Path) -> None:
    before = libvirt.libvirtd_started()
    pid_file.unlink()
    assert libvirt.libvirtd_went_away(before, "Failed to connect socket") == "not running now"


def test_a_libvirt_on_another_machine_is_not_watched(pid_file: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(libvirt.LIBVIRT_URI_ENV, "qemu+ssh://root@127.0.0.1:2222/system")
    assert libvirt.libvirtd_started() is None
    assert libvirt.libvirtd_went_away(None, "End of file while reading data") is None


def _vm(before: str | None) -> Any:
    return SimpleNamespace(libvirtd_before=before)


def test_the_error_names_libvirtd_the_step_and_what_it_said(pid_file: Path) -> None:
    vm = _vm(libvirt.libvirtd_started())
    pid_file.unlink()
    error = TargetError("virsh define failed: error: failed to connect\n  to the hypervisor",
                        "see the log", detail="the log's tail")
    gone = libvirtd_gone(vm, "the start of vmc-x-default", error)
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
    vm = _vm(libvirt.libvirtd_started())
    pid_file.unlink()
    assert libvirtd_gone(vm, "the start", error) is None


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
