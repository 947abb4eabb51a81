"""Where a guest's boot goes: the shipped box booted by QEMU directly, CPU variants interleaved.

Each round boots the box (``pytest-vmcontainer/debian-12``, built here) once per variant on a
throwaway overlay, with the kernel, initrd and command line the box's Vagrantfile gives, 2 vCPU
and 1 GiB, under the accelerator the harness would use. It prints the wall time and QEMU's CPU
time to the first SSH command (CPU time is the steadier figure on a shared host), then what
the guest says of its boot: ``systemd-analyze`` (kernel and userspace) and the critical chain
to ``ssh.service``. Forwarded on 127.0.0.1 only; every overlay is removed.

    .venv/bin/python bench/guest_boot.py [--rounds 3] [--variants qemu64 qemu64,+rdrand]

Under KVM the CPU variants are ignored (``-cpu host``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_vmcontainer.host import accel, bases, boxes
from pytest_vmcontainer.host.ports import free_port

# The shipped box's kernel command line, as its embedded Vagrantfile gives it.
_BOX_CMDLINE = re.search(r'lv\.cmd_line = "([^"]+)"',
                         (bases.PROJECT_BOX.directory / "Vagrantfile").read_text())
assert _BOX_CMDLINE, "data/box/Vagrantfile sets no lv.cmd_line"
CMDLINE = _BOX_CMDLINE[1]
REPORT = ("systemd-analyze | head -1; systemd-analyze critical-chain ssh.service | tail -n +4; "
          "systemctl --failed --no-legend")


def _ssh(key: Path, port: int, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=2", "-o", "LogLevel=ERROR",
         "-o", "BatchMode=yes", "vagrant@127.0.0.1", command],
        capture_output=True, text=True, timeout=timeout, check=False)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def boot(box: Path, disk: Path, cpu: str, mode: str) -> tuple[float, float, str]:
    """(wall s, QEMU CPU s) to the first SSH command, and the guest's own account."""
    port, key = free_port(), box / "vagrant_key"
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", f"pc,accel={mode}", "-cpu", cpu, "-smp", "2",
         "-m", "1024", "-kernel", str(box / "vmlinuz"), "-initrd", str(box / "initrd.img"),
         "-append", CMDLINE, "-drive", f"file={disk},if=virtio,format=qcow2",
         "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
         "-device", "virtio-net-pci,netdev=n0", "-display", "none", "-serial", "null",
         "-monitor", "none"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    started = time.monotonic()
    try:
        while time.monotonic() - started < 300:
            try:
                if _ssh(key, port, "true", 5).returncode == 0:
                    wall, cpu_s = time.monotonic() - started, _cpu_seconds(qemu.pid)
                    return wall, cpu_s, _ssh(key, port, REPORT, 60).stdout.strip()
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.2)
        raise RuntimeError("the guest did not answer SSH within 300 s")
    finally:
        qemu.kill()
        qemu.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["qemu64", "qemu64,+rdrand"],
                        help="QEMU -cpu values to compare under TCG")
    args = parser.parse_args()
    box = boxes.box_dir()
    mode = accel.detect(accel.probe_kernel(box / "vmlinuz")).mode
    variants = args.variants if mode == "tcg" else ["host"]
    print(f"box {box}; {mode.upper()}; 2 vCPU, 1 GiB; {args.rounds} rounds, interleaved")
    results: dict[str, list[tuple[float, float]]] = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory(prefix="guest-boot-") as scratch:
        for round_number in range(1, args.rounds + 1):
            for variant in variants:
                disk = Path(scratch) / "overlay.qcow2"
                disk.unlink(missing_ok=True)
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                                str(box / "box.img"), str(disk)], check=True)
                wall, cpu_s, account = boot(box, disk, variant, mode)
                results[variant].append((wall, cpu_s))
                print(f"\nround {round_number} -cpu {variant}: SSH after {wall:.1f} s wall, "
                      f"{cpu_s:.1f} s QEMU CPU\n{account}", flush=True)
    print("\nvariant                    wall to SSH (s)          QEMU CPU to SSH (s)")
    for variant, figures in results.items():
        walls = ", ".join(f"{wall:.1f}" for wall, _ in figures)
        cpus = ", ".join(f"{cpu_s:.1f}" for _, cpu_s in figures)
        print(f"{variant:<26} {walls:<24} {cpus}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
