"""A disk that fills up while the harness writes a base or a VM cache entry: one line naming
the disk, what was written and what to do; nothing half-written is kept, and what was there
before stays (issue 20, faults 3a and 3b): the Docker base, the box (its build and its import
into Vagrant) and a VM cache entry.

The full disk is real: a 32 MiB tmpfs mounted where the harness writes, filled by the real
debootstrap of a base build and by a real ``qemu-img convert`` of a disk image twice that
size. (The up-front check of ``host/space.py`` looks at ``VMC_HOME``'s own disk, which has
room: this is the fault that check cannot foresee, another job filling the disk meanwhile.)
A saved VM's full disk is in ``test_vm_cache``, on a real ``virsh save``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.errors import BuildError, TargetError
from pytest_vmcontainer.host import bases as boxes
from pytest_vmcontainer.host import paths
from pytest_vmcontainer.host.bases import DOCKER_BASE_IMAGE
from pytest_vmcontainer.targets import entrywrite, vmcache
from tests.integration.conftest import RUN_HOME, error_line, run_cli

SMALL = "32m"


@contextmanager
def small_disk(directory: Path) -> Iterator[Path]:
    """``directory`` on a 32 MiB disk of its own while in the block (root mounts it)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small disk needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL}", "vmc-test-small-disk",
                    str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


FILLED_UP = (r"the disk under {path} filled up while writing {what} \(\d+\.\d MiB free now"
             r"{needed}; nothing half-written was kept\): free some space there \(python -m "
             r"pytest_vmcontainer clean --caches removes the VM cache\), or set VMC_HOME to a "
             r"directory on a larger disk")


def _build_on_a_full_disk(target: str, kind: str) -> None:
    """``build --rebuild`` of ``target``'s base with the builds on a 32 MiB disk: one line
    that names it, and no work directory left."""
    with small_disk(paths.builds_dir()) as builds:
        done = run_cli("build", f"--target={target}", "--rebuild", timeout=600)
        left = list(builds.iterdir())
    assert done.returncode != 0, done.stdout
    line = error_line(done.stderr)
    assert re.fullmatch("pytest-vmcontainer: error: " + FILLED_UP.format(
        path=re.escape(str(builds)), what=rf"a base \({kind}\)", needed=""), line), line
    assert [path.name for path in left if path.name.startswith("work-")] == [], left


def test_a_base_build_that_fills_the_disk_is_one_line_and_keeps_the_old_base(
        own_home: Path, docker_client: Any, docker_base: None) -> None:
    base_before = docker_client.images.get(DOCKER_BASE_IMAGE).id
    _build_on_a_full_disk("container", "docker-base")
    assert docker_client.images.get(DOCKER_BASE_IMAGE).id == base_before  # still the base


def test_a_cache_entry_that_fills_the_disk_is_one_line_and_leaves_nothing(
        own_home: Path, tmp_path: Path) -> None:
    raw = tmp_path / "data.raw"
    raw.write_bytes(os.urandom(64 * 2**20))  # does not compress: the copy needs all of it
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(disk)], check=True)

    with small_disk(vmcache.cache_dir()) as cache, pytest.raises(TargetError) as failed, \
            entrywrite.Writer("0123456789abcdef", None, tmp_path / "vm.log") as writer:
        try:
            writer.add_disk(disk)
        finally:
            left = list(cache.iterdir())

    line = failed.value.one_line()
    assert re.fullmatch(FILLED_UP.format(path=re.escape(str(cache)), what="a VM cache entry",
                                         needed=r", about 6\d\.\d MiB needed"), line), line
    assert left == []  # the partial entry went
    assert vmcache.entries() == []
    assert "No space left on device" in (tmp_path / "vm.log").read_text()  # qemu-img's words


def test_a_box_build_that_fills_the_disk_is_one_line(own_home: Path) -> None:
    """The box's debootstrap goes through the same work directory as the Docker base's."""
    _build_on_a_full_disk("vm", "box")
    assert not boxes.PROJECT_BOX.current()


def test_a_box_import_that_fills_the_disk_is_one_line_and_leaves_no_half_box(
        bases: None, own_home: Path, tmp_path: Path) -> None:
    """A real ``vagrant box add`` of the real box file, through the harness's import, into a
    ``VAGRANT_HOME`` on a 32 MiB disk. Vagrant copies the box with curl first, which says
    only "Failure writing output to destination": the harness reads the disk's free space."""
    box_file = boxes.PROJECT_BOX.box_file()  # in this test's home: the run's built box
    shutil.copyfile(RUN_HOME / box_file.relative_to(own_home), box_file)
    with small_disk(paths.vagrant_home()) as home, pytest.raises(BuildError) as failed:
        try:
            boxes.add_box(boxes.PROJECT_BOX, tmp_path / "box.log")
        finally:
            left = sorted(str(path.relative_to(home)) for path in home.rglob("*")
                          if path.is_file())
            used = shutil.disk_usage(home).used
    line = failed.value.one_line()
    size = r"\d+\.\d MiB"
    assert re.fullmatch(FILLED_UP.format(
        path=re.escape(str(home)), what=re.escape(f"the box {boxes.PROJECT_BOX.name} into "
                                                  "Vagrant"),
        needed=rf", about {size} needed"), line), line
    assert [name for name in left if "boxes/" in name or name.startswith("tmp/")] == [], left
    assert "Failure writing output to destination" in (tmp_path / "box.log").read_text()
    assert used < 2**20, left  # its partial copy went
