"""The Docker backend's base: a Debian 12 image for Dockerfiles (``FROM
pytest-vmcontainer/debian:bookworm``), debootstrapped and imported, labelled with its
recipe's hash and rebuilt only when the recipe changes."""

from __future__ import annotations

import threading
import time
from typing import Any

from pytest_vmcontainer.host.basebuild import (
    BASE_RECIPE,
    BuildRecord,
    build_lock,
    debootstrap,
    log_path,
    recipe,
    run_logged,
    workdir,
)
from pytest_vmcontainer.runtime import hashing
from pytest_vmcontainer.runtime.progress import Progress

DOCKER_BASE_REPOSITORY = "pytest-vmcontainer/debian"
DOCKER_BASE_IMAGE = f"{DOCKER_BASE_REPOSITORY}:bookworm"
RECIPE_LABEL = "pytest-vmcontainer.recipe"


def docker_recipe_hash() -> str:
    return hashing.content_hash([BASE_RECIPE], extra=["docker"])[:16]


def _image_id(client: Any, name: str) -> str | None:
    import docker.errors

    try:
        return str(client.images.get(name).id)
    except docker.errors.ImageNotFound:
        return None


def _remove_image_if_unused(client: Any, image_id: str) -> None:
    import docker.errors

    try:
        client.images.remove(image_id)
    except docker.errors.APIError:
        pass  # an app image still builds on it: docker keeps it until that goes


def docker_base_current(client: Any) -> bool:
    import docker.errors

    try:
        image = client.images.get(DOCKER_BASE_IMAGE)
    except docker.errors.ImageNotFound:
        return False
    labels = image.attrs.get("Config", {}).get("Labels") or {}
    return bool(labels.get(RECIPE_LABEL) == docker_recipe_hash())


def ensure_docker_base(progress: Progress, client: Any, rebuild: bool = False,
                       cancel: threading.Event | None = None) -> str:
    """The Debian base image for Dockerfiles (``FROM pytest-vmcontainer/debian:bookworm``)."""
    with build_lock("docker-base"):
        if not rebuild and docker_base_current(client):
            return DOCKER_BASE_IMAGE
        with progress.step(f"building Docker base image {DOCKER_BASE_IMAGE}") as note, \
                workdir("docker-base") as work:
            started = time.monotonic()
            log = log_path("docker-base")
            rootfs = work / "rootfs"
            note(f"debootstrap {recipe()['SUITE']} (log {log})")
            debootstrap(rootfs, recipe()["DOCKER_INCLUDE"], log, cancel)
            note("docker import")
            tarball = work / "rootfs.tar"
            run_logged(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."],
                        log, "packing the root filesystem", "see the log", cancel)
            previous = _image_id(client, DOCKER_BASE_IMAGE)
            tag = DOCKER_BASE_IMAGE.rsplit(":", 1)[1]
            client.api.import_image_from_file(
                str(tarball), repository=DOCKER_BASE_REPOSITORY, tag=tag,
                changes=[f"LABEL {RECIPE_LABEL}={docker_recipe_hash()}", 'CMD ["/bin/bash"]'])
            if previous is not None and previous != _image_id(client, DOCKER_BASE_IMAGE):
                _remove_image_if_unused(client, previous)
            size = int(client.images.get(DOCKER_BASE_IMAGE).attrs["Size"])
            BuildRecord("docker-base", docker_recipe_hash(), DOCKER_BASE_IMAGE,
                        round(time.monotonic() - started, 1), size, time.time()).save()
        return DOCKER_BASE_IMAGE

