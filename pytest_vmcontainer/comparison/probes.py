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
"""

from __future__ import annotations

import http.client
import os
import re
import statistics
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pytest_vmcontainer.comparison import stats
from pytest_vmcontainer.comparison.results import Figures
from pytest_vmcontainer.errors import ProbeError, UsageError, VmcError
from pytest_vmcontainer.runtime import background
from pytest_vmcontainer.runtime.timing import Timer
from pytest_vmcontainer.runtime.waiting import LOOPBACK
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


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def run_checked(target: Target, script: str) -> str:
    result = target.run(script)
    if result.rc != 0:
        raise ProbeError(f"on the {target.kind}, {script!r} exited {result.rc}: "
                         f"{' '.join(result.stderr.split())[-300:]}",
                         "install what the command needs in the target's provisioning "
                         "(the probes use coreutils, procps and iproute2)")
    return result.stdout


def run_host(script: str) -> str:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True,
                          env={**os.environ, "LC_ALL": "C"}).stdout


# --- Size ----------------------------------------------------------------------------------------

def probe_size(ctx: ProbeContext, target: Target) -> Measured:
    return target.footprint(), None


# --- Boot time --------------------------------------------------------------------------------

def probe_boot(ctx: ProbeContext, target: Target, phase: str) -> Measured:
    """Cold: a new instance from the exported artifact; warm: the same instance, stopped first.

    The very first instance made from an export is not timed unless the export starts
    warm: a VM from ``vagrant package`` uploads the box image into the libvirt pool, which
    is not part of a boot; the VM cache entry is in the pool before the run's first boot.
    """
    source = ctx.instances
    source.export(target.kind)
    instances: list[Target] = []

    def discard_previous() -> None:
        while instances:
            source.discard(instances.pop())

    if phase == "cold":
        def new_instance() -> None:
            # Boot time is start request to first HTTP 200, whatever the run waits for.
            instance = source.extra(target.kind, f"boot{len(instances)}", ready_path="/")
            instances.append(instance)
            instance.up()

        try:
            rounds = ctx.timer(new_instance, setup=discard_previous,
                               rounds=ctx.settings.boot_rounds,
                               warmup=0 if source.primed(target.kind) else 1)
        finally:
            discard_previous()
        return {"cold_s": _median(rounds), "cold_rounds_s": rounds}, None
    waited_for = target.spec.ready_path
    target.spec.ready_path = "/"  # to first HTTP 200, as the cold boots
    try:
        rounds = ctx.timer(target.start, setup=target.stop, rounds=ctx.settings.boot_rounds,
                           warmup=0)
    finally:
        target.spec.ready_path = waited_for
    return {"warm_s": _median(rounds), "warm_rounds_s": rounds}, None


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
        return {"rounds_s": values, "seconds": _median(values), "fastest_s": min(values),
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


# --- Isolation, OS support, security --------------------------------------------------------

KERNEL_SCRIPT = ("cat /proc/sys/kernel/random/boot_id; uname -r; cat /proc/1/comm; "
                 "ps -e --no-headers | wc -l; . /etc/os-release; echo \"$PRETTY_NAME\"")


def host_kernel_facts() -> Figures:
    import psutil

    return {"boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
            "kernel_release": os.uname().release,
            "pid1": Path("/proc/1/comm").read_text().strip(),
            "visible_processes": len(psutil.pids())}


def probe_kernel(ctx: ProbeContext, target: Target) -> Measured:
    boot_id, release, pid1, processes, os_name = (
        run_checked(target, KERNEL_SCRIPT).strip().splitlines()[:5])
    host = host_kernel_facts()
    return {
        "boot_id": boot_id, "kernel_release": release, "pid1": pid1, "os": os_name,
        "visible_processes": int(processes), "host_kernel_release": host["kernel_release"],
        "boot_id_matches_host": boot_id == host["boot_id"],
        "separate_kernel": boot_id != host["boot_id"],
        "different_kernel": release != host["kernel_release"],
    }, host


SECURITY_SCRIPT = ("grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status; "
                   "echo \"uid_map: $(cat /proc/self/uid_map)\"; "
                   "echo \"modules: $(cat /proc/modules 2>/dev/null | wc -l)\"; "
                   "echo \"boot_id: $(cat /proc/sys/kernel/random/boot_id)\"; "
                   "ss -Htln | awk '{print \"listen: \" $4}'")
SECCOMP_MODES = {"0": "disabled", "1": "strict", "2": "filter"}


def probe_security(ctx: ProbeContext, target: Target) -> Measured:
    fields: dict[str, str] = {}
    listening = set()
    for line in run_checked(target, SECURITY_SCRIPT).splitlines():
        key, _, value = line.partition(":")
        if key == "listen":
            listening.add(int(value.strip().rsplit(":", 1)[-1]))
        else:
            fields[key.strip()] = " ".join(value.split())
    host_boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    shares_kernel = fields.get("boot_id") == host_boot_id
    try:
        host_modules = len(Path("/proc/modules").read_text().splitlines())
    except OSError:
        host_modules = 0  # a kernel built without loadable modules
    identity_map = fields.get("uid_map") == "0 0 4294967295"
    return {
        "shares_host_kernel": shares_kernel,
        "root_is_host_root": shares_kernel and identity_map,
        "user_namespace": not identity_map,
        "cap_eff_count": bin(int(fields.get("CapEff", "0"), 16)).count("1"),
        "seccomp": SECCOMP_MODES.get(fields.get("Seccomp", ""), fields.get("Seccomp", "?")),
        "no_new_privs": fields.get("NoNewPrivs") == "1",
        "listening_ports": sorted(listening),
        # The host kernel's modules, seen from inside: only when it is the same kernel.
        "kernel_modules_visible": int(fields.get("modules", "0") or 0),
        "host_kernel_modules": host_modules,
    }, None


# --- Portability ------------------------------------------------------------------------------

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Packed:
    """A file's content: its size uncompressed and at gzip level 1."""

    raw_bytes: int
    gzip1_bytes: int
    gzip1_seconds: float  # time spent compressing
    was_gzip: bool  # the file itself was gzip (its content was decompressed first)


def gzip1(path: Path) -> Packed:
    """Stream ``path`` (decompressed first if it is gzip) through deflate level 1 in a gzip
    wrapper, counting bytes; nothing is written. zlib's level 1 uses the same deflate
    parameters as ``gzip -1``, so sizes agree to within a fraction of a percent."""
    with open(path, "rb") as source:
        was_gzip = source.read(2) == GZIP_MAGIC
        source.seek(0)
        unpack = zlib.decompressobj(zlib.MAX_WBITS | 16) if was_gzip else None
        pack = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS | 16)
        raw = packed = 0
        seconds = 0.0
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            data = chunk
            if unpack is not None:
                data = unpack.decompress(chunk)
                while unpack.eof and unpack.unused_data:  # the next gzip member
                    rest = unpack.unused_data
                    unpack = zlib.decompressobj(zlib.MAX_WBITS | 16)
                    data += unpack.decompress(rest)
            raw += len(data)
            started = time.perf_counter()
            packed += len(pack.compress(data))
            seconds += time.perf_counter() - started
        started = time.perf_counter()
        packed += len(pack.flush())
        seconds += time.perf_counter() - started
    return Packed(raw, packed, seconds, was_gzip)


def _gzip1_of(path: Path, target: Target) -> Packed:
    try:
        return gzip1(path)
    except (OSError, zlib.error) as error:
        raise ProbeError(f"cannot read the {target.kind}'s export {path}: {error}",
                         "the export is damaged (a full disk?); free space and run again: "
                         "each run exports anew") from None


def probe_export(ctx: ProbeContext, target: Target) -> Measured:
    """The export as its standard tool makes it, then measured alike: its content
    uncompressed, and that content at gzip level 1 (a box is a gzip tar: it is decompressed
    and recompressed at level 1; a docker save tar is compressed at level 1). For an image,
    also its layers above the base: what moves to a host that already has the base."""
    exported = ctx.instances.export(target.kind, timer=ctx.timer)
    packed = _gzip1_of(exported.path, target)
    figures: Figures = {
        "export_bytes": exported.bytes, "export_seconds": exported.seconds,
        "format": exported.format, "uncompressed_bytes": packed.raw_bytes,
        "gzip1_bytes": packed.gzip1_bytes, "gzip1_seconds": packed.gzip1_seconds,
        "export_compressed": packed.was_gzip,
        # Time to a compressed artifact: the tool's own when it compresses, else plus gzip -1.
        "make_seconds": exported.seconds + (0.0 if packed.was_gzip else packed.gzip1_seconds)}
    if exported.delta_path is not None:
        delta = _gzip1_of(exported.delta_path, target)
        figures.update(app_layers_bytes=delta.raw_bytes, app_layers_gzip1_bytes=delta.gzip1_bytes,
                       app_layers_what=exported.delta_what)
    return figures, None


# --- Resource usage and density ---------------------------------------------------------------

def probe_idle(ctx: ProbeContext, target: Target) -> Measured:
    window = ctx.settings.idle_seconds
    _, cpu_before = target.usage()
    started = time.monotonic()
    threading.Event().wait(window)  # the measurement window itself: nothing to poll for
    memory, cpu_after = target.usage()
    elapsed = time.monotonic() - started
    return {"idle_memory_bytes": memory,
            "idle_cpu_percent": 100.0 * (cpu_after - cpu_before) / elapsed,
            "window_s": round(elapsed, 2),
            "source": "QEMU process RSS" if target.kind == "vm" else
            "container cgroup memory (docker stats, without inactive file cache)"}, None


def memory_budget(settings: MeasureSettings) -> int:
    import psutil

    return settings.memory_budget_bytes or int(psutil.virtual_memory().total * 0.8)


def probe_density(ctx: ProbeContext, target: Target) -> Measured:
    """K instances running at once, started together; when the export was never started
    before, the first instance starts alone (concurrent first starts from a new box would
    each try to upload its image into the libvirt pool: vagrant-libvirt races there)."""
    source, settings = ctx.instances, ctx.settings
    source.export(target.kind)
    wanted = settings.density_vms if target.kind == "vm" else settings.density_containers
    budget = memory_budget(settings)
    instances = [source.extra(target.kind, f"dense{i}") for i in range(wanted)]
    first_alone = not source.primed(target.kind)

    def start_all() -> None:
        together = instances
        if first_alone:
            instances[0].up()
            together = instances[1:]
        if together:
            background.run_all([instance.up for instance in together], name="density")

    try:
        durations = ctx.timer(start_all, rounds=1, warmup=0)
        memory = [instance.usage()[0] for instance in instances]
    finally:
        for instance in instances:
            source.discard(instance)
    per_instance = _median([float(m) for m in memory])
    return {"started": len(instances), "start_all_seconds": durations[-1],
            "first_started_alone": first_alone,
            "per_instance_bytes": int(per_instance), "budget_bytes": budget,
            "extrapolated_instances": int(budget // per_instance), "extrapolated": True}, None


# --- Networking -------------------------------------------------------------------------------

@dataclass
class LoadResult:
    latencies: list[float]
    errors: int
    seconds: float
    client_cpu_seconds: float


def http_load(port: int, requests: int, seconds: float, concurrency: int,
              path: str = "/") -> LoadResult:
    """Keep-alive GETs against 127.0.0.1:port from ``concurrency`` threads.

    Bounded twice: at most ``requests`` requests and at most ``seconds`` seconds.
    """
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]
    issued = [0]
    deadline = time.monotonic() + seconds

    def worker() -> None:
        connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if issued[0] >= requests:
                        return
                    issued[0] += 1
                started = time.perf_counter()
                try:
                    connection.request("GET", path)
                    response = connection.getresponse()
                    response.read()
                    ok = response.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    connection.close()
                    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
                elapsed = time.perf_counter() - started
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors[0] += 1
        finally:
            connection.close()

    cpu_before, wall_before = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=worker, name=f"load-{i}") for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(latencies, errors[0], time.perf_counter() - wall_before,
                      time.process_time() - cpu_before)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def probe_http(ctx: ProbeContext, target: Target) -> Measured:
    settings = ctx.settings
    port = target.address(target.spec.guest_ports[0])[1]
    results: list[LoadResult] = []
    ctx.timer(lambda: results.append(http_load(port, settings.http_requests,
                                               settings.http_seconds,
                                               settings.http_concurrency)), rounds=1, warmup=0)
    load = results[-1]
    if not load.latencies:
        raise ProbeError(f"no successful request to the {target.kind} ({load.errors} errors)",
                         "check that the app still serves on its first forwarded port")
    client_cpu = 100.0 * load.client_cpu_seconds / load.seconds
    return {"requests": len(load.latencies), "errors": load.errors,
            "seconds": round(load.seconds, 2), "rps": len(load.latencies) / load.seconds,
            "p50_ms": 1000 * _percentile(load.latencies, 0.50),
            "p90_ms": 1000 * _percentile(load.latencies, 0.90),
            "p99_ms": 1000 * _percentile(load.latencies, 0.99),
            "concurrency": settings.http_concurrency, "client_cpu_percent": client_cpu,
            "client_saturated": client_cpu >= 90.0}, None


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
        figures[prefix + key] = _median(values)
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
