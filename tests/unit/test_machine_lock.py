"""The machine's locks (``paths.machine_lock``): one holder at a time, and no lock file left
behind once nobody holds it (one per image build piled up in /run/lock)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pytest_vmcontainer.host import paths


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(paths, "machine_lock_dir", lambda: tmp_path)
    return tmp_path


def test_the_lock_file_goes_with_its_holder(lock_dir: Path) -> None:
    with paths.machine_lock("build-x"):
        assert [p.name for p in lock_dir.iterdir()] == ["pytest-vmcontainer-build-x.lock"]
    assert list(lock_dir.iterdir()) == []


@pytest.mark.parametrize("polling", [False, True])
def test_one_holder_at_a_time_while_holders_remove_the_file(lock_dir: Path,
                                                            polling: bool) -> None:
    """Each holder removes the file as it lets go; a waiter that got the lock of a removed
    file must not hold it beside one that took the new file."""
    inside, most, errors = 0, 0, []
    count = threading.Lock()

    def holder() -> None:
        nonlocal inside, most
        try:
            for _ in range(25):
                with paths.machine_lock("shared", (lambda: None) if polling else None):
                    with count:
                        inside += 1
                        most = max(most, inside)
                    time.sleep(0.002)  # others open the file and wait on it meanwhile
                    with count:
                        inside -= 1
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=holder) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and most == 1
    assert list(lock_dir.iterdir()) == []


def test_a_waiter_that_gives_up_leaves_the_holders_file(lock_dir: Path) -> None:
    class GaveUp(Exception):
        pass

    def give_up() -> None:
        raise GaveUp

    with paths.machine_lock("held"):
        with pytest.raises(GaveUp), paths.machine_lock("held", give_up):
            pass  # never reached
        assert (lock_dir / "pytest-vmcontainer-held.lock").exists()
    assert list(lock_dir.iterdir()) == []
