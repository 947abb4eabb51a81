"""The VM cache's stretch item, measured by hand: does restoring a saved running VM beat a boot?

This measured the mechanism before the harness used it (it now does: targets/vmsaved.py;
bench/vm_start.py times the harness's restore). Side by side in one run, on the shipped
Vagrantfile (nginx), VM mode printed (KVM or TCG):

  boot      a new VM booted from the VM cache through the harness (no restore), start
            request to HTTP 200
  save      ``virsh save`` of that running, ready VM: its memory to a file
  restore   a new domain from the saved memory on a new qcow2 overlay of the saved disk, with
            new forwards on 127.0.0.1, the guest clock set through the guest agent
            (``virsh domtime --now``), to HTTP 200 through the new forward

For each restored instance it also records what a restored VM would need to be a fresh
target: the values the shipped parity suite records (the same testinfra calls as
``suites/test_parity.py``), compared with the booted VM's; the guest clock's offset from
the host's before and after ``domtime``; and the kernel boot id (a restored VM continues
the saved boot: every instance shares it, and its entropy pool, with the others).

Removes everything it made (restored domains, overlays, the state file, the harness's
session), on success, failure or Ctrl-C.

    .venv/bin/python bench/vm_restore.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pytest_vmcontainer.harness import Harness, HarnessConfig
from pytest_vmcontainer.host import bases, libvirt, paths, setup
from pytest_vmcontainer.host.ports import free_port
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.runtime.waiting import http_ok, wait_for
from pytest_vmcontainer.targets import domainxml
from pytest_vmcontainer.targets.vagrant import VagrantTarget

ROOT = Path(__file__).resolve().parent.parent


def parity_values(host: Any) -> dict[str, Any]:
    """What ``suites/test_parity.py`` records with ``parity.check``, by the same calls."""
    workers = [p for p in host.process.filter(comm="nginx") if p.user == "www-data"]
    info = host.system_info
    values: dict[str, Any] = {
        "nginx version": host.package("nginx").version,
        "worker count": len(workers),
        "listening on tcp 0.0.0.0:80": host.socket("tcp://0.0.0.0:80").is_listening,
        "nginx -t": host.run("nginx -t").stderr.strip(),
        "distribution": info.distribution, "release": info.release,
        "codename": info.codename,
        "PID 1": host.process.get(pid=1).comm,
        "service nginx is_running": host.service("nginx").is_running,
        "kernel release": host.run("uname -r").stdout.strip(),
    }
    for path in ("/etc/nginx/nginx.conf", "/etc/nginx/sites-available/default",
                 "/var/www/html/index.html"):
        values[f"sha256 {path}"] = host.file(path).sha256sum  # fails if the file is missing
    body = host.run("curl -s http://127.0.0.1/").stdout
    values["body sha256"] = hashlib.sha256(body.encode()).hexdigest()
    return values


def guest_facts(host: Any) -> dict[str, Any]:
    now = time.time()
    guest = float(host.run("date +%s.%N").stdout)
    return {"clock_offset_s": guest - now,
            "boot_id": host.file("/proc/sys/kernel/random/boot_id").content_string.strip()}


def connect(ssh_config: Path) -> Any:
    import testinfra

    return testinfra.get_host("paramiko://default", ssh_config=str(ssh_config), sudo=True)


class Restored:
    """One domain restored from the saved state, on its own overlay and forwards."""

    def __init__(self, vm: VagrantTarget, state: Path, disk: Path, scratch: Path, n: int):
        self.name = vm.resource_name
        self.overlay = scratch / f"restored{n}.qcow2"
        self.ssh_config = scratch / f"restored{n}.ssh_config"
        self.ports: dict[int, int] = {}
        self.vm, self.state, self.disk = vm, state, disk

    def xml(self) -> str:
        """The saved domain on the new overlay, with new forwards, as the harness restores it
        (``domainxml.restore_xml``). Its name and UUID stay: libvirt refuses a restore whose
        name or UUID differs from the saved one ("Target domain uuid/name ... does not match
        source"), so one saved state gives one running instance at a time."""
        saved = libvirt.run_virsh("save-image-dumpxml", "--security-info", str(self.state))
        self.ports = {guest: free_port() for guest in (22, *self.vm.spec.guest_ports)}
        return domainxml.restore_xml(saved.stdout, self.overlay, self.ports,
                                   paths.vagrant_home() / "boxes")

    def restore(self) -> dict[str, float]:
        """Seconds for each step, restore request to HTTP 200 through the new forward."""
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                        str(self.disk), str(self.overlay)], check=True)
        definition = self.overlay.with_suffix(".xml")
        definition.write_text(self.xml())
        started = time.perf_counter()
        result = libvirt.run_virsh("restore", str(self.state), "--xml", str(definition))
        if result.returncode != 0:
            raise RuntimeError(f"virsh restore failed: {result.stderr.strip()}")
        restored = time.perf_counter()
        wait_for(http_ok(f"http://127.0.0.1:{self.ports[80]}/"), timeout=120,
                 what="the restored VM's HTTP 200", interval=0.05, max_interval=0.2)
        served = time.perf_counter()
        self.ssh_config.write_text(domainxml.ssh_config_on(
            (self.vm.spec.workdir / "ssh_config").read_text(), self.ports[22],
            paths.vagrant_home() / "boxes"))
        return {"restore_s": restored - started, "to_200_s": served - started}

    def set_clock(self) -> float:
        started = time.perf_counter()
        result = libvirt.run_virsh("domtime", self.name, "--now")
        if result.returncode != 0:
            raise RuntimeError(f"virsh domtime failed: {result.stderr.strip()}")
        return time.perf_counter() - started

    def remove(self) -> None:
        libvirt.run_virsh("destroy", self.name)
        libvirt.run_virsh("undefine", self.name)
        for path in (self.overlay, self.overlay.with_suffix(".xml"), self.ssh_config):
            path.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    setup.ensure_host(Progress())
    bases.ensure_bases(Progress(), None, want_box=True)
    config = HarnessConfig(vagrantfile=ROOT / "Vagrantfile", dockerfile=ROOT / "Dockerfile",
                           provision_inputs=(ROOT / "fixtures",), ready_path="/",
                           vm_restore=False)  # the booted VM this measures restores against
    harness = Harness(config, Progress(write=lambda _line: None))
    restored: list[Restored] = []
    rows: list[dict[str, Any]] = []
    try:
        started = time.perf_counter()
        harness.start(["vm"])
        vm = harness.get("vm")
        assert isinstance(vm, VagrantTarget)
        boot_s = time.perf_counter() - started
        booted = connect(vm.spec.workdir / "ssh_config")
        reference, booted_facts = parity_values(booted), guest_facts(booted)
        booted.backend.client.close()
        print(f"boot (harness, from the VM cache) to 200: {boot_s:.1f}s ({vm.origin})")
        scratch = harness.scratch_dir("restore")
        scratch.chmod(0o755)
        disk, state = vm._disk_path(), scratch / "state.sav"
        started = time.perf_counter()
        saved = libvirt.run_virsh("save", vm.resource_name, str(state))
        save_s = time.perf_counter() - started
        if saved.returncode != 0:
            raise RuntimeError(f"virsh save failed: {saved.stderr.strip()}")
        print(f"save: {save_s:.1f}s, state file {state.stat().st_size / 2**20:.0f} MiB")
        # The saved VM's definition holds the UUID the restored ones must carry; its disk
        # stays (the restored overlays sit on it) and goes with the harness's teardown.
        libvirt.run_virsh("undefine", vm.resource_name, "--nvram")
        for n in range(args.rounds):
            instance = Restored(vm, state, disk, scratch, n)
            restored.append(instance)
            row: dict[str, Any] = instance.restore()
            host = connect(instance.ssh_config)
            row["offset_before_s"] = guest_facts(host)["clock_offset_s"]
            row["domtime_s"] = instance.set_clock()
            facts = guest_facts(host)
            row["offset_after_s"] = facts["clock_offset_s"]
            row["same_boot_id"] = facts["boot_id"] == booted_facts["boot_id"]
            values = parity_values(host)
            row["parity_differs"] = sorted(k for k in reference if values[k] != reference[k])
            host.backend.client.close()
            instance.remove()
            restored.remove(instance)
            rows.append(row)
            print(f"round {n + 1}: {row}", flush=True)
    finally:
        for instance in restored:
            instance.remove()
        harness.teardown()
    print(f"\nVM under {vm.mode.upper()} ({vm.mode_reason}); {args.rounds} rounds, medians")
    print(f"  boot from the VM cache to 200 (harness)   {boot_s:8.1f}s")
    for key in ("restore_s", "to_200_s", "domtime_s", "offset_before_s", "offset_after_s"):
        print(f"  {key:<42}{statistics.median(r[key] for r in rows):8.2f}s")
    print(f"  restore to 200 / boot to 200               "
          f"{statistics.median(r['to_200_s'] for r in rows) / boot_s:8.2f}x")
    print(f"  parity values compared per instance: {len(reference)}")
    print(f"  parity values that differ from the booted VM: "
          f"{sorted({k for r in rows for k in r['parity_differs']}) or 'none'}")
    print(f"  restored VMs share the saved boot id: {all(r['same_boot_id'] for r in rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
