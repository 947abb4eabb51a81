"""The boxes built here: one table, one build mechanism."""

from __future__ import annotations

import os
from pathlib import Path

from pytest_vmcontainer.host import bases
from pytest_vmcontainer.runtime import hashing


def test_each_local_box_has_its_own_name_kind_and_recipe() -> None:
    boxes = list(bases.LOCAL_BOXES.values())
    assert boxes[0] == bases.PROJECT_BOX and boxes[0].name == bases.BOX_NAME
    for attribute in ("name", "kind", "directory"):
        assert len({getattr(box, attribute) for box in boxes}) == len(boxes), attribute
    for box in boxes:
        assert os.access(box.directory / "customize.sh", os.X_OK), box.name
        assert (box.directory / "Vagrantfile").is_file(), box.name
        assert box.boot in ("kernel", "bootloader")
        assert box.values()["SUITE"] == bases.recipe()["SUITE"]  # one suite for every base


def test_the_project_box_keeps_its_cache_key() -> None:
    """The generalization must not rebuild the box everyone shares: same files, same formula."""
    assert bases.box_recipe_hash() == hashing.content_hash(
        [bases.BASE_RECIPE, bases.BOX_RECIPE], extra=["box"])[:16]
    assert bases.PROJECT_BOX.values()["BOX_INCLUDE"] == bases.recipe()["BOX_INCLUDE"]
    assert bases.box_dir() == bases.PROJECT_BOX.box_dir()


def test_a_box_recipe_hash_follows_its_own_directory_only(tmp_path: Path) -> None:
    mine, other = tmp_path / "mine", tmp_path / "other"
    for directory in (mine, other):
        directory.mkdir()
        (directory / "customize.sh").write_text("true\n")
    box = bases.BoxRecipe("team/box", "box-team", mine, "kernel")
    first = box.recipe_hash()
    (other / "customize.sh").write_text("false\n")
    assert box.recipe_hash() == first
    (mine / "customize.sh").write_text("echo changed\n")
    assert box.recipe_hash() != first
    assert bases.BoxRecipe("team/box", "box-other", mine, "kernel").recipe_hash() != \
        box.recipe_hash()
