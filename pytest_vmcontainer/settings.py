"""The run's settings as one typed object, built once from what ``options`` resolved.

``options`` decides each value (command line > environment > ini > default) as data;
``RunSettings`` holds them with their types, and hands each layer its part: the
harness its ``HarnessConfig``, the comparison its ``MeasureSettings``. Where each
value came from stays alongside, for the report header and error messages.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vmcontainer import options
from pytest_vmcontainer.harness import HarnessConfig

if TYPE_CHECKING:
    from pytest_vmcontainer.comparison.probes.context import MeasureSettings

PREFIX = "vmc_"  # a setting's name is its attribute with this prefix (vmc_scan: .scan)
ENGINE_SETTINGS = ("vmc_docker_host", "vmc_docker_ssh", "vmc_libvirt_uri")  # the engines


def attribute(name: str) -> str:
    """The ``RunSettings`` attribute of the setting ``name``."""
    return name.removeprefix(PREFIX)


@dataclass(frozen=True)
class RunSettings:
    """One attribute per setting of ``options.SETTINGS`` (the unit tests check both ways)."""

    target: str  # a key of options.TARGETS
    vagrantfile: Path
    dockerfile: Path
    provision_inputs: tuple[Path, ...]
    keep: str  # one of options.KEEP
    reuse: bool
    ports: tuple[int, ...]
    ready_path: tuple[int | None, str] | None  # (port or None, path); None: TCP only
    boot_timeout: float
    ready_timeout: float
    vm_cache: bool
    vm_cache_size: int  # bytes
    vm_restore: bool
    rebuild_bases: bool
    rounds: int
    warmup: int
    boot_rounds: int
    density_vms: int
    density_containers: int
    http_requests: int
    http_seconds: float
    report: Path | None
    scan: str  # one of options.SCAN
    scan_paths: tuple[str, ...]
    scan_expect: tuple[str, ...]
    docker_host: str  # "": the engine docker finds by itself
    docker_ssh: str  # "": none (an engine over TLS needs one, for its ports)
    libvirt_uri: str
    host_setup: bool
    # setting name -> "command line", "env VMC_X", "ini vmc_x" or "default"; for display only
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_resolved(cls, resolved: Mapping[str, options.Resolved]) -> RunSettings:
        """The typed settings of a run, from ``options.resolve``'s values and sources."""
        values = {attribute(name): item.value for name, item in resolved.items()}
        return cls(**values, sources={name: item.source for name, item in resolved.items()})

    @property
    def kinds(self) -> tuple[str, ...]:
        """The target kinds ``target`` selects."""
        return options.TARGETS[self.target]

    def where(self, name: str) -> str:
        """The setting's flag and source, for messages: ``--vmc-report (from env VMC_REPORT)``."""
        return f"{options.BY_NAME[name].flag} (from {self.sources.get(name, 'default')})"

    def by_name(self) -> dict[str, object]:
        """Every value under its setting's name, for display (the reports' settings): an
        engine's URL without a password written into it."""
        from pytest_vmcontainer.host.engine import shown

        values = {setting.name: getattr(self, attribute(setting.name))
                  for setting in options.SETTINGS}
        for name in ENGINE_SETTINGS:
            values[name] = shown(str(values[name]))
        return values

    def export_engines(self, environ: MutableMapping[str, str]) -> None:
        """The engines' settings given in the ini file or on the command line, into the
        environment: the docker SDK and CLI, virsh and Vagrant (and the runs they start) read
        them there, as they do when the user sets them there."""
        for name in ENGINE_SETTINGS:
            if self.sources.get(name, "default").startswith(("command line", "ini")):
                environ[options.BY_NAME[name].env] = str(getattr(self, attribute(name)))

    def harness_config(self) -> HarnessConfig:
        """What the harness needs: the targets' files, ports, timeouts, keeping and caches."""
        ready = self.ready_path
        return HarnessConfig(
            vagrantfile=self.vagrantfile, dockerfile=self.dockerfile,
            provision_inputs=self.provision_inputs, guest_ports=self.ports,
            ready_port=ready[0] if ready else None, ready_path=ready[1] if ready else None,
            boot_timeout=self.boot_timeout, ready_timeout=self.ready_timeout,
            rebuild_bases=self.rebuild_bases, keep=self.keep, reuse=self.reuse,
            vm_cache=self.vm_cache, vm_cache_bytes=self.vm_cache_size,
            vm_restore=self.vm_restore, setup_host=self.host_setup)

    def measure_settings(self) -> MeasureSettings:
        """What the comparison's probes need: rounds, boots, density and HTTP load."""
        from pytest_vmcontainer.comparison.probes.context import MeasureSettings

        return MeasureSettings(
            rounds=self.rounds, warmup=self.warmup, boot_rounds=self.boot_rounds,
            density_vms=self.density_vms, density_containers=self.density_containers,
            http_requests=self.http_requests, http_seconds=self.http_seconds)


def attributes() -> set[str]:
    """The setting attributes of ``RunSettings`` (not its ``sources``)."""
    return {item.name for item in fields(RunSettings)} - {"sources"}
