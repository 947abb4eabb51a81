"""The plugin's settings: each one a command-line option, an environment variable and an ini key.

Precedence is command line > environment > ini > default (as in pytest-django);
every resolved value remembers where it came from, for the report header.
This module knows nothing of pytest beyond the small ``Sources`` protocol, so
the resolution rules are unit-tested without a pytest run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pytest_vmcontainer.errors import SettingError

# --target values and the kinds each selects; --vmc-keep values (also used by the command line).
TARGETS = {"both": ("vm", "container"), "vm": ("vm",), "container": ("container",)}
KEEP = ("never", "on-failure", "always")
SCAN = ("off", "report", "fail")
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Setting:
    name: str  # the ini key and the argparse dest
    flag: str  # the command-line option
    env: str
    default: str
    help: str
    choices: tuple[str, ...] = ()
    # str | bool | path | optpath | paths | int | count | ports | float | readypath | words | lines
    kind: str = "str"
    flag_value: str | None = None  # a bool's flag takes no argument and stores this

    def parse(self, raw: str, source: str, base: Path) -> Any:
        where = f"{self.flag} (from {source})"
        value = raw.strip()
        if self.choices and value not in self.choices:
            raise SettingError(f"{where}: invalid value {value!r}",
                               f"allowed: {', '.join(self.choices)}")
        if self.kind == "bool":
            if value.lower() in TRUE:
                return True
            if value.lower() in FALSE:
                return False
            raise SettingError(f"{where}: {value!r} is not a boolean", "use 1/0, true/false")
        if self.kind == "optpath":
            return (base / value).resolve() if value else None
        if self.kind == "count":
            if not value.isdigit():
                raise SettingError(f"{where}: {value!r} is not a whole number (0 or more)",
                                   "give 0, 1, 2, ...")
            return int(value)
        if self.kind == "path":
            if not value:
                raise SettingError(f"{where}: empty path", "give a file path or unset it")
            return (base / value).resolve()
        if self.kind in ("int", "float"):
            try:
                number = int(value) if self.kind == "int" else float(value)
            except ValueError:
                raise SettingError(f"{where}: {value!r} is not a number",
                                   f"give a positive {self.kind}") from None
            if not (math.isfinite(number) and number > 0):
                raise SettingError(f"{where}: must be a positive number, got {value}",
                                   f"give a positive {self.kind}")
            return number
        if self.kind == "ports":
            try:
                ports = tuple(int(p) for p in value.replace(",", " ").split())
            except ValueError:
                raise SettingError(f"{where}: {value!r} is not a list of port numbers",
                                   "give port numbers separated by commas or spaces") from None
            if any(not 0 < p < 65536 for p in ports):
                raise SettingError(f"{where}: {value!r} needs ports between 1 and 65535",
                                   "give port numbers separated by commas or spaces")
            return ports
        if self.kind == "size":
            return parse_size(value, where)
        if self.kind == "readypath":
            return parse_ready_path(value, where)
        if self.kind == "paths":
            return tuple((base / p).resolve() for p in value.replace(",", " ").split())
        if self.kind == "words":  # not resolved: e.g. paths inside the targets
            return tuple(value.replace(",", " ").split())
        if self.kind == "lines":
            return tuple(line.strip() for line in raw.splitlines() if line.strip())
        return value


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


def parse_size(value: str, where: str) -> int:
    """Bytes from "20G", "512M", "1.5T" or a plain number of bytes (powers of 1024)."""
    match = _SIZE.fullmatch(value)
    if match is None:
        raise SettingError(f"{where}: {value!r} is not a size",
                           "give bytes or a number with K, M, G or T, e.g. 20G")
    unit = match.group(2).lower()
    return int(float(match.group(1)) * (1024 ** ("kmgt".index(unit) + 1) if unit else 1))


def parse_ready_path(value: str, where: str) -> tuple[int | None, str] | None:
    """"" or "none" -> None; "/health" -> (None, "/health"); "8080:/health" -> (8080, ...)."""
    if value.lower() in ("", "none"):
        return None
    port, sep, path = value.partition(":")
    if not sep:
        port, path = "", value
    if not path.startswith("/") or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise SettingError(f"{where}: {value!r} is not a path or PORT:PATH",
                           "give e.g. /health or 8080:/health, or none")
    return (int(port) if port else None, path)


SETTINGS = (
    Setting("vmc_target", "--target", "VMC_TARGET", "both",
            "which targets to run the tests on: both, vm or container", tuple(TARGETS)),
    Setting("vmc_vagrantfile", "--vagrantfile", "VMC_VAGRANTFILE", "Vagrantfile",
            "the Vagrantfile of the VM target (default: the one at the rootdir)", kind="path"),
    Setting("vmc_dockerfile", "--dockerfile", "VMC_DOCKERFILE", "Dockerfile",
            "the Dockerfile of the container target (default: the one at the rootdir)",
            kind="path"),
    Setting("vmc_provision_inputs", "--vmc-provision-inputs", "VMC_PROVISION_INPUTS", "fixtures",
            "files or directories the provisioning reads; they key image tags and reuse",
            kind="paths"),
    Setting("vmc_keep", "--vmc-keep", "VMC_KEEP", "never",
            "keep the targets after the run: never, on-failure or always", KEEP),
    Setting("vmc_reuse", "--vmc-reuse", "VMC_REUSE", "false",
            "keep targets between runs, reused while the Vagrantfile, the Dockerfile and the "
            "provisioning inputs are unchanged", kind="bool", flag_value="true"),
    Setting("vmc_ports", "--vmc-ports", "VMC_PORTS", "",
            "guest ports to forward to free ports on 127.0.0.1, on top of those the "
            "Dockerfile (EXPOSE) and the Vagrantfile (forwarded_port) declare", kind="ports"),
    Setting("vmc_ready_path", "--vmc-ready-path", "VMC_READY_PATH", "",
            "also wait for HTTP 200 at this path before tests run: PATH or PORT:PATH (e.g. "
            "8080:/health; without a port: 80, or the only forwarded port); empty or 'none': "
            "the forwarded ports only", kind="readypath"),
    Setting("vmc_boot_timeout", "--vmc-boot-timeout", "VMC_BOOT_TIMEOUT", "600",
            "seconds the VM may take to answer SSH", kind="float"),
    Setting("vmc_ready_timeout", "--vmc-ready-timeout", "VMC_READY_TIMEOUT", "120",
            "seconds a started target may take until its ports serve (and the ready path "
            "answers)", kind="float"),
    Setting("vmc_vm_cache", "--vmc-no-vm-cache", "VMC_VM_CACHE", "true",
            "start VMs from the provisioned-VM cache when their inputs are unchanged (and fill "
            "it after a provisioning run); the flag provisions from scratch and caches nothing",
            kind="bool", flag_value="false"),
    Setting("vmc_vm_cache_size", "--vmc-vm-cache-size", "VMC_VM_CACHE_SIZE", "20G",
            "disk space the provisioned-VM cache may hold (entries and their saved VMs, e.g. "
            "20G); beyond it, the least recently used entries go first", kind="size"),
    Setting("vmc_vm_restore", "--vmc-no-vm-restore", "VMC_VM_RESTORE", "true",
            "restore the run's VM from a saved running state of the VM cache entry (about a "
            "second) instead of booting it; the flag boots every VM. Measured starts always "
            "boot", kind="bool", flag_value="false"),
    Setting("vmc_rebuild_bases", "--vmc-rebuild-bases", "VMC_REBUILD_BASES", "false",
            "rebuild the Docker base image and the Vagrant box even if cached", kind="bool",
            flag_value="true"),
    Setting("vmc_rounds", "--vmc-rounds", "VMC_ROUNDS", "3",
            "timed rounds of the CPU and storage measurements", kind="int"),
    Setting("vmc_warmup", "--vmc-warmup", "VMC_WARMUP", "1",
            "untimed warm-up rounds before them", kind="count"),
    Setting("vmc_boot_rounds", "--vmc-boot-rounds", "VMC_BOOT_ROUNDS", "2",
            "timed cold and warm boots per target (after one untimed cold start)", kind="int"),
    Setting("vmc_density_vms", "--vmc-density-vms", "VMC_DENSITY_VMS", "2",
            "VMs started at once by the Density row", kind="int"),
    Setting("vmc_density_containers", "--vmc-density-containers", "VMC_DENSITY_CONTAINERS", "10",
            "containers started at once by the Density row", kind="int"),
    Setting("vmc_http_requests", "--vmc-http-requests", "VMC_HTTP_REQUESTS", "2000",
            "requests in the Networking row's bounded load", kind="int"),
    Setting("vmc_http_seconds", "--vmc-http-seconds", "VMC_HTTP_SECONDS", "15",
            "time cap of that load in seconds", kind="float"),
    Setting("vmc_report", "--vmc-report", "VMC_REPORT", "",
            "directory for the comparison report (JSON, Markdown, HTML)", kind="optpath"),
    Setting("vmc_scan", "--vmc-scan", "VMC_SCAN", "report",
            "the parity scan of both targets before the first test: off, report (show what "
            "differs) or fail (also a failing test item when something differs unexpectedly); "
            "it runs only when both targets do", SCAN),
    Setting("vmc_scan_paths", "--vmc-scan-paths", "VMC_SCAN_PATHS", "",
            "paths inside the targets that the scan lists besides /etc (e.g. /srv/app "
            "/usr/local/bin)", kind="words"),
    Setting("vmc_scan_expect", "--vmc-scan-expect", "VMC_SCAN_EXPECT", "",
            "differences the scan shows as expected: one 'CATEGORY GLOB reason' per line "
            "(categories: package, user, group, port, process, file, environment, limit, "
            "sysctl, system)", kind="lines"),
    Setting("vmc_docker_host", "--vmc-docker-host", "DOCKER_HOST", "",
            "the Docker engine of the container target, as docker's own DOCKER_HOST (empty: "
            "this host's; ssh://USER@HOST[:PORT]: that host's, its ports forwarded over SSH)"),
    Setting("vmc_docker_ssh", "--vmc-docker-ssh", "VMC_DOCKER_SSH", "",
            "for an engine over TCP with TLS (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH): an SSH login "
            "on its host, USER@HOST[:PORT], through which its containers' ports are forwarded"),
    Setting("vmc_libvirt_uri", "--vmc-libvirt-uri", "VMC_LIBVIRT_URI", "qemu:///system",
            "the libvirt of the VM target: this host's (qemu:///system; a VM on another "
            "machine is refused, not built yet)"),
    Setting("vmc_host_setup", "--vmc-no-host-setup", "VMC_HOST_SETUP", "true",
            "install and start missing Debian packages and daemons (as root); the flag turns "
            "this off", kind="bool", flag_value="false"),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}


class Sources(Protocol):
    """Where raw values come from; the plugin adapts pytest's config to this."""

    def cli(self, name: str) -> str | None: ...
    def ini(self, name: str) -> str | None: ...


@dataclass(frozen=True)
class Resolved:
    value: Any
    source: str  # "command line", "env VMC_X", "ini vmc_x", "default"
    raw: str


def resolve(sources: Sources, environ: Mapping[str, str], invocation_dir: Path,
            ini_dir: Path) -> dict[str, Resolved]:
    """Resolve every setting; raises SettingError on the first bad value."""
    resolved = {}
    for setting in SETTINGS:
        candidates: list[tuple[str | None, str, Path]] = [
            (sources.cli(setting.name), "command line", invocation_dir),
            (environ.get(setting.env), f"env {setting.env}", invocation_dir),
            (sources.ini(setting.name), f"ini {setting.name}", ini_dir),
            (setting.default, "default", ini_dir),
        ]
        raw, source, base = next(c for c in candidates if c[0] is not None)
        assert raw is not None
        resolved[setting.name] = Resolved(setting.parse(raw, source, base), source, raw)
    return resolved


def check_files(resolved: Mapping[str, Resolved], kinds: tuple[str, ...],
                readable: Callable[[Path], bool]) -> None:
    """The Vagrantfile / Dockerfile of each selected target must exist and be readable."""
    for kind, name in (("vm", "vmc_vagrantfile"), ("container", "vmc_dockerfile")):
        if kind not in kinds:
            continue
        path: Path = resolved[name].value
        if not readable(path):
            setting = BY_NAME[name]
            raise SettingError(f"{setting.flag} (from {resolved[name].source}): {path} does not "
                               "exist or is not readable", "pass an existing file or use "
                               f"--target={'container' if kind == 'vm' else 'vm'}")
