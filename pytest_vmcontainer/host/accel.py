"""Which accelerator runs the VM: KVM where it really boots a guest, QEMU TCG otherwise.

``/dev/kvm`` existing proves nothing (a ``kvm_pvm`` host module, for one, cannot
run stock guest kernels), so the probe boots the box's own kernel under KVM with
no root filesystem: a working KVM prints the kernel banner within a second or
two and panics cleanly; a broken one prints nothing. The answer is cached per
host boot, kernel and QEMU binary. ``VMC_ACCEL=kvm|tcg`` overrides the probe.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from pytest_vmcontainer.host import paths
from pytest_vmcontainer.runtime import hashing

ACCEL_ENV = "VMC_ACCEL"
PROBE_SECONDS = 10.0


@dataclass(frozen=True)
class Accel:
    mode: str  # "kvm" or "tcg"
    reason: str

    @property
    def libvirt_driver(self) -> str:
        return "kvm" if self.mode == "kvm" else "qemu"

    @property
    def tcg_cpu_model(self) -> str | None:
        """The guest CPU under emulation: QEMU's own TCG default, whose features the
        emulator runs cheaply; None under KVM, where libvirt's host-model is right."""
        return "qemu64" if self.mode == "tcg" else None

    @property
    def tcg_cpu_features(self) -> tuple[str, ...]:
        """Features added to that model: RDRAND, which TCG emulates, seeds the guest
        kernel's random pool at once (the plumbing Vagrantfile says what it saves)."""
        return ("rdrand",) if self.mode == "tcg" else ()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def probe_kvm(kernel: Path) -> Accel:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Accel("tcg", "/dev/kvm is absent or not accessible")
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return Accel("tcg", "qemu-system-x86_64 not found")
    command = [qemu, "-accel", "kvm", "-m", "256", "-kernel", str(kernel),
               "-append", "console=ttyS0 panic=-1", "-no-reboot", "-display", "none",
               "-nodefaults", "-serial", "stdio", "-monitor", "none"]
    try:
        result = subprocess.run(command, capture_output=True, timeout=PROBE_SECONDS, check=False)
        output = result.stdout + result.stderr
    except subprocess.TimeoutExpired as timeout:
        output = (timeout.stdout or b"") + (timeout.stderr or b"")
    text = output.decode("utf-8", "replace")
    if "Linux version" in text:
        return Accel("kvm", "KVM booted the box kernel")
    if "KVM internal error" in text:
        return Accel("tcg", "KVM cannot run the guest kernel (KVM internal error)")
    return Accel("tcg", f"KVM did not boot the box kernel within {PROBE_SECONDS:.0f}s")


def probe_kernel(*preferred: Path) -> Path | None:
    """A Linux kernel to probe KVM with: the first of ``preferred`` that exists (the box's own),
    else the host's newest in /boot (any stock kernel tells whether KVM boots a guest)."""
    for candidate in preferred:
        if candidate.is_file():
            return candidate
    host = [k for k in sorted(Path("/boot").glob("vmlinuz-*")) if os.access(k, os.R_OK)]
    return host[-1] if host else None


def detect(kernel: Path | None) -> Accel:
    forced = os.environ.get(ACCEL_ENV, "auto").lower()
    if forced in ("kvm", "tcg"):
        return Accel(forced, f"forced by {ACCEL_ENV}={forced}")
    if kernel is None:
        return Accel("tcg", "no guest kernel to probe KVM with (none in the box or in /boot)")
    key = "|".join([_boot_id(), platform.release(), shutil.which("qemu-system-x86_64") or "",
                    hashing.sha256_file(kernel) if kernel.exists() else "no-kernel"])
    cache = paths.ensure_dir(paths.home()) / "accel.json"
    try:
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return Accel(cached["mode"], cached["reason"])
    except (OSError, ValueError, KeyError):
        pass
    accel = probe_kvm(kernel)
    cache.write_text(json.dumps({"key": key, **asdict(accel)}))
    return accel
