"""What every probe is given (the run's instances, the settings, a timer, a memo) and what
it returns, and the one way a probe runs a command on a target."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pytest_vmcontainer.comparison.results import Figures
from pytest_vmcontainer.errors import ProbeError, UsageError
from pytest_vmcontainer.runtime.timing import Timer
from pytest_vmcontainer.targets.base import Export, Target

Measured = tuple[Figures, Figures | None]  # (target figures, host figures)


class Instances(Protocol):
    """What the comparison needs of the harness: the targets, their exports, more instances."""

    def get(self, kind: str) -> Target:
        """The run's target of ``kind``, brought up if it is not yet (raises its VmcError)."""

    def export(self, kind: str, timer: Timer | None = None) -> Export:
        """The provisioned target of ``kind``, exported once per run."""

    def extra(self, kind: str, label: str, **overrides: Any) -> Target:
        """A new, not yet started instance of ``kind`` made from its export; ``overrides``
        are ``TargetSpec`` fields for this instance only (``volumes``, ``disk_cache``,
        ``ready_path``)."""

    def primed(self, kind: str) -> bool:
        """Whether a new instance from this run's export of ``kind`` starts as later ones
        will (else the first one is not timed): one was already started from it, or the
        export is the disk the target itself booted from."""

    def discard(self, target: Target) -> None:
        """Destroy an instance made by ``extra``."""

    def scratch_dir(self, name: str) -> Path:
        """A directory removed with the run (for the host's own measurements)."""


STORAGE_MIN_MIB = 256


@dataclass(frozen=True)
class MeasureSettings:
    rounds: int = 3
    warmup: int = 1
    boot_rounds: int = 2
    cpu_mib: int = 128
    storage_mib: int = 256  # the sequential working set; see STORAGE_MIN_MIB
    sync_writes: int = 256
    idle_seconds: float = 5.0
    http_requests: int = 2000
    http_seconds: float = 15.0
    http_concurrency: int = 4
    density_vms: int = 2
    density_containers: int = 10
    memory_budget_bytes: int | None = None  # default: 80% of the host's memory

    def __post_init__(self) -> None:
        if self.storage_mib < STORAGE_MIN_MIB:
            raise UsageError(f"a storage working set of {self.storage_mib} MiB is too small",
                             f"use at least {STORAGE_MIN_MIB} MiB, so that no disk, controller "
                             "or hypervisor cache holds the whole file")


@dataclass
class ProbeContext:
    instances: Instances
    settings: MeasureSettings
    timer: Timer
    kinds: tuple[str, ...] = ()  # the selected targets (a probe may measure them together)
    memo: dict[str, Any] = field(default_factory=dict)  # kept for the whole run
    # Figures a probe measured on targets other than the one it was called for.
    others: list[tuple[Target, Figures]] = field(default_factory=list)


def median(values: list[float]) -> float:
    """The median, as a float."""
    return float(statistics.median(values))


def run_checked(target: Target, script: str) -> str:
    result = target.run(script)
    if result.rc != 0:
        raise ProbeError(f"on the {target.kind}, {script!r} exited {result.rc}: "
                         f"{' '.join(result.stderr.split())[-300:]}",
                         "install what the command needs in the target's provisioning "
                         "(the probes use coreutils, procps and iproute2)")
    return result.stdout

