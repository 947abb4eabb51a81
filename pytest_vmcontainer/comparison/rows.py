"""The VM-vs-container comparison table as data: each row's claim, unit, probe and verdict rule.

The claims are the classic table's, not ours: they are what the measurements
test. A rule sees the figures of both targets (and of the host, where the claim
is about native speed) and returns a verdict. Rows whose claim says the VM is
slower or heavier are ``tcg_biased``: QEMU TCG (software emulation) can only make
the VM look worse than a hypervisor would, so under TCG such a claim can be
refuted but not confirmed; a "holds" there becomes "not measurable here". Rows whose
figures are timings are ``timed``: measured while other processes kept the host busy
(``host.cpuload``), a decided verdict becomes "not measurable here" and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_vmcontainer.comparison import stats
from pytest_vmcontainer.comparison.results import (
    DOES_NOT_HOLD,
    HOLDS,
    NOT_MEASURABLE,
    Figures,
    RowResult,
    Verdict,
)
from pytest_vmcontainer.host.cpuload import HostLoad

GB = 1e9
MB = 1e6
MARGIN = 1.10  # "faster"/"slower" means by more than 10%, beyond run-to-run noise

Rule = Callable[[Figures, Figures, Figures], Verdict]


@dataclass(frozen=True)
class Row:
    id: str
    aspect: str
    claim_vm: str
    claim_container: str
    unit: str
    headline: str  # the figure shown in the table
    probe: str | Callable[..., Any]  # a name in probes.PROBES, or the probe itself
    how: str
    rule: str  # the verdict rule, as the report states it
    decide: Rule
    tcg_biased: bool = False
    needs_host: bool = False
    timed: bool = False  # its figures are durations or rates: a busy host skews them
    # The optional capabilities (targets.capabilities) the probe uses on a target: on a
    # backend without one of them the row's test is skipped before its probe starts.
    needs: tuple[str, ...] = ()

    def result(self) -> RowResult:
        return RowResult(self.id, self.aspect, self.claim_vm, self.claim_container, self.unit,
                         self.headline, self.how, self.rule)


def _both(vm_side: bool, container_side: bool, vm_text: str, container_text: str,
          evidence: dict[str, Any] | None = None) -> Verdict:
    """Holds only if the claim holds on both sides; the reason states both sides' figures."""
    status = HOLDS if vm_side and container_side else DOES_NOT_HOLD
    return Verdict(status, f"{vm_text}; {container_text}", evidence or {})


def _mb(value: float) -> str:
    return f"{value / MB:,.0f} MB"


def _size(vm: Figures, ct: Figures, host: Figures) -> Verdict:
    v, c = vm["footprint_bytes"], ct["footprint_bytes"]
    return _both(v >= GB, c <= 500 * MB,
                 f"VM {_mb(v)} {'is' if v >= GB else 'is not'} in GBs",
                 f"container {_mb(c)} {'is' if c <= 500 * MB else 'is not'} within 500 MB")


def _boot(vm: Figures, ct: Figures, host: Figures) -> Verdict:
    v, c = vm["cold_s"], ct["cold_s"]
    return _both(60 <= v <= 300, c <= 10,
                 f"VM cold boot {v:.1f} s {'is' if 60 <= v <= 300 else 'is not'} 1-5 min",
                 f"container cold boot {c:.2f} s {'is' if c <= 10 else 'is not'} within 10 s")


def _performance(vm: Figures, ct: Figures, host: Figures) -> Verdict:
    """Paired per-round ratios with 95% intervals; a part of the claim is decided only when
    its interval clears the margin. A decided refutation stands even if the other part is
    undecided."""
    if not all(f.get("paired") for f in (vm, ct, host)):
        return Verdict(NOT_MEASURABLE, "the rounds were not interleaved in one measurement "
                       "(figures from before report schema 2 timed each target against the "
                       "host separately), so they cannot be paired: measure again")
    native, rounds_ct, rounds_vm = host["rounds_s"], ct["rounds_s"], vm["rounds_s"]
    ratios = {"container/native": stats.paired_ratio(rounds_ct, native),
              "VM/native": stats.paired_ratio(rounds_vm, native),
              "VM/container": stats.paired_ratio(rounds_vm, rounds_ct)}
    evidence = {name: interval.as_dict() for name, interval in ratios.items()}
    shown = ", ".join(f"{name} {interval.text()}" for name, interval in ratios.items())
    near = stats.against(ratios["container/native"], MARGIN)
    slower = stats.against(ratios["VM/container"], MARGIN)
    refuted = [text for refutes, text in (
        (near.side == stats.ABOVE, "the container is more than 10% slower than native"),
        (slower.side == stats.NOT_ABOVE, "the VM is not more than 10% slower than the "
                                         "container")) if refutes]
    if refuted:
        return Verdict(DOES_NOT_HOLD, f"{'; '.join(refuted)}: {shown}", evidence)
    if near.side == stats.NOT_ABOVE and slower.side == stats.ABOVE:
        return Verdict(HOLDS, f"the container is within 10% of native and the VM more than "
                       f"10% slower than the container: {shown}", evidence)
    undecided = [name for name, decision in (("container/native", near),
                                             ("VM/container", slower))
                 if decision.side == stats.UNDECIDED]
    return Verdict(NOT_MEASURABLE, f"the 95% interval of {' and '.join(undecided)} does not "
                   f"clear the 10% margin: {shown}; raise --vmc-rounds", evidence)


def _isolation(vm: Figures, ct: Figures, host: Figures) -> Verdict:
    return _both(bool(vm["separate_kernel"]), not ct["separate_kernel"],
                 f"VM boot id {'differs from' if vm['separate_kernel'] else 'equals'} the host's",
                 f"container boot id {'equals' if not ct['separate_kernel'] else 'differs from'}"
                 " the host's")


def _os_support(vm: Figures, ct: Figures, host: Figures) -> Verdict:
    return _both(bool(vm["different_kernel"]), not ct["different_kernel"],
                 f"VM runs kernel {vm['kernel_release']} on a {vm['host_kernel_release']} host",
                 f"container runs the host's kernel {ct['kernel_release']}"
                 if not ct["different_kernel"] else
                 f"container runs kernel {ct['kernel_release']}, not the host's")


def _security(vm: Figures, ct: Figures, host: Figures) -> Verdict:
    exposed = bool(ct["shares_host_kernel"]) and bool(ct["root_is_host_root"])
    return _both(not vm["shares_host_kernel"], exposed,
                 "VM root is confined to its own kernel" if not vm["shares_host_kernel"]
                 else "VM shares the host kernel",
                 "container root is uid 0 of the host kernel it shares (no user namespace)"
                 if exposed else "container is not exposed to the host kernel as root")


LIKE_FOR_LIKE = "gzip -1 vs gzip -1"


def _portability(vm: Figures, ct: Figures, host: Figures) -> Verdict:
    """Sizes compared like for like: both exports' content at gzip level 1 (vagrant package
    compresses its box, docker save does not compress its tar: as made they are not
    comparable). Also shown: both uncompressed, and the image's layers above its base,
    which is all that moves to a host that already has the base."""
    v, c = vm["gzip1_bytes"], ct["gzip1_bytes"]
    bigger, slower = v >= 2 * c, vm["make_seconds"] > ct["make_seconds"]
    evidence: dict[str, Any] = {
        "like-for-like pair": f"{LIKE_FOR_LIKE}: the box's content recompressed at level 1 "
                              "against docker save | gzip -1",
        "gzip -1, VM/container": v / c,
        "uncompressed, VM/container": vm["uncompressed_bytes"] / ct["uncompressed_bytes"],
        "as made (not alike), VM/container": vm["export_bytes"] / ct["export_bytes"],
        "time to a compressed export, VM/container": vm["make_seconds"] / ct["make_seconds"]}
    moves = ""
    if ct.get("app_layers_gzip1_bytes"):
        layers = ct["app_layers_gzip1_bytes"]
        evidence["to a host with the base, gzip -1: VM box/container app layers"] = v / layers
        moves = (f"; to a host that has the base, the container's app layers are "
                 f"{_mb(layers)} at gzip -1, the box {v / layers:,.0f}x that")
    return _both(bigger and slower, True,
                 f"{LIKE_FOR_LIKE}: VM export {_mb(v)} vs container {_mb(c)} ({v / c:.1f}x; "
                 f"uncompressed {_mb(vm['uncompressed_bytes'])} vs "
                 f"{_mb(ct['uncompressed_bytes'])}), made in {vm['make_seconds']:.1f} s vs "
                 f"{ct['make_seconds']:.1f} s (docker save + gzip -1)",
                 f"the rule asks for at least 2x and slower to make{moves}", evidence)


def _resources(vm: Figures, ct: Figures, host: Figures) -> Verdict:
    v, c = vm["idle_memory_bytes"], ct["idle_memory_bytes"]
    return _both(v >= 5 * c, True, f"VM idle memory {_mb(v)} vs container {_mb(c)}",
                 f"{v / c:.0f}x (the rule asks for at least 5x)")


def _density(vm: Figures, ct: Figures, host: Figures) -> Verdict:
    v, c = vm["extrapolated_instances"], ct["extrapolated_instances"]
    return _both(v <= 20, c >= 100, f"about {v:,} VMs fit the memory budget (extrapolated)",
                 f"about {c:,} containers (extrapolated)")


def _networking(vm: Figures, ct: Figures, host: Figures) -> Verdict:
    faster = ct["rps"] > vm["rps"] * MARGIN and ct["p50_ms"] < vm["p50_ms"]
    bound = [who for who, f in (("VM", vm), ("container", ct)) if f.get("client_saturated")]
    note = (f"the load generator saturated its CPU against the {' and '.join(bound)}, so "
            "that figure is a lower bound" if bound else "the load generator was not saturated")
    return _both(faster, True,
                 f"container {ct['rps']:,.0f} req/s, p50 {ct['p50_ms']:.2f} ms; VM "
                 f"{vm['rps']:,.0f} req/s, p50 {vm['p50_ms']:.2f} ms", note)


# Disk cache modes under which a guest's O_DIRECT I/O reaches the image, not host memory.
BYPASSING_CACHE_MODES = ("none", "directsync")


def _storage(vm: Figures, ct: Figures, host: Figures) -> Verdict:
    """The container's writable layer against the VM's disk, like for like: the same
    method, and a VM disk cache mode under which the guest's O_DIRECT I/O reaches the
    image, not the host's page cache (with the default mode the VM can read faster than
    the host's own disk, which is host memory being measured)."""
    cache = vm.get("disk_cache")
    if cache not in BYPASSING_CACHE_MODES:
        return Verdict(NOT_MEASURABLE, f"the VM's disk cache mode was "
                       f"{repr(cache) if cache else 'not recorded'}: guest O_DIRECT I/O may be "
                       "served from the host's page cache, so the VM's figures could be host "
                       "memory; measure with cache=none")
    if vm.get("method") != ct.get("method"):
        return Verdict(NOT_MEASURABLE, "the VM and the container were measured differently "
                       f"({vm.get('method')!r} vs {ct.get('method')!r})")
    write = stats.ratio_of_medians(ct["write_rounds_mb_s"], vm["write_rounds_mb_s"])
    read = stats.ratio_of_medians(ct["read_rounds_mb_s"], vm["read_rounds_mb_s"])
    evidence: dict[str, Any] = {"write, container/VM": write.as_dict(),
                                "read, container/VM": read.as_dict(),
                                "VM disk cache": cache, "method": vm.get("method")}
    volume = ""
    if "volume_write_rounds_mb_s" in ct:
        volume_write = stats.ratio_of_medians(ct["volume_write_rounds_mb_s"],
                                              vm["write_rounds_mb_s"])
        volume_read = stats.ratio_of_medians(ct["volume_read_rounds_mb_s"],
                                             vm["read_rounds_mb_s"])
        evidence["volume write, container/VM"] = volume_write.as_dict()
        evidence["volume read, container/VM"] = volume_read.as_dict()
        volume = (f"; a container volume: write {volume_write.text()}, "
                  f"read {volume_read.text()}")
    shown = (f"container writable layer/VM (disk cache={cache}): write {write.text()}, "
             f"read {read.text()}{volume}")
    sides = {"write": stats.against(write, MARGIN).side, "read": stats.against(read, MARGIN).side}
    if all(side == stats.ABOVE for side in sides.values()):
        return Verdict(HOLDS, f"the container beats the VM by more than 10% on both: {shown}",
                       evidence)
    lost = [what for what, side in sides.items() if side == stats.NOT_ABOVE]
    if lost:
        return Verdict(DOES_NOT_HOLD, f"the container does not beat the VM by more than 10% "
                       f"on {' and '.join(lost)}: {shown}", evidence)
    return Verdict(NOT_MEASURABLE, f"the 95% interval does not clear the 10% margin: {shown}; "
                   "raise --vmc-rounds", evidence)


ROWS: tuple[Row, ...] = (
    Row("size", "Size", "GBs (1-10+ GB)", "MBs (10-500 MB)", "bytes", "footprint_bytes",
        "probe_size",
        "VM: what a flattened copy of its disk needs (qemu-img measure), the same whichever "
        "way it started; container: image size plus its writable layer (docker inspect)",
        "holds if the VM's footprint is at least 1 GB and the container's at most 500 MB",
        _size, needs=("measure",)),
    Row("boot_time", "Boot Time", "Minutes (1-5 min)", "Seconds (1-10 sec)", "s", "cold_s",
        "probe_boot",
        "start request to first HTTP 200 through 127.0.0.1; cold: a new instance from the "
        "exported artifact (vagrant up / docker run), warm: from halted or stopped; median",
        "holds if the VM's cold boot takes 1-5 min and the container's at most 10 s",
        _boot, tcg_biased=True, timed=True, needs=("export",)),
    Row("performance", "Performance", "Slower (hypervisor overhead)", "Near-native speed",
        "ratio", "ratio_to_native", "probe_cpu",
        "sha256 of a fixed stream of zeros, timed inside; one measurement interleaves the "
        "rounds (host, container, VM, host, ...) so all three see the same noise; each ratio "
        "is the geometric mean of the per-round ratios with a 95% bootstrap interval",
        "holds if the container is within 10% of native and the VM more than 10% slower "
        "than the container, each by its 95% interval; not measurable while an interval "
        "straddles the 10% margin",
        _performance, tcg_biased=True, needs_host=True, timed=True),
    Row("isolation", "Isolation", "Complete (separate kernel)", "Process-level (shared kernel)",
        "bool", "separate_kernel", "probe_kernel",
        "kernel boot id inside against the host's; PID 1 and the processes visible inside",
        "holds if the VM's boot id differs from the host's and the container's equals it",
        _isolation, needs_host=True),
    Row("os_support", "OS Support", "Any OS on any host", "Must match host kernel", "bool",
        "different_kernel", "probe_kernel",
        "kernel release inside against the host's (uname -r)",
        "holds if the VM runs a kernel other than the host's and the container the host's",
        _os_support, needs_host=True),
    Row("security", "Security", "Stronger isolation", "Good but shares kernel", "bool",
        "shares_host_kernel", "probe_security",
        "inside each: kernel identity, capabilities of root (CapEff), seccomp mode, user "
        "namespace (uid_map), listening ports",
        "holds if the container's root is root of the host kernel it shares, and the VM's "
        "root is confined to its own kernel", _security),
    Row("portability", "Portability", "Less portable (large files)", "Highly portable",
        "bytes", "gzip1_bytes", "probe_export",
        "export each provisioned target as its tools move it: the VM as a libvirt box (the "
        "provisioned disk from the VM cache, qemu-img-flattened, in a tar; vagrant package, a "
        "gzip box, when the cache is off), the container with docker save (a tar); then "
        "measure both alike: content uncompressed, and at gzip -1; also the image's layers "
        "above its base (what moves to a host with the base)",
        "holds if the VM's export is at least twice the container's, gzip -1 vs gzip -1, and "
        "slower to make into a gzip -1 artifact", _portability,
        timed=True, needs=("export",)),
    Row("resource_usage", "Resource Usage", "Heavy", "Lightweight", "bytes",
        "idle_memory_bytes", "probe_idle",
        "from the host side at idle: QEMU process RSS vs the container's cgroup memory; "
        "CPU over a fixed window; a VM resumed from a saved state is halted and started "
        "first (its QEMU maps memory lazily), and the figures say how each started",
        "holds if the VM's idle memory is at least 5x the container's",
        _resources, tcg_biased=True, needs=("measure",)),
    Row("density", "Density", "10-20 VMs per host", "100+ containers per host", "count",
        "extrapolated_instances", "probe_density",
        "start K instances of each at once from the exported artifact; memory per instance; "
        "instances that fit the memory budget (extrapolated)",
        "holds if at most 20 VMs and at least 100 containers fit the budget",
        _density, tcg_biased=True, needs=("export", "measure")),
    Row("networking", "Networking", "Slower (virtual NIC)", "Faster (same network stack)",
        "req/s", "rps", "probe_http",
        "bounded HTTP load (keep-alive, fixed concurrency, request and time caps) against "
        "127.0.0.1; latency percentiles, req/s, the load generator's own CPU",
        "holds if the container serves more than 10% more req/s than the VM at a lower "
        "median latency", _networking, tcg_biased=True, timed=True),
    Row("storage", "Storage", "Slower (virtual disk)", "Faster (layered filesystem)", "MB/s",
        "write_mb_s", "probe_storage",
        "on an instance made for this row (the VM with disk cache=none, the container with a "
        "volume besides its writable layer) and on the host: dd, sequential write of at least "
        "256 MiB with O_DIRECT and fsync, O_DIRECT sequential read, 4 KiB O_DSYNC writes",
        "holds if the container's writable layer beats the VM on sequential write and read "
        "by more than 10%, each by its 95% interval; not measurable unless the VM's disk "
        "cache mode bypasses the host's page cache", _storage, tcg_biased=True,
        needs_host=True, timed=True, needs=("export",)),
)
BY_ID = {row.id: row for row in ROWS}

TCG_NOTE = ("the VM ran under QEMU TCG (software emulation): it can only look slower or "
            "heavier than under a hypervisor, so this claim can be refuted here but not "
            "confirmed; run on a host where KVM boots a guest")


def decide(row: Row, figures: dict[str, Figures], vm_mode: str | None) -> Verdict:
    """The row's verdict from whatever was measured; never raises on missing figures."""
    missing = [who for who in ("vm", "container") if not figures.get(who)]
    if row.needs_host and "host" not in figures:
        missing.append("host")
    if missing:
        return Verdict(NOT_MEASURABLE, f"no {' or '.join(missing)} figures "
                                       "(not selected, or the measurement failed)")
    lacking = [who for who in ("vm", "container") if row.headline not in figures[who]]
    if lacking:
        return Verdict(NOT_MEASURABLE, f"the {' and '.join(lacking)} figures have no "
                       f"{row.headline} (measured by another version of the probe?)")
    try:
        verdict = row.decide(figures["vm"], figures["container"], figures.get("host", {}))
    except (KeyError, TypeError, ZeroDivisionError) as error:
        return Verdict(NOT_MEASURABLE, f"incomplete figures: {error!r}")
    busy = _busy_host(figures) if row.timed else None
    if busy and verdict.status in (HOLDS, DOES_NOT_HOLD):
        return Verdict(NOT_MEASURABLE, f"{verdict.reason}; but the host was busy while it was "
                       f"measured ({busy}): measure again on a quiet host", verdict.evidence)
    if row.tcg_biased and vm_mode == "tcg" and verdict.status == HOLDS:
        return Verdict(NOT_MEASURABLE, f"{verdict.reason}; but {TCG_NOTE}", verdict.evidence)
    return verdict


def _busy_host(figures: dict[str, Figures]) -> str | None:
    """What else kept the host busy while either target was measured (None: quiet, or not
    watched: figures from before the host was watched)."""
    busy = []
    for who in ("vm", "container"):
        load = figures.get(who, {}).get("host_load")
        if load and load.get("busy"):
            fields = {name: load[name] for name in ("window_s", "cores", "foreign_cores",
                                                     "steal_cores")}
            busy.append(f"{who}: {HostLoad(**fields).text()}")
    return "; ".join(busy) or None


def headline(row: Row, figures: Figures) -> Any:
    return figures.get(row.headline)
