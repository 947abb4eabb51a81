"""The probes of whole instances: size, boot time (cold and warm), memory and CPU at idle,
and density (many instances at once)."""

from __future__ import annotations

import threading
import time

from pytest_vmcontainer.comparison.probes.context import (
    Measured,
    MeasureSettings,
    ProbeContext,
    median,
)
from pytest_vmcontainer.runtime import background
from pytest_vmcontainer.targets.base import Target
from pytest_vmcontainer.targets.capabilities import as_measuring


def probe_size(ctx: ProbeContext, target: Target) -> Measured:
    return as_measuring(target).footprint(), None



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
        return {"cold_s": median(rounds), "cold_rounds_s": rounds}, None
    # To first HTTP 200, as the cold boots, whatever the run's own readiness waits for.
    rounds = ctx.timer(lambda: target.start(ready_path="/"), setup=target.stop,
                       rounds=ctx.settings.boot_rounds, warmup=0)
    return {"warm_s": median(rounds), "warm_rounds_s": rounds}, None



def probe_idle(ctx: ProbeContext, target: Target) -> Measured:
    window = ctx.settings.idle_seconds
    how_started = as_measuring(target).memory_as_booted()
    _, cpu_before = as_measuring(target).usage()
    started = time.monotonic()
    threading.Event().wait(window)  # the measurement window itself: nothing to poll for
    memory, cpu_after = as_measuring(target).usage()
    elapsed = time.monotonic() - started
    return {"idle_memory_bytes": memory,
            "idle_cpu_percent": 100.0 * (cpu_after - cpu_before) / elapsed,
            "window_s": round(elapsed, 2), "started": how_started,
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
        memory = [as_measuring(instance).usage()[0] for instance in instances]
    finally:
        for instance in instances:
            source.discard(instance)
    per_instance = median([float(m) for m in memory])
    return {"started": len(instances), "start_all_seconds": durations[-1],
            "first_started_alone": first_alone,
            "per_instance_bytes": int(per_instance), "budget_bytes": budget,
            "extrapolated_instances": int(budget // per_instance), "extrapolated": True}, None


