"""Pools of homes that are gone are undefined; every other pool is left alone (no libvirt)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pytest_vmcontainer.host import libvirt, paths


def test_only_pools_of_our_prefix_whose_home_is_gone_go(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    alive = tmp_path / "other-home" / "libvirt-pool"
    alive.mkdir(parents=True)
    pools = {libvirt.pool_name(): tmp_path / "home" / "libvirt-pool",  # ours: never judged
             "pytest-vmcontainer-aaaaaaaaaaaa": tmp_path / "gone-home" / "libvirt-pool",
             "pytest-vmcontainer-bbbbbbbbbbbb": alive,
             "default": tmp_path / "missing-but-not-ours"}
    calls: list[tuple[str, ...]] = []

    def fake_virsh(*args: str) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        out = ""
        if args[0] == "pool-list":
            out = "\n".join(pools) + "\n"
        elif args[0] == "pool-dumpxml":
            out = f"<pool><target><path>{pools[args[1]]}</path></target></pool>"
        return subprocess.CompletedProcess(list(args), 0, out, "")

    monkeypatch.setattr(libvirt, "run_virsh", fake_virsh)
    removed = libvirt.remove_pools_of_gone_homes()
    assert removed == ["libvirt pool pytest-vmcontainer-aaaaaaaaaaaa "
                       f"(its home {tmp_path / 'gone-home'} is gone)"]
    changed = [call for call in calls if call[0] in ("pool-destroy", "pool-undefine")]
    assert changed == [("pool-destroy", "pytest-vmcontainer-aaaaaaaaaaaa"),
                       ("pool-undefine", "pytest-vmcontainer-aaaaaaaaaaaa")]
