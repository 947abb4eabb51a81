"""Wall time of the shipped parity suite on both targets, without and with pytest-xdist.

Runs ``pytest --target=both suites/test_parity.py`` from the repository with ``-n 0``,
``-n 2`` and ``-n 4``, interleaved round by round (so a change in the machine's load
hits every variant alike), and prints each variant's median and its ratio to ``-n 0``.
Every run brings the targets up as a user's run does: the VM from the provisioned-VM
cache (one run before the rounds fills it), the container from Docker's build cache.

    .venv/bin/python bench/xdist_wall.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("0", "2", "4")


def run(workers: str) -> float:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--target=both",
               "-n", workers, str(ROOT / "suites" / "test_parity.py")]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                            stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"-n {workers} failed (exit {result.returncode}):\n{result.stdout[-3000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from pytest_vmcontainer.host import accel, bases

    mode = accel.detect(accel.probe_kernel(bases.box_kernel())).mode.upper()
    print(f"warm-up run (fills the VM cache if needed): {run('0'):.1f}s", flush=True)
    seconds: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for round_number in range(args.rounds):
        for variant in VARIANTS:
            seconds[variant].append(run(variant))
            print(f"round {round_number + 1}: -n {variant}: {seconds[variant][-1]:.1f}s",
                  flush=True)
    base = statistics.median(seconds["0"])
    print(f"\nshipped parity suite, --target=both, VM under {mode}, {args.rounds} rounds")
    print(f"{'workers':<8}{'median':>9}{'ratio to -n 0':>15}  rounds")
    for variant in VARIANTS:
        median = statistics.median(seconds[variant])
        rounds = ", ".join(f"{s:.1f}" for s in seconds[variant])
        print(f"-n {variant:<5}{median:>8.1f}s{median / base:>14.2f}x  {rounds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
