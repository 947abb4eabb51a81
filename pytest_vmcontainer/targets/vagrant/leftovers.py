"""What VM sessions leave on the host: libvirt domains and volumes, and boxes from exports."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from pytest_vmcontainer.host import paths
from pytest_vmcontainer.targets import vmcache
from pytest_vmcontainer.targets.base import Leftovers, resource_prefix
from pytest_vmcontainer.targets.vagrant.domain import libvirt_names, remove_libvirt_leftovers

_RESOURCE_NAME = re.compile(r"^vmc-([0-9a-z]+)-")


def _app_boxes(prefix: str) -> list[Path]:
    return sorted((paths.vagrant_home() / "boxes").glob(f"{prefix}*"))


def remove_app_boxes(prefix: str) -> list[str]:
    """Boxes a session added from its own exports (named ``vmc-<session>-...``)."""
    removed = []
    for box in _app_boxes(prefix):
        shutil.rmtree(box, ignore_errors=True)
        removed.append(f"box {box.name}")
    return removed


class LibvirtLeftovers(Leftovers):
    """Domains and volumes named ``vmc-<session>-...``, and boxes added from exports."""

    def by_session(self) -> dict[str, list[str]]:
        if shutil.which("virsh") is None:
            return {}  # libvirt is not installed: no VM of ours can exist
        found: dict[str, list[str]] = {}
        names = [f"libvirt {n}" for n in libvirt_names("vmc-")]
        names += [f"box {box.name}" for box in _app_boxes("vmc-")]
        for name in names:
            match = _RESOURCE_NAME.match(name.split(" ", 1)[1])
            if match:
                found.setdefault(match.group(1), []).append(name)
        return found

    def remove(self, session_id: str) -> list[str]:
        prefix = resource_prefix(session_id)
        removed = [f"libvirt {name}" for name in remove_libvirt_leftovers(prefix)]
        return removed + remove_app_boxes(prefix)

    def remove_orphans(self) -> list[str]:
        """Half-written VM cache entries of runs killed while writing them (SIGKILL leaves
        no teardown): never trusted, but gigabytes until the next cache write removed them."""
        return [f"vm cache partial {name}" for name in vmcache.remove_abandoned_partials()]
