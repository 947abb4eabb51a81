"""How fast a fresh target is ready: the raw tools against the plugin, side by side in one run.

For the shipped Vagrantfile and Dockerfile (nginx), each variant from its start request to the
first HTTP 200 through 127.0.0.1, then removed:

  container  raw docker   docker build (cached) + docker run + wait for 200 + docker rm
             plugin       Harness: build (cached) + run + ready + teardown (both: whole lifecycle)
  vm         raw boot     plain ``vagrant up --no-provision`` of a new machine from the cached,
                          provisioned disk (the plumbing layered as the harness does it), to 200
             raw up       plain ``vagrant up`` with provisioning, from the base box, to 200
             plugin cold  Harness with an empty VM cache: provision, cache the disk, boot it
             plugin cache Harness: a new VM booted from the cache (--vmc-no-vm-restore)
             plugin restored  Harness: the cache entry's saved running VM restored on a new
                          overlay (what every run after the first does; targets/vmsaved.py)
             plugin reuse Harness with --vmc-reuse, second run (the VM kept from the first)

Rounds are interleaved where they are cheap (containers, cache, raw boot); the cold variants
run once (each provisions with apt-get under emulation). Prints medians and ratios, and the
mode (KVM or TCG).

    .venv/bin/python bench/vm_start.py [--rounds 3] [--cold-only | --warm-only]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pytest_vmcontainer import lifecycle, targets
from pytest_vmcontainer.harness import Harness, HarnessConfig
from pytest_vmcontainer.host import accel, bases, libvirt, paths, setup
from pytest_vmcontainer.host.ports import free_port
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.runtime.waiting import http_ok, wait_for
from pytest_vmcontainer.targets import vmcache
from pytest_vmcontainer.targets.vagrant import PLUMBING

ROOT = Path(__file__).resolve().parent.parent
QUIET = Progress(write=lambda _line: None)


def _config(**changes: object) -> HarnessConfig:
    config = HarnessConfig(vagrantfile=ROOT / "Vagrantfile", dockerfile=ROOT / "Dockerfile",
                           provision_inputs=(ROOT / "fixtures",), ready_path="/")
    for name, value in changes.items():
        setattr(config, name, value)
    return config


def plugin(kind: str, **changes: object) -> float:
    """To ready; a container's whole lifecycle (teardown included), as its raw path times it."""
    harness = Harness(_config(**changes), QUIET)
    started = time.perf_counter()
    try:
        harness.start([kind])
        harness.get(kind)
        if kind == "vm":
            return time.perf_counter() - started
    finally:
        harness.teardown()
    return time.perf_counter() - started


def plugin_cold(teardowns: list[float]) -> float:
    """To ready from an empty VM cache (the entry written meanwhile); the teardown, which waits
    for that write, is timed apart into ``teardowns``."""
    harness = Harness(_config(), QUIET)
    started = time.perf_counter()
    try:
        harness.start(["vm"])
        harness.get("vm")
        ready = time.perf_counter() - started
    finally:
        stopping = time.perf_counter()
        harness.teardown()
        teardowns.append(time.perf_counter() - stopping)
    return ready


def cold_only(rounds: int) -> int:
    """Raw ``vagrant up`` with provisioning against the plugin's cold run, interleaved."""
    seconds: dict[str, list[float]] = {"vm raw up (provisioning)": [],
                                       "vm plugin cold (provision + cache)": []}
    teardowns: list[float] = []
    entry = _cache_entry()  # its key is the shipped files' (any checkout's): dropped each round
    for round_number in range(rounds):
        seconds["vm raw up (provisioning)"].append(raw_vagrant(True, None))
        if not _drop_cache(entry):
            raise SystemExit(f"the cache entry {entry.key} is in use: stop the run using it")
        seconds["vm plugin cold (provision + cache)"].append(plugin_cold(teardowns))
        print(f"round {round_number + 1}: raw up {seconds['vm raw up (provisioning)'][-1]:.1f}s,"
              f" plugin cold {seconds['vm plugin cold (provision + cache)'][-1]:.1f}s (its "
              f"teardown, waiting for the cache write: {teardowns[-1]:.1f}s)", flush=True)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"\nstart request to first HTTP 200 through 127.0.0.1; VM under {MODE.mode.upper()} "
          f"({MODE.reason}); {rounds} interleaved rounds")
    for name, values in seconds.items():
        print(f"{name:<38}{median[name]:>8.2f}s  {', '.join(f'{v:.2f}' for v in values)}")
    ratio = median["vm plugin cold (provision + cache)"] / median["vm raw up (provisioning)"]
    print(f"plugin cold / raw vagrant up: {ratio:.2f}x")
    return 0


def plugin_reuse() -> float:
    """The second of two --vmc-reuse runs (the first keeps the VM)."""
    plugin("vm", reuse=True)
    try:
        return plugin("vm", reuse=True)
    finally:
        session = f"r{_config(reuse=True).reuse_key()}"
        lifecycle.sweep(targets.default_leftovers(), include_marked=True, only={session})


def raw_docker() -> float:
    import docker

    client = docker.from_env()
    port = free_port()
    started = time.perf_counter()
    image, _ = client.images.build(path=str(ROOT), dockerfile="Dockerfile", rm=True)
    container = client.containers.run(str(image.id), detach=True,
                                      ports={"80/tcp": ("127.0.0.1", port)})
    try:
        wait_for(http_ok(f"http://127.0.0.1:{port}/"), timeout=120, what="raw docker",
                 interval=0.02, max_interval=0.05)
    finally:
        container.remove(force=True)
    return time.perf_counter() - started


def raw_vagrant(provision: bool, box: str | None) -> float:
    """Plain vagrant, in a throwaway VAGRANT_HOME holding the plumbing (forwards on 127.0.0.1)."""
    work = Path(tempfile.mkdtemp(prefix="vmc-bench-", dir=paths.home()))
    work.chmod(0o755)
    home = work / "vagrant.d"
    home.mkdir()
    (home / "boxes").symlink_to(paths.vagrant_home() / "boxes")
    shutil.copyfile(PLUMBING, home / "Vagrantfile")
    ssh, http = free_port(), free_port()
    plumbing = {"ssh_port": ssh, "mac": "52:54:00:be:0c:01", "pool": libvirt.pool_name(),
                "driver": MODE.libvirt_driver, "domain_prefix": "vmc-benchraw-",
                "forwards": {"80": http}, "box": box}
    env = libvirt.vagrant_env({"VAGRANT_HOME": str(home), "VAGRANT_DOTFILE_PATH": str(work / "dot"),
                               "VMC_PLUMBING": json.dumps(plumbing)})
    up = ["vagrant", "up"] + ([] if provision else ["--no-provision"])
    started = time.perf_counter()
    try:
        subprocess.run(up, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wait_for(http_ok(f"http://127.0.0.1:{http}/"), timeout=300, what="raw vagrant",
                 interval=0.1, max_interval=0.5)
        return time.perf_counter() - started
    finally:
        subprocess.run(["vagrant", "destroy", "-f"], cwd=ROOT, env=env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


def _cache_entry() -> vmcache.Entry:
    """The shipped VM's cache entry (made by a plugin run if there is none)."""
    harness = Harness(_config(vm_restore=False), QUIET)
    try:
        harness.start(["vm"])
        start = harness.get("vm").start_path  # type: ignore[attr-defined]
        key = start.started_from.key if start.started_from else start.cache_key
    finally:
        harness.teardown()  # a cold run's entry is written by then
    return vmcache.Entry(key)  # not the newest entry: another project's may be newer


def main() -> int:
    global MODE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold-only", action="store_true",
                        help="only raw vagrant up against the plugin's cold run, interleaved")
    parser.add_argument("--warm-only", action="store_true",
                        help="only the interleaved variants that provision nothing (minutes)")
    args = parser.parse_args()
    setup.ensure_host(Progress())
    bases.ensure_bases(Progress(), _docker_client(), want_box=True)
    MODE = accel.detect(accel.probe_kernel(bases.box_kernel()))
    if args.cold_only:
        return cold_only(args.rounds)
    entry = _cache_entry()
    cheap: dict[str, Callable[[], float]] = {
        "container raw docker": raw_docker,
        "container plugin": lambda: plugin("container"),
        "vm raw boot (cached disk)": lambda: raw_vagrant(False, entry.box_name),
        "vm plugin from cache": lambda: plugin("vm", vm_restore=False),
        "vm plugin restored": lambda: plugin("vm"),
    }
    seconds: dict[str, list[float]] = {name: [] for name in cheap}
    for round_number in range(args.rounds):
        for name, variant in cheap.items():
            seconds[name].append(variant())
            print(f"round {round_number + 1}: {name}: {seconds[name][-1]:.2f}s", flush=True)
    if not args.warm_only:
        _cold_variants(seconds, entry)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"\nstart request to first HTTP 200 through 127.0.0.1; VM under {MODE.mode.upper()} "
          f"({MODE.reason}); {args.rounds} rounds where shown")
    print(f"{'variant':<38}{'median':>9}  rounds")
    for name, values in seconds.items():
        print(f"{name:<38}{median[name]:>8.2f}s  {', '.join(f'{v:.2f}' for v in values)}")
    print("\nratios")
    for what, numerator, denominator in RATIOS:
        if numerator in median and denominator in median:
            print(f"  {what:<46}{median[numerator] / median[denominator]:.2f}x")
    return 0


def _cold_variants(seconds: dict[str, list[float]], entry: vmcache.Entry) -> None:
    """Raw vagrant up with provisioning, the plugin's cold run (the shipped entry dropped
    first) and a reused VM: once each."""
    seconds["vm raw up (provisioning)"] = [raw_vagrant(True, None)]
    print(f"vm raw up: {seconds['vm raw up (provisioning)'][0]:.1f}s", flush=True)
    seconds["vm plugin cold (provision + cache)"] = [plugin("vm", vm_cache=True)
                                                     if _drop_cache(entry) else 0.0]
    print(f"vm plugin cold: {seconds['vm plugin cold (provision + cache)'][0]:.1f}s", flush=True)
    seconds["vm plugin reused"] = [plugin_reuse()]


def _drop_cache(entry: vmcache.Entry) -> bool:
    """Make the next plugin run cold: remove the shipped VM's entry (nothing uses it now)."""
    return entry.key in vmcache.remove_entries({entry.key})


def _docker_client() -> object:
    from pytest_vmcontainer.targets.docker.client import connect

    return connect()


MODE = accel.Accel("tcg", "not probed")
RATIOS = (
    ("container plugin / raw docker", "container plugin", "container raw docker"),
    ("vm plugin from cache / raw boot of the disk", "vm plugin from cache",
     "vm raw boot (cached disk)"),
    ("vm plugin from cache / raw vagrant up", "vm plugin from cache", "vm raw up (provisioning)"),
    ("vm plugin restored / raw boot of the disk", "vm plugin restored",
     "vm raw boot (cached disk)"),
    ("vm plugin cold / raw vagrant up", "vm plugin cold (provision + cache)",
     "vm raw up (provisioning)"),
)

if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
