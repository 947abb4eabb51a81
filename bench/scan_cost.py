"""What the parity scan costs per target: the collector's round trip, alone and both at once.

Brings up the shipped pair as a run does (the VM from the provisioned-VM cache, the
container from Docker's build cache), then times the collection (``collect.collect``:
the one command through the target's testinfra Host, as root, until its output is in)
``--rounds`` times on each target alone, then as the plugin runs it, both at once; and
the round trip of ``true``, which is what any command costs before the collector runs.
Tears everything down. Run it alone on the machine: under TCG the VM's figure moves
with the host's load.

    flock /work/vm.lock .venv/bin/python bench/scan_cost.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from pytest_vmcontainer.harness import Harness, HarnessConfig
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.scan import collect, runner

ROOT = Path(__file__).resolve().parent.parent
SIDES = ("vm", "container")


def line(label: str, kind: str, seconds: list[float]) -> str:
    return (f"{label:<14} {kind:<10} median {statistics.median(seconds):.2f} s  "
            f"min {min(seconds):.2f}  max {max(seconds):.2f}  n={len(seconds)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    harness = Harness(HarnessConfig(vagrantfile=ROOT / "Vagrantfile",
                                    dockerfile=ROOT / "Dockerfile",
                                    provision_inputs=(ROOT / "fixtures",)), Progress())
    try:
        harness.start(list(SIDES))
        targets = {kind: harness.get(kind) for kind in SIDES}
        ports = {port for target in targets.values() for port in target.host_ports}
        runs = {kind: runner(target.host) for kind, target in targets.items()}
        for kind, target in targets.items():
            print(f"{kind}: {target.mode.upper()}")
        alone: dict[str, list[float]] = {kind: [] for kind in SIDES}
        both: dict[str, list[float]] = {kind: [] for kind in SIDES}
        trivial: dict[str, list[float]] = {kind: [] for kind in SIDES}
        for _ in range(rounds):
            for kind in SIDES:
                started = time.monotonic()
                runs[kind]("true")
                trivial[kind].append(time.monotonic() - started)
                alone[kind].append(collect.collect(runs[kind], kind, ports=ports).seconds or 0)
            scans = collect.collect_both(runs, {kind: kind for kind in SIDES}, ports=ports)
            for kind, scan in scans.items():
                both[kind].append(scan.seconds or 0)
        for label, figures in (("true", trivial), ("scan alone", alone),
                               ("scan, both", both)):
            for kind in SIDES:
                print(line(label, kind, figures[kind]))
    finally:
        harness.teardown()


if __name__ == "__main__":
    main()
