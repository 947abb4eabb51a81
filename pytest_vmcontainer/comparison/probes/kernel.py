"""Isolation, OS support and security: what a target's kernel and its processes show."""

from __future__ import annotations

import os
from pathlib import Path

from pytest_vmcontainer.comparison.probes.context import Measured, ProbeContext, run_checked
from pytest_vmcontainer.comparison.results import Figures
from pytest_vmcontainer.targets.base import Target

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


