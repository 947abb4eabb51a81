"""Measurements taken the same way on any target (and on the host where a row needs native).

Each probe takes a ``ProbeContext`` and a ``Target`` and returns the target's
figures, plus the host's where it measured them. Timed work goes through
``ctx.timer`` (pytest-benchmark's pedantic mode in the suite, a plain loop
elsewhere); the figures themselves are medians of what the probe timed. A probe
that measures several targets at once (the CPU rounds, interleaved) hands the
other targets' figures to ``ctx.others`` and keeps them in ``ctx.memo``, so the
test of the other target reuses them instead of measuring again.
Everything reaches the targets through testinfra or 127.0.0.1 only, and every
load is bounded in count and time.

The probes that also measure the host through ``run_host`` (the CPU rounds and storage) are
here; the others are in ``instances``, ``kernel``, ``export`` and ``httpload``, and what every
probe is given in ``context``. This module gives all their names.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from typing import Any

from pytest_vmcontainer.comparison import stats
from pytest_vmcontainer.comparison.probes.context import (
    STORAGE_MIN_MIB,
    Instances,
    Measured,
    MeasureSettings,
    ProbeContext,
    median,
    run_checked,
)
from pytest_vmcontainer.comparison.probes.export import GZIP_MAGIC, Packed, gzip1, probe_export
from pytest_vmcontainer.comparison.probes.httpload import LoadResult, http_load, probe_http
from pytest_vmcontainer.comparison.probes.instances import (
    memory_budget,
    probe_boot,
    probe_density,
    probe_idle,
    probe_size,
)
from pytest_vmcontainer.comparison.probes.kernel import (
    KERNEL_SCRIPT,
    SECCOMP_MODES,
    SECURITY_SCRIPT,
    host_kernel_facts,
    probe_kernel,
    probe_security,
)
from pytest_vmcontainer.comparison.results import Figures
from pytest_vmcontainer.errors import ProbeError, VmcError
from pytest_vmcontainer.targets.base import Target

__all__ = [
    "GZIP_MAGIC", "KERNEL_SCRIPT", "PROBES", "SECCOMP_MODES", "SECURITY_SCRIPT",
    "STORAGE_MIN_MIB", "VOLUME_MOUNT", "Instances", "LoadResult", "MeasureSettings", "Measured",
    "Packed", "ProbeContext", "cpu_script", "gzip1", "host_kernel_facts", "http_load",
    "memory_budget", "parse_storage", "probe_boot", "probe_cpu", "probe_density",
    "probe_export", "probe_http", "probe_idle", "probe_kernel", "probe_security",
    "probe_size", "probe_storage", "run_checked", "run_host", "storage_method",
    "storage_script",
]


def run_host(script: str) -> str:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True,
                          env={**os.environ, "LC_ALL": "C"}).stdout


# --- Performance ------------------------------------------------------------------------------

def cpu_script(mib: int) -> str:
    """Hash a fixed stream of zeros; prints the nanoseconds the work took, timed inside."""
    return (f"s=$(date +%s%N); head -c {mib}M /dev/zero | sha256sum >/dev/null; "
            f"e=$(date +%s%N); echo $((e - s))")


def probe_cpu(ctx: ProbeContext, target: Target) -> Measured:
    """One measurement for every target the selected tests need (``ctx.kinds``): the first
    call times the rounds of all of them, interleaved; later calls return their share."""
    measured = ctx.memo.get("cpu")
    if measured is None:
        measured = ctx.memo["cpu"] = _interleaved_cpu(ctx, target)
        ctx.others += [(other, measured[other.kind]) for other in measured["targets"]
                       if other is not target]
    if target.kind not in measured:
        raise ProbeError(f"the {target.kind} was not up when the CPU rounds of "
                         f"{', '.join(measured['order'])} ran, so it has no paired rounds",
                         "fix its bring-up (see its first failing test) and run again")
    figures: Figures = measured[target.kind]
    return figures, measured["host"]


def _interleaved_cpu(ctx: ProbeContext, target: Target) -> dict[str, Any]:
    """Rounds of host, then the other selected targets, then ``target``, and again: noise
    from the rest of the machine hits a whole round, and each round's ratios cancel it.

    ``target``'s own run is the timed work (pytest-benchmark times it); the others run in
    the untimed setup before it. The figures are the times measured inside each.
    """
    others = []
    for kind in ctx.kinds:
        if kind != target.kind:
            try:
                others.append(ctx.instances.get(kind))
            except VmcError:
                pass  # its own tests fail with the bring-up error; pair the rest
    script = cpu_script(ctx.settings.cpu_mib)
    everyone = [*others, target]
    rounds: dict[str, list[float]] = {"host": [], **{t.kind: [] for t in everyone}}

    def before() -> None:
        rounds["host"].append(int(run_host(script)) / 1e9)
        for other in others:
            rounds[other.kind].append(int(run_checked(other, script)) / 1e9)

    ctx.timer(lambda: rounds[target.kind].append(int(run_checked(target, script)) / 1e9),
              setup=before)
    kept = {who: values[-ctx.settings.rounds:] for who, values in rounds.items()}
    order = ["host", *(t.kind for t in everyone)]

    def summary(values: list[float]) -> Figures:
        return {"rounds_s": values, "seconds": median(values), "fastest_s": min(values),
                "mib": ctx.settings.cpu_mib, "paired": True, "round_order": ", ".join(order)}

    measured: dict[str, Any] = {"host": summary(kept["host"]), "targets": everyone,
                                "order": order}
    for who in everyone:
        figures = summary(kept[who.kind])
        native = stats.paired_ratio(kept[who.kind], kept["host"])
        figures["ratio_to_native"] = native.estimate
        figures["ratio_to_native_ci95"] = [native.low, native.high] if native.known else None
        measured[who.kind] = figures
    if "vm" in measured and "container" in measured:
        vm_to_container = stats.paired_ratio(kept["vm"], kept["container"])
        measured["vm"]["ratio_to_container"] = vm_to_container.estimate
        measured["vm"]["ratio_to_container_ci95"] = (
            [vm_to_container.low, vm_to_container.high] if vm_to_container.known else None)
    return measured



# --- Storage ----------------------------------------------------------------------------------

_DD = re.compile(r"(\d+) bytes .* copied, ([\d.]+) s")
VOLUME_MOUNT = "/vmc-volume"  # where the container's storage instance mounts its volume


def storage_method(mib: int, sync_writes: int) -> str:
    return (f"dd: sequential write of {mib} MiB in 1 MiB blocks with O_DIRECT (oflag=direct) "
            f"and an fsync at the end (conv=fsync); sequential read of that file with O_DIRECT "
            f"(iflag=direct); {sync_writes} writes of 4 KiB with O_DSYNC (oflag=dsync)")


def storage_script(directory: str, mib: int, sync_writes: int) -> str:
    """The three dd runs of ``storage_method``; dd's summary line for each.

    No fallback to cached I/O: where O_DIRECT is refused (tmpfs), dd's error is what
    the probe reports, rather than a figure measured another way.
    """
    file, small = f"{directory}/vmc-io.bin", f"{directory}/vmc-sync.bin"
    return (f"export LC_ALL=C; mkdir -p {directory} && "
            f"dd if=/dev/zero of={file} bs=1M count={mib} oflag=direct conv=fsync 2>&1 "
            f"| tail -n1 && "
            f"dd if={file} of=/dev/null bs=1M iflag=direct 2>&1 | tail -n1 && "
            f"dd if=/dev/zero of={small} bs=4k count={sync_writes} oflag=dsync 2>&1 "
            f"| tail -n1; rm -f {file} {small}")


def parse_storage(output: str, where: str = "the target") -> Figures:
    matches = _DD.findall(output)
    if len(matches) != 3:
        refused = "Invalid argument" in output
        raise ProbeError(f"unexpected dd output in {where}: {' '.join(output.split())[-300:]!r}",
                         "the storage probe needs O_DIRECT, which this filesystem refuses (is "
                         "it tmpfs?)" if refused else
                         "the target needs coreutils' dd and a writable /var/tmp")
    (wb, ws), (rb, rs), (sb, ss) = ((int(b), float(s)) for b, s in matches)
    return {"write_mb_s": wb / ws / 1e6, "read_mb_s": rb / rs / 1e6,
            "sync_write_iops": (sb / 4096) / ss}


def _storage_figures(samples: list[Figures], prefix: str = "") -> Figures:
    """Medians and every round, per measure; ``prefix`` tells the container's volume apart."""
    figures: Figures = {}
    for key, rounds_key in (("write_mb_s", "write_rounds_mb_s"),
                            ("read_mb_s", "read_rounds_mb_s"),
                            ("sync_write_iops", "sync_write_rounds_iops")):
        values = [sample[key] for sample in samples]
        figures[prefix + key] = median(values)
        figures[prefix + rounds_key] = values
    return figures


def probe_storage(ctx: ProbeContext, target: Target) -> Measured:
    """On an instance made for this row from the export: the VM with a disk cache mode that
    bypasses the host's page cache, the container with a volume besides its writable layer.
    The host runs the same method once per run, for reference."""
    settings = ctx.settings
    container = target.kind == "container"
    places = {"": "/var/tmp/vmc-io"}
    if container:
        places["volume_"] = f"{VOLUME_MOUNT}/vmc-io"
        instance = ctx.instances.extra(target.kind, "storage", volumes={"data": VOLUME_MOUNT})
    else:
        # Its start is not measured: a VM may be restored from a saved state.
        instance = ctx.instances.extra(target.kind, "storage", disk_cache="none",
                                       vm_restore=True)
    samples: dict[str, list[Figures]] = {prefix: [] for prefix in places}

    def work() -> None:
        for prefix, directory in places.items():
            script = storage_script(directory, settings.storage_mib, settings.sync_writes)
            samples[prefix].append(parse_storage(run_checked(instance, script),
                                                 f"the {target.kind} at {directory}"))

    try:
        instance.up()
        ctx.timer(work)
        cache = instance.disk_cache_mode()
    finally:
        ctx.instances.discard(instance)
    method = storage_method(settings.storage_mib, settings.sync_writes)
    figures: Figures = {
        "method": method, "working_set_mib": settings.storage_mib, "disk_cache": cache,
        "path": "/var/tmp: the writable layer" if container else "/var/tmp: the virtual disk",
        "instance": f"{instance.resource_name}, made from the export for this row"}
    if container:
        figures["volume_path"] = f"{VOLUME_MOUNT}: a volume"
    for prefix in places:
        figures.update(_storage_figures(samples[prefix][-settings.rounds:], prefix))
    if "storage-host" not in ctx.memo:
        directory = str(ctx.instances.scratch_dir("io-host"))
        script = storage_script(directory, settings.storage_mib, settings.sync_writes)
        host = [parse_storage(run_host(script), "the host") for _ in range(settings.rounds)]
        ctx.memo["storage-host"] = {"method": method, "working_set_mib": settings.storage_mib,
                                    "path": directory, **_storage_figures(host)}
    return figures, ctx.memo["storage-host"]



PROBES: dict[str, Callable[..., Measured]] = {
    "probe_size": probe_size, "probe_boot": probe_boot, "probe_cpu": probe_cpu,
    "probe_kernel": probe_kernel, "probe_security": probe_security,
    "probe_export": probe_export, "probe_idle": probe_idle, "probe_density": probe_density,
    "probe_http": probe_http, "probe_storage": probe_storage,
}
