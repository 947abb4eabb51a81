"""What the SSH hop to another machine's engine costs: bring-up, a testinfra call, an HTTP GET.

Brings up the shipped container (``--kind vm``: VM) as a run does, alternately on this
host's engine and on the one ``DOCKER_HOST=ssh://...`` (``VMC_LIBVIRT_URI=qemu+ssh://...``)
names, ``--rounds`` times each after one warm-up round per engine (the app image built and
docker's layer cache warm on both; the box in both pools). Times, each on both:

- bring-up: the harness's start request to ready. The container: build from cache, run,
  forwards, readiness. The VM: provisioned on both (the VM cache is off: here a hit restores
  a saved running VM, there it boots the entry's disk, so the two would not be one start
  path), so the figure is ``vagrant up`` with its provisioning, and the hop;
- a testinfra call: ``host.run("true")`` through the target's Host (``docker exec`` by the
  docker CLI, which for a remote engine opens an SSH connection per call; for the VM, the
  Host's SSH connection through the forward);
- an HTTP GET of the page through 127.0.0.1 (a published port or QEMU's forward; over SSH,
  the ssh -L forward).

    DOCKER_HOST=ssh://user@host .venv/bin/python bench/remote_hop.py [--rounds 3] [--calls 20]
    VMC_LIBVIRT_URI=qemu+ssh://user@host/system .venv/bin/python bench/remote_hop.py --kind vm
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from pytest_vmcontainer.harness import Harness, HarnessConfig
from pytest_vmcontainer.runtime.progress import quiet
from pytest_vmcontainer.runtime.waiting import http_get

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("bring-up", "testinfra call", "HTTP GET")
# The setting that puts each kind on another machine, and how its value starts.
REMOTE = {"container": ("DOCKER_HOST", "ssh://"), "vm": ("VMC_LIBVIRT_URI", "qemu+ssh://")}


def one_round(kind: str, calls: int) -> dict[str, list[float]]:
    """One bring-up where the settings put ``kind`` now, its calls, and its teardown."""
    harness = Harness(HarnessConfig(vagrantfile=ROOT / "Vagrantfile",
                                    dockerfile=ROOT / "Dockerfile",
                                    provision_inputs=(ROOT / "fixtures",), vm_cache=False),
                      quiet())
    try:
        started = time.monotonic()
        harness.start([kind])
        target = harness.get(kind)
        up = time.monotonic() - started
        runs, gets = [], []
        for _ in range(calls):
            started = time.monotonic()
            assert target.host.run("true").rc == 0
            runs.append(time.monotonic() - started)
            started = time.monotonic()
            assert http_get(target.url("/")).status == 200
            gets.append(time.monotonic() - started)
        return {"bring-up": [up], "testinfra call": runs, "HTTP GET": gets}
    finally:
        harness.teardown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures there")
    parser.add_argument("--kind", choices=sorted(REMOTE), default="container")
    args = parser.parse_args()
    variable, scheme = REMOTE[args.kind]
    remote = os.environ.get(variable, "")
    if not remote.startswith(scheme):
        sys.exit(f"set {variable}={scheme}...: the engine to compare with this host's")
    engines = {"local": None, "remote": remote}
    figures: dict[str, dict[str, list[float]]] = {name: {f: [] for f in FIGURES}
                                                  for name in engines}
    for round_number in range(args.rounds + 1):  # round 0 warms both up and is not counted
        for name, url in engines.items():
            if url is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = url
            measured = one_round(args.kind, args.calls)
            if round_number:
                for figure, values in measured.items():
                    figures[name][figure] += values
    os.environ[variable] = remote
    print(f"{'':<16}{'local engine':>22}{'remote engine (SSH)':>24}{'hop':>10}")
    for figure in FIGURES:
        local, far = (statistics.median(figures[name][figure]) for name in engines)
        spread = "  ".join(f"{name} {min(figures[name][figure]) * 1000:.0f}-"
                           f"{max(figures[name][figure]) * 1000:.0f} ms" for name in engines)
        print(f"{figure:<16}{local * 1000:>19.1f} ms{far * 1000:>21.1f} ms"
              f"{(far - local) * 1000:>+8.1f} ms   (median; {spread}; "
              f"n={len(figures['local'][figure])} each)")
    if args.json is not None:
        args.json.write_text(json.dumps({"rounds": args.rounds, "calls": args.calls,
                                         "figures": figures}, indent=1))


if __name__ == "__main__":
    main()
