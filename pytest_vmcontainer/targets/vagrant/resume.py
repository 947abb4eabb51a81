"""A saved VM state resumed on a new copy-on-write overlay: how a restored VM starts, and how
a provisioned VM goes on after the save that caches its disk (``cachewrite``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vmcontainer.targets import domainxml
from pytest_vmcontainer.targets.vagrant.domain import saved_definition
from pytest_vmcontainer.targets.vagrant.environment import vagrant_home

if TYPE_CHECKING:
    from pytest_vmcontainer.targets.vagrant import VagrantTarget


def resume_on_overlay(vm: VagrantTarget, state: Path, base: Path, definition: str) -> Path:
    """Restore ``state`` as ``vm``'s domain on a new overlay of ``base`` (read-only from now
    on), with this VM's forwards on 127.0.0.1; ``definition`` is the persistent definition the
    domain keeps once restored. Returns the boxes directory the domain reads its kernel from."""
    domain = vm.domain
    overlay = domain.new_overlay(base, vm.cancelled)
    boxes = vagrant_home(vm.spec.workdir) / "boxes"
    running, defined = vm.spec.workdir / "restore.xml", vm.spec.workdir / "define.xml"
    running.write_text(domainxml.restore_xml(saved_definition(state), overlay, vm.forwards(),
                                             boxes))
    defined.write_text(domainxml.restore_xml(definition, overlay, vm.forwards(), boxes))
    domain.restore(state, running, defined)
    vm.memory_lazy = True  # until it boots (starts.booted_for_memory)
    return boxes
