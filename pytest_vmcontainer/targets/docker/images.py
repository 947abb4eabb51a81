"""The container target's images: the app image built from the user's Dockerfile (named by
the content of its inputs), the base it builds FROM, and the sweep of images whose project is
gone."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker.errors
import requests.exceptions

from pytest_vmcontainer.errors import BuildError, WaitTimeout
from pytest_vmcontainer.host import bases, engine, paths
from pytest_vmcontainer.runtime import hashing
from pytest_vmcontainer.runtime.waiting import wait_for
from pytest_vmcontainer.targets.base import OWNER, OWNER_LABEL, TargetSpec
from pytest_vmcontainer.targets.docker.client import listed_images, local_dockerd_started

if TYPE_CHECKING:
    from pytest_vmcontainer.targets.docker import DockerTarget

APP_REPOSITORY = "pytest-vmcontainer/app"
ENGINE_GONE_WAIT = 10.0  # seconds a killed build step waits to see whether dockerd is stopping
OTHER_BUILD_TIMEOUT = 3600.0  # seconds a build waits for another run's build of its image
DOCKERFILE_LABEL = "pytest-vmcontainer.dockerfile"


def image_tag(spec: TargetSpec) -> str:
    """Name the app image by its Dockerfile's path and the content of its inputs.

    The path is part of the name because the image is labelled with it: two
    projects with identical files would otherwise take the tag from each other
    and leave dangling images behind.
    """
    dockerfile = spec.dockerfile
    inputs = [dockerfile, *spec.provision_inputs]
    if (dockerfile.parent / ".dockerignore").exists():
        inputs.append(dockerfile.parent / ".dockerignore")
    return f"{APP_REPOSITORY}:{hashing.content_hash(inputs, extra=[str(dockerfile)])[:16]}"


def final_base(dockerfile: Path) -> str | None:
    """The image the Dockerfile's last stage builds FROM (through stage aliases), if any."""
    aliases: dict[str, str] = {}
    base = None
    for source, alias in bases.dockerfile_froms(dockerfile):
        base = aliases.get(source.lower(), source)
        if alias is not None:
            aliases[alias.lower()] = base
    return None if base in (None, "scratch") else base


def remove_orphaned_images(client: Any) -> list[str]:
    """App images built from a Dockerfile that no longer exists (a deleted project). Not on an
    engine over SSH: other runners' projects build there, from paths this host does not have."""
    removed: list[str] = []
    if engine.current().over_ssh:
        return removed
    for image in listed_images(client, {"label": f"{OWNER_LABEL}={OWNER}"}):
        dockerfile = image.labels.get(DOCKERFILE_LABEL)
        if dockerfile and not Path(dockerfile).exists():
            try:
                client.images.remove(image.id, force=False)
                removed.append(f"image {', '.join(image.tags) or image.id[7:19]}")
            except docker.errors.APIError:
                pass  # a container (kept or reused) still uses it
    return removed


def build(target: DockerTarget) -> str:
    """Build the app image from the Dockerfile (docker's layer cache makes repeats cheap).

    Once more when an image the build took cached layers from was removed under it
    ("No such image": another run's cleanup, or ``docker image prune``)."""
    try:
        return _build_once(target)
    except (docker.errors.ImageNotFound, BuildError) as error:
        if "no such image" not in str(error).lower():
            raise
        target.progress.say("container: an image the build reused was removed meanwhile "
                          "(another run's cleanup?); building again")
        return _build_once(target)

def _build_once(target: DockerTarget) -> str:
    dockerfile = target.spec.dockerfile
    tag = image_tag(target.spec)
    started = time.monotonic()
    engine_before = local_dockerd_started()
    with _one_build_per_image(target, tag), \
            target.progress.step(f"container: docker build {dockerfile}") as note, \
            open(target.log_path, "a") as log:
        stream = target.client.api.build(
            path=str(dockerfile.parent), dockerfile=dockerfile.name, tag=tag, rm=True,
            forcerm=True, decode=True,
            labels={OWNER_LABEL: OWNER, DOCKERFILE_LABEL: str(dockerfile)})
        try:
            for chunk in stream:
                target.check_cancelled()  # leaving the stream closes it: dockerd stops the build
                text = chunk.get("stream", "")
                log.write(text)
                if text.startswith("Step "):
                    note(text.strip())
                elif text.strip():
                    target.progress.detail(text)
                if "error" in chunk:
                    log.write(chunk["error"] + "\n")
                    log.flush()
                    raise _build_failure(target, chunk["error"], engine_before, broke=False)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            log.write(f"the build's stream broke: {error}\n")
            log.flush()
            raise _build_failure(target, str(error), engine_before, broke=True) from None
    target.build_seconds = time.monotonic() - started
    _drop_superseded_images(target, tag)
    target.image = tag
    return tag


def _one_build_per_image(target: DockerTarget, tag: str) -> AbstractContextManager[None]:
    """Runs that build one image at once (CI jobs on one machine, a colleague's run) would
    each make their own and move the tag between them, leaving the image another run's
    container was started from untagged: a dangling image that no later step of that run
    removes. So a build waits for the other's, then finds every layer cached: the same
    image under the same tag. The lock is the machine's; an engine over SSH is not."""
    deadline = time.monotonic() + OTHER_BUILD_TIMEOUT
    said = False

    def waiting() -> None:
        nonlocal said
        if not said:
            target.progress.say(f"container: another run is building {tag}; waiting for it")
            said = True
        if time.monotonic() > deadline:
            raise BuildError(f"another run has been building {tag} for "
                             f"{OTHER_BUILD_TIMEOUT:.0f}s", "let that run end or stop it, "
                             "then run again")
        target.cancelled.wait(0.5)  # a teardown's cancel ends the wait at once
        target.check_cancelled()

    return paths.machine_lock(f"build-{tag.rsplit(':', 1)[-1]}", waiting)


def _engine_went_away(error: str, before: str | None, broke: bool) -> bool:
    """Whether the local dockerd stopped or restarted since the build began. A step killed by
    a stopping engine fails (exit 137) while dockerd still runs: that error, or a stream that
    broke, waits a few seconds for its pid file to go or change."""
    if before is None:
        return False
    if local_dockerd_started() != before:
        return True
    if not broke and "returned a non-zero code: 137" not in error:
        return False
    try:
        wait_for(lambda: local_dockerd_started() != before, timeout=ENGINE_GONE_WAIT,
                 what="dockerd to stop", interval=0.2)
    except WaitTimeout:
        return False  # killed for another reason (out of memory, say)
    return True


def _build_failure(target: DockerTarget, error: str, engine_before: str | None,
                   broke: bool) -> BuildError:
    """Why the build failed: the engine that stopped or restarted under it (not the
    Dockerfile's fault), a FROM image that cannot be pulled, or a step of the Dockerfile."""
    dockerfile = target.spec.dockerfile
    if _engine_went_away(error, engine_before, broke):
        started = local_dockerd_started()
        now = f"started again at {started[:19]} UTC" if started else "not running now"
        return BuildError(
            f"the Docker engine stopped during the build of {dockerfile} (dockerd {now}; "
            f"the build said: {error.strip()})",
            "run again once dockerd answers (python -m pytest_vmcontainer setup starts it); "
            "check what stopped it", detail=target.log_tail())
    unavailable = _unavailable_base(dockerfile, error)
    if unavailable is not None:
        return BuildError(*unavailable, detail=target.log_tail())
    return BuildError(f"provisioning failed in the container: {error.strip()}",
                      f"fix the step in {dockerfile} or the script it runs (log "
                      f"{target.log_path})", detail=target.log_tail())


def _unavailable_base(dockerfile: Path, error: str) -> tuple[str, str] | None:
    """(cause, remedy) when the build failed because a FROM image cannot be pulled."""
    pull_failed = any(marker in error for marker in (
        "pull access denied", "manifest unknown", "failed to resolve", "dial tcp",
        "no such host", "Temporary failure in name resolution", "connection refused",
        "i/o timeout", "TLS handshake timeout"))
    if not pull_failed:
        return None
    missing = [b for b in bases.dockerfile_bases(dockerfile) if b in error]
    names = missing or bases.dockerfile_bases(dockerfile)[:1] or ["its FROM image"]
    return bases.unavailable_base(names[0], "image")

def _drop_superseded_images(target: DockerTarget, current: str) -> None:
    """Older app images of the same Dockerfile are stale: remove those no container uses."""
    stale = listed_images(target.client,
                          {"label": f"{DOCKERFILE_LABEL}={target.spec.dockerfile}"})
    for image in stale:
        if current in image.tags:
            continue
        try:
            target.client.images.remove(image.id, noprune=False)
        except docker.errors.APIError:
            pass  # still used by a container (a kept or reused target)
