"""The scans of the bases both targets start from, so their own differences are told apart.

The box is scanned when it is built (its root filesystem, chrooted: ``host.bases``);
the Docker base is scanned on first use, in a container of its own with no network,
and cached by image id. Both scans are files only (no processes, no sockets). When
the targets do not start from these bases, or a scan is missing, the report says
"bases not scanned" with the reason instead of guessing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pytest_vmcontainer.host import bases as images
from pytest_vmcontainer.scan.collect import command, parse
from pytest_vmcontainer.scan.compare import Bases
from pytest_vmcontainer.scan.model import Scan
from pytest_vmcontainer.targets.base import OWNER, OWNER_LABEL


def box_name(vagrantfile: Path) -> str | None:
    """The ``config.vm.box`` a Vagrantfile names (the first one), without running Ruby."""
    match = re.search(r"""\.vm\.box\s*=\s*["']([^"']+)["']""", vagrantfile.read_text())
    return match.group(1) if match else None


def _read(path: Path) -> Scan | None:
    try:
        return parse(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return None


def box_scan(vagrantfile: Path) -> tuple[Scan | None, str]:
    name = box_name(vagrantfile)
    box = images.LOCAL_BOXES.get(name or "")
    if box is None:
        return None, f"the Vagrantfile's box {name or '(none found)'} is not one built here"
    scan = _read(images.base_scan_path(box.kind, box.recipe_hash()))
    if scan is None:
        return None, (f"the box {box.name} was built without a scan (rebuild it with "
                      "'python -m pytest_vmcontainer build --rebuild')")
    return scan, ""


def docker_base_scan(dockerfile: Path, client: Any = None) -> tuple[Scan | None, str]:
    found = images.dockerfile_bases(dockerfile)
    if not found or found[-1] != images.DOCKER_BASE_IMAGE:
        return None, f"the Dockerfile does not build FROM {images.DOCKER_BASE_IMAGE}"
    from pytest_vmcontainer.targets.docker.client import connect

    docker = client or connect()
    try:
        image = docker.images.get(images.DOCKER_BASE_IMAGE)
    except Exception as error:  # not built, or the engine is gone
        return None, f"the Docker base cannot be read ({error})"
    path = images.base_scan_path("docker-base", image.id.split(":")[-1][:16])
    scan = _read(path)
    if scan is None:
        output = docker.containers.run(
            image.id, ["/bin/sh", "-c", command(static=True)], remove=True,
            network_mode="none", labels={OWNER_LABEL: OWNER})
        partial = path.with_suffix(".partial")
        partial.write_bytes(output)
        partial.replace(path)
        scan = _read(path)
    return (scan, "") if scan is not None else (None, "the Docker base's scan failed")


def scan_bases(vagrantfile: Path, dockerfile: Path) -> Bases:
    """Both bases' scans, or ``missing`` saying why not."""
    vm, why_vm = box_scan(vagrantfile)
    try:
        container, why_container = docker_base_scan(dockerfile)
    except Exception as error:  # the scan goes on without the bases
        container, why_container = None, f"the Docker base's scan failed ({error})"
    why = "; ".join(reason for reason in (why_vm, why_container) if reason)
    return Bases(vm, container, f"bases not scanned: {why}" if why else "")
