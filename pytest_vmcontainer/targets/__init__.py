"""Targets: the ``Target`` interface (``base``) and one module per backend.

``make`` picks the backend of a kind from ``BACKENDS``; the plugin lets a
``pytest_vmcontainer_make_target`` hook answer first (say, Podman for
``container`` or a VirtualBox provider for ``vm``). Backend modules are imported
only when a target of their kind is made, so loading the plugin imports neither
the docker SDK nor python-vagrant.
"""

from __future__ import annotations

import importlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_vmcontainer.targets import capabilities

if TYPE_CHECKING:
    from pytest_vmcontainer.runtime.progress import Progress
    from pytest_vmcontainer.targets.base import Leftovers, Target, TargetSpec

KINDS = ("vm", "container")

# kind -> "module:class" of the default backend.
BACKENDS: dict[str, str] = {
    "vm": "pytest_vmcontainer.targets.vagrant:VagrantTarget",
    "container": "pytest_vmcontainer.targets.docker:DockerTarget",
}


def backend(kind: str) -> type[Target]:
    """The default backend class of ``kind`` (imports its module)."""
    module, _, name = BACKENDS[kind].partition(":")
    cls: type[Target] = getattr(importlib.import_module(module), name)
    return cls


def host_needs(kinds: Iterable[str]) -> set[str]:
    """What host setup must provide for the default backends of ``kinds`` (their
    ``host_needs``; imports their modules)."""
    return {need for kind in kinds for need in backend(kind).host_needs}


def make(kind: str, spec: TargetSpec, progress: Progress) -> Target:
    """A target of ``kind`` from its default backend."""
    return backend(kind)(spec, progress)


def attach(workdir: Path, needed_by: str = "reaching a saved target from another process",
           also: tuple[str, ...] = ()) -> Target:
    """The target whose state a run saved in ``workdir`` (see ``Target.save_state``); a
    one-line ``UsageError`` naming the backend and what it lacks unless it can attach and
    provides ``also`` (checked before it is attached to)."""
    from pytest_vmcontainer.targets.base import Target, TargetSpec

    state = json.loads((workdir / Target.STATE_FILE).read_text())
    module, _, name = state["backend"].partition(":")
    cls: type[Target] = getattr(importlib.import_module(module), name)
    spec = TargetSpec(session_id=state["session"], workdir=workdir,
                      vagrantfile=Path(state["vagrantfile"]), dockerfile=Path(state["dockerfile"]))
    return capabilities.as_attaching(cls, needed_by, also).attach(spec, state)


def default_leftovers() -> list[Leftovers]:
    """The leftovers of every default backend (for ``clean`` and leak checks)."""
    found = (backend(kind).leftovers() for kind in KINDS)
    return [leftovers for leftovers in found if leftovers is not None]


def cache_usage() -> tuple[int, int]:
    """(entries, bytes on disk) of the backends' own caches."""
    if shutil.which("virsh") is None:
        return 0, 0
    from pytest_vmcontainer.targets import vmcache

    found = vmcache.entries()
    return len(found), sum(vmcache.disk_bytes(entry) for entry in found)


def cache_contents() -> tuple[list[dict[str, Any]], int, Path]:
    """What the backends' own caches hold, for ``list``: the VM cache's entries
    (``vmcache.listing``), and how many merged Vagrant configs are kept, and where."""
    from pytest_vmcontainer.targets import vmcache
    from pytest_vmcontainer.targets.vagrant import configcache

    return vmcache.listing(), configcache.count(), configcache.directory()


def clean_caches(live_runs: int = 0) -> list[str]:
    """Remove the backends' own caches (the provisioned-VM cache) that nothing uses; on
    libvirt on another machine, this home's pool there too, unless ``live_runs`` of this
    home may use it."""
    if shutil.which("virsh") is None:
        return []
    from pytest_vmcontainer.host import libvirthost
    from pytest_vmcontainer.targets import vmcache
    from pytest_vmcontainer.targets.vagrant import configcache, domain

    removed = vmcache.remove_all() + configcache.forget_all()
    remote = libvirthost.current()
    if remote is not None and live_runs:  # they may boot from the copies of boxes here
        removed += domain.remove_copies_of_gone_boxes(remote)
    elif remote is not None:  # a runner retired, or a clean start: nothing of it stays there
        removed += domain.remove_pool_there(remote)
    return removed
