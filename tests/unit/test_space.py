"""The free-space check: needs on one disk add up; the error names disk, free and need."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vmcontainer.errors import HostSetupError
from pytest_vmcontainer.host import space

GIB = 2**30


def test_needs_that_fit_pass_and_those_on_one_disk_add_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(space, "free_bytes", lambda path: 2 * GIB)
    space.require([space.Need(tmp_path, GIB, "a"), space.Need(tmp_path / "not-yet", GIB, "b")])
    with pytest.raises(HostSetupError) as error:
        space.require([space.Need(tmp_path, GIB, "the box build"),
                       space.Need(tmp_path / "sub", GIB + 1, "a saved VM")])
    assert error.value.one_line() == (
        f"not enough free disk space: {tmp_path} has 2.0 GiB free, this run needs about 2.0 GiB "
        "there (the box build 1.0 GiB, a saved VM 1.0 GiB): free some space on that disk "
        "(python -m pytest_vmcontainer clean --caches removes the VM cache), or set VMC_HOME "
        "to a directory on a larger disk")


def test_the_real_disk_is_asked(tmp_path: Path) -> None:
    assert space.free_bytes(tmp_path / "missing" / "deeper") == space.free_bytes(tmp_path) > 0
    with pytest.raises(HostSetupError, match="not enough free disk space"):
        space.require([space.Need(tmp_path, 2**62, "an impossible write")])


def test_sizes_read_as_people_write_them() -> None:
    assert [space.human_bytes(n) for n in (0, 1536, 3 * 2**20, 3 * GIB // 2)] == [
        "0 B", "1.5 KiB", "3.0 MiB", "1.5 GiB"]
