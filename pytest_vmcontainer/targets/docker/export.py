"""The container target as its tools move it: ``docker save`` of the app image, and the layers
above its base (all a host that has the base needs)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import docker.errors

from pytest_vmcontainer.errors import BuildError
from pytest_vmcontainer.runtime.timing import Timer, time_once
from pytest_vmcontainer.targets.base import Export
from pytest_vmcontainer.targets.docker.images import final_base

if TYPE_CHECKING:
    from pytest_vmcontainer.targets.docker import DockerTarget


def copy_layers(saved: Path, out: Path, skip: int) -> int:
    """Write ``out``: the config and the layers of ``saved`` (a docker save tar) after its
    first ``skip`` layers, with a manifest naming them; returns how many layers it holds.

    Works on both save formats (legacy ``<id>/layer.tar`` and OCI ``blobs/sha256/...``):
    manifest.json lists the layers in the image's order in both.
    """
    with tarfile.open(saved) as tar, tarfile.open(out, "w") as delta:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        entry = manifest[0]
        kept = entry["Layers"][skip:]
        for name in [entry["Config"], *kept]:
            data = tar.extractfile(name)  # a link to a layer stored once resolves to it
            if data is None:
                raise BuildError(f"docker save wrote {name} as something other than a file",
                                 "report this with the output of 'docker version'")
            info = tarfile.TarInfo(name)
            info.size = data.seek(0, io.SEEK_END)
            data.seek(0)
            delta.addfile(info, data)
        text = json.dumps([{**entry, "Layers": kept}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(text)
        delta.addfile(info, io.BytesIO(text))
    return len(kept)


def export(target: DockerTarget, directory: Path, timer: Timer | None = None) -> Export:
    """``docker save`` of the app image into a tar; only the save is timed."""
    path = directory / "app-image.tar"

    def save() -> None:
        with target.progress.step(f"container: docker save -> {path.name}"), \
                open(path, "wb") as out:
            for chunk in target.client.images.get(target.image).save(named=True):
                out.write(chunk)

    seconds = time_once(save, timer)
    delta, what = _app_layers(target, path, directory / "app-layers.tar")
    return Export(path, path.stat().st_size, seconds, "docker save (tar)", delta, what)

def _app_layers(target: DockerTarget, saved: Path, out: Path) -> tuple[Path, str]:
    """What a host that already has the Dockerfile's base image needs: the layers above
    the base's (when the base is not found locally, every layer)."""
    layers = list(target.client.images.get(target.image).attrs["RootFS"]["Layers"])
    reference = final_base(target.spec.dockerfile)
    below: list[str] = []
    if reference is not None:
        try:
            below = list(target.client.images.get(reference).attrs["RootFS"]["Layers"])
        except docker.errors.APIError:  # ImageNotFound included: e.g. an ARG in FROM
            below = []
    shared = len(below) if layers[:len(below)] == below else 0
    kept = copy_layers(saved, out, shared)
    base = (f"not in the base image {reference}" if shared else
            f"every layer: the base {reference or '(none)'} is not found locally")
    return out, f"{kept} of {len(layers)} layers and the image config, {base}"
