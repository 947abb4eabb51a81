"""The VM on another machine's libvirt (VMC_LIBVIRT_URI=qemu+ssh://), for real.

The other machine is a container of its own running sshd, dockerd, and libvirtd with QEMU
(TCG: it has no /dev/kvm), reached over SSH on 127.0.0.1 only (``enginehost``). The shipped
parity suite passes with both targets on it, and nothing listens beyond loopback on either
machine meanwhile. The VM's disks, its box and its ports are there; this host keeps no VM
disk, cache entry or saved state of the run. A VM provisioned there is cached there, the
next run boots that entry there and saves the ready VM there, and the one after restores it
there. Nothing is left on either side. Each bad libvirt host is one line.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer.host import libvirt, libvirthost, paths
from pytest_vmcontainer.runtime import sshforward
from pytest_vmcontainer.runtime.waiting import http_get, wait_for
from pytest_vmcontainer.targets import vmcache
from pytest_vmcontainer.targets.remote import FORWARDS_RECORD
from tests.integration import enginehost
from tests.integration.conftest import (
    ROOT,
    engines_share,
    error_line,
    page_project,
    run_cli,
    run_process,
)

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module", autouse=True)
def _engines_for_the_module() -> Iterator[None]:
    """The libvirt host lives across this module's tests: no daemon restarts meanwhile."""
    with engines_share(exclusive=False):
        yield


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("keys")
    return {name: enginehost.keypair(directory / name) for name in ("accepted", "refused")}


@pytest.fixture(scope="module")
def libvirt_image(docker_client: Any, docker_base: None,
                  tmp_path_factory: pytest.TempPathFactory) -> str:
    """Kept after the run, as the bases are (``enginehost.build``)."""
    return enginehost.build(docker_client, tmp_path_factory.mktemp("libvirt-image"),
                            libvirt=True)


@pytest.fixture(scope="module")
def libvirt_host(docker_client: Any, libvirt_image: str, keys: dict[str, Path],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[enginehost.EngineHost]:
    """The other machine, with the Debian base loaded into its engine."""
    with enginehost.running(docker_client, libvirt_image, keys["accepted"],
                            tmp_path_factory.mktemp("libvirt-host"), libvirt=True) as host:
        enginehost.preload_base(host)
        yield host


def _env(host: enginehost.EngineHost, key: Path, container_there: bool = True
         ) -> dict[str, str]:
    env = {**host.ssh_env(key), "VMC_LIBVIRT_URI": host.libvirt_uri}
    if not container_there:
        del env["DOCKER_HOST"]
    return env


def _virsh_there(host: enginehost.EngineHost, *args: str) -> list[str]:
    """virsh's output lines there."""
    return host.inside("virsh", "-c", "qemu:///system", *args).splitlines()


def _volumes_there(host: enginehost.EngineHost) -> list[str]:
    """The volumes of every pool there (``vol-list``: two header lines, then name and path)."""
    return [row.split()[0] for pool in _virsh_there(host, "pool-list", "--all", "--name")
            if pool.strip() for row in _virsh_there(host, "vol-list", "--pool", pool)[2:]
            if row.strip()]


def test_the_parity_suite_passes_with_both_targets_on_another_machine(
        libvirt_host: enginehost.EngineHost, keys: dict[str, Path], shipped_vm_entry: None,
        tmp_path: Path, leak_check: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The VM booted there from this host's VM cache entry of the shipped Vagrantfile (its
    disk copied there: no provisioning) and the container built there, both reached through
    ssh forwards: nothing listens beyond loopback on either machine, no key reaches a report
    or a log, the run left nothing there, and nothing of the VM here."""
    report = tmp_path / "report"
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "test_listening.py").write_text(enginehost.LISTENING_CHECK)
    env = _env(libvirt_host, keys["accepted"])
    stale = _stale_copy_there(libvirt_host, env)
    del env["DOCKER_HOST"]  # given as the option: it reaches the SDK, the CLI and the forwards
    result = run_process(
        [sys.executable, "-m", "pytest", "--target=both", "suites/test_parity.py",
         str(tmp_path / "checks"), "-p", "no:cacheprovider", f"--vmc-report={report}",
         f"--vmc-docker-host={libvirt_host.docker_host}", f"--junitxml={report / 'junit.xml'}",
         "--vmc-keep=always"],
        ROOT, timeout=1500, env={**env, "VMC_TEST_ENGINE_HOST": libvirt_host.name})
    _kept_then_destroyed(result.stdout, {**env, "DOCKER_HOST": libvirt_host.docker_host},
                         libvirt_host.libvirt_uri)  # first: a failed run kept them too
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    cases = [case.get("name", "") for case in ET.parse(report / "junit.xml").getroot().iter(
        "testcase") if not [child for child in case if child.tag in ("failure", "error",
                                                                    "skipped")]]
    assert cases.count("test_nothing_listens_beyond_loopback[vm]") == 1, cases
    assert cases.count("test_nothing_listens_beyond_loopback[container]") == 1, cases
    uri = libvirt_host.libvirt_uri
    vm_line = re.search(
        r"^vm: vmc-(\w+)-default \((\w+): on libvirt at (\S+) \(([^)]*)\): (.*)$",
        result.stdout, re.MULTILINE)
    assert vm_line and vm_line.group(3) == uri, result.stdout[-3000:]
    # The versions there, as that host's own virsh says them (the same Debian as here).
    versions_there = libvirthost.versions("\n".join(_virsh_there(libvirt_host, "version")))
    assert set(versions_there) == {"libvirt", "qemu"}, versions_there
    assert vm_line.group(4) == libvirthost.shown_versions(versions_there,
                                                          libvirthost.versions_here())
    assert vm_line.group(2) == "TCG" and "offers no KVM" in vm_line.group(5), vm_line.group(0)
    assert vm_line.group(5).endswith(", from the VM cache)"), vm_line.group(0)
    booted = re.search(r"vagrant up --no-provision \(VM cache (\w+)\)", result.stdout)
    assert booted, result.stdout[-3000:]
    (entry,) = [entry for entry in vmcache.entries() if entry.key.startswith(booted.group(1))]
    with capsys.disabled():  # the VM's steps, timed, and where it ran
        print("", *[line for line in (result.stdout + result.stderr).splitlines()
                    if "] vm: " in line and "done in" in line], vm_line.group(0), sep="\n")
    assert f"(CONTAINER: on the Docker engine at {libvirt_host.docker_host}, up in" in \
        result.stdout
    saved = json.loads((report / "comparison.json").read_text())
    assert saved["host"]["vm_engine"] == uri
    assert saved["host"]["vm_engine_versions"] == vm_line.group(4)
    assert saved["host"]["container_engine"] == libvirt_host.docker_host
    session = vm_line.group(1)
    secret = keys["accepted"].read_text().splitlines()[1]  # a line of the private key
    logs = list((paths.home() / "logs").glob(f"{session}-*"))  # vagrant, the build, ssh
    written = [path for path in report.rglob("*") if path.is_file()]
    assert len(written) >= 4 and len(logs) >= 4, (written, logs)
    assert not [path for path in [*written, *logs] if secret in path.read_text(errors="replace")]
    # There: the box's volume in this home's pool, and nothing of the session.
    there = _volumes_there(libvirt_host)
    assert entry.volume_name() in there, there  # the entry's disk, kept for the next run
    # The copy of an entry gone here went, its boot files too; the booted entry's stay.
    assert stale.name not in there, there
    left = libvirt_host.inside("sh", "-c", f"ls -d {stale} {stale.parent}-boot/* 2>/dev/null "
                               "|| true").split()
    boot_files_of = [f"{stale.parent}-boot/{volume.removesuffix('.img')}"
                     for volume in (stale.name, entry.volume_name())]
    assert str(stale) not in left and boot_files_of[0] not in left, left
    assert boot_files_of[1] in left, left
    domains = [line.strip() for line in _virsh_there(libvirt_host, "list", "--all", "--name")]
    assert not [name for name in there + domains if name.startswith("vmc-")], there
    assert enginehost.owned_there(libvirt_host) == []
    # Here: no cache entry, saved VM or pool volume came of the run (leak_check: no domain).
    assert not [entry for entry in vmcache.entries() if entry.info().get("session") == session]
    assert not [path for path in (vmcache.cache_dir() / "saved").rglob("*.json")
                if session in path.read_text(errors="replace")]
    assert not [volume for volume in libvirt.pool_volumes() if session in volume]
    assert enginehost.forwarders(libvirt_host.port) == []


PAGE_TEST = """
from pytest_vmcontainer.runtime.waiting import http_get


def test_the_page(vm):
    assert http_get(vm.url("/", port=8000)).body.decode().strip() == "{token}"
"""


def test_a_vm_provisioned_there_is_cached_there_and_booted_there_next(
        libvirt_host: enginehost.EngineHost, keys: dict[str, Path], bases: None,
        tmp_path: Path, leak_check: None, capsys: pytest.CaptureFixture[str]) -> None:
    """No entry here or there: the VM is provisioned there and goes on on a new overlay while
    its former disk is flattened there into an entry whose disk stays in the pool there;
    this host keeps only the entry's record (an empty disk), no saved VM and no volume. The
    next run boots that entry there, with no provisioning and nothing copied, and so proves
    it; it saves the ready VM there, and the third run restores it there. The entry removed
    here, without the URI, takes its disk and saved VMs there with it."""
    token = secrets.token_hex(8)  # inputs of this test only: the first run cannot hit
    project = page_project(tmp_path / "project", "pytest-vmcontainer/debian-12", token)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_page.py").write_text(PAGE_TEST.replace("{token}", token))
    env = _env(libvirt_host, keys["accepted"], container_there=False)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target=vm"]
    try:
        first = run_process(argv, project, 1200, env)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
        assert re.search(r"vm: vmc-\w+-default \(.*, provisioned, then cached as \w+ on "
                         r"127\.0\.0\.1\)", first.stdout), first.stdout[-3000:]
        (entry,) = _entries(project)
        assert entry.there == libvirt_host.libvirt_uri
        assert not entry.proven  # written while the tests ran: the next boot proves it
        assert entry.volume_name() in _volumes_there(libvirt_host)
        # Here: the record and an empty disk (beside the box's kernel and initrd, which the
        # VM boots directly); no saved VM, no volume in this host's pool.
        assert max(path.stat().st_size for path in entry.box_root.rglob("*")
                   if path.is_file() and path.name not in ("vmlinuz", "initrd.img")) < 2**20
        assert not vmcache.saved_dir(entry.key).exists()
        assert not [volume for volume in libvirt.pool_volumes() if entry.key in volume]
        # The next run boots that entry there, then saves the ready VM there and goes on
        # restored, as later runs will start.
        second = run_process(argv, project, 1200, env)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-2000:]
        assert f"vagrant up --no-provision (VM cache {entry.key[:12]})" in second.stdout
        slot = re.search(r"vm: saving the ready VM for later runs \((s\w+)\)", second.stdout)
        assert slot, second.stdout[-3000:]
        assert re.search(r"vm: vmc-\w+-default \(.*, restored from the VM cache\)",
                         second.stdout), second.stdout[-3000:]
        assert "Running provis" not in second.stdout
        assert entry.proven
        # Its state and disk are there, beside this home's pool; here only the record.
        saved_there = (f"{libvirt.REMOTE_POOL_ROOT}/{_pool_there(env)}-saved/{entry.key}/"
                       f"{slot.group(1)}")
        assert libvirt_host.inside("ls", saved_there).split() == ["disk.qcow2", "state.sav"]
        kept_here = {path.name for path in vmcache.saved_dir(entry.key).rglob("*")}
        assert kept_here == {slot.group(1), "domain.xml", "saved.json", "ssh_config"}, kept_here
        third = run_process(argv, project, 1200, env)
        assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-2000:]
        assert f"vm: restoring the saved VM ({slot.group(1)}, TCG)" in third.stdout, \
            third.stdout[-3000:]
        assert "vagrant up" not in third.stdout and "restore failed" not in third.stdout
        with capsys.disabled():  # the VM's steps, timed, in the three runs
            print("", *[line for run in (first, second, third)
                        for line in run.stdout.splitlines()
                        if ("] vm: " in line and "done in" in line) or
                        line.startswith("vm: vmc-")], sep="\n")
    finally:
        written = _entries(project)
        with pytest.MonkeyPatch.context() as patch:  # this host's libvirt, that host's ssh
            patch.setenv("PATH", env["PATH"])
            vmcache.remove_entries({entry.key for entry in written})
    assert not _entries(project)
    # Removed by a process on this host's libvirt: its disk and saved VMs there went too.
    there = _volumes_there(libvirt_host)
    assert not [volume for volume in there for entry in written if entry.key in volume], there
    left = libvirt_host.inside("sh", "-c", f"ls {libvirt.REMOTE_POOL_ROOT}/*-saved "
                               "2>/dev/null || true").split()
    assert not [name for name in left for entry in written if entry.key in name], left


def _pool_there(env: dict[str, str]) -> str:
    """This home's pool on the libvirt host (its name depends on the URI)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(libvirt.LIBVIRT_URI_ENV, env["VMC_LIBVIRT_URI"])
        return libvirt.pool_name()


def test_clean_caches_removes_this_homes_pool_there(
        libvirt_host: enginehost.EngineHost, keys: dict[str, Path], own_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner retired for good: ``clean --caches`` with the URI removes this home's pool
    there whole (a volume in it, the boot files beside it, its definition); another pool
    there stays. Its engine is the libvirt host's too, so that the clean touches nothing of
    this machine's engines while other tests run."""
    env = _env(libvirt_host, keys["accepted"])
    with monkeypatch.context() as patch:
        patch.setenv(libvirt.LIBVIRT_URI_ENV, env["VMC_LIBVIRT_URI"])
        name = libvirt.pool_name()
    directory = libvirt.REMOTE_POOL_ROOT / name
    other = "vmc-test-other-runner"
    for pool in (name, other):
        libvirt_host.inside("virsh", "-c", "qemu:///system", "pool-define-as", pool, "dir",
                            "--target", str(libvirt.REMOTE_POOL_ROOT / pool))
        libvirt_host.inside("virsh", "-c", "qemu:///system", "pool-build", pool)
        libvirt_host.inside("virsh", "-c", "qemu:///system", "pool-start", pool)
    try:
        libvirt_host.inside("sh", "-c", f"truncate -s 1M {directory}/copy_box.img && "
                            f"mkdir -p {directory}-boot/copy && "
                            f"virsh -c qemu:///system pool-refresh {name}")
        result = run_cli("clean", "--caches", env=env, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        (removed,) = [line.split("removed: ", 1)[1] for line in result.stderr.splitlines()
                      if "removed: " in line]
        assert f"libvirt pool {name} on 127.0.0.1 (1 volume)" in removed.split(", "), \
            result.stderr
        pools = _virsh_there(libvirt_host, "pool-list", "--all", "--name")
        assert name not in pools and other in pools, pools
        left = libvirt_host.inside("sh", "-c", f"ls -d {directory} {directory}-boot "
                                   "2>/dev/null || true").split()
        assert left == [], left
    finally:
        for pool in (name, other):
            libvirt_host.inside("sh", "-c", f"virsh -c qemu:///system pool-destroy {pool}; "
                                f"virsh -c qemu:///system pool-undefine {pool}; "
                                f"rm -rf {libvirt.REMOTE_POOL_ROOT / pool}* || true")


def _entries(project: Path) -> list[vmcache.Entry]:
    return [entry for entry in vmcache.entries()
            if entry.info().get("vagrantfile") == str(project / "Vagrantfile")]


def _kept_then_destroyed(output: str, env: dict[str, str], uri: str) -> None:
    """The run kept its VM there (``--vmc-keep=always``): ``exec`` reaches it through that host
    (not through the kept ``ssh -L``); without the URI, ``exec`` and ``destroy`` say in one
    line which setting reaches it, and leave it. Once the kept ``ssh -L`` ends, ``list``
    says so and ``forward`` opens it again. With the URI, ``destroy`` removes both kept
    targets, the forward too."""
    session = re.search(r"\bvmc-([0-9a-f]{8})-", output)  # a session id: 8 hex digits
    assert session, output[-3000:]
    try:
        _reached_and_refused(session.group(1), env, uri)
        _forward_reopened(session.group(1), env)
    finally:  # whatever failed: the kept targets go while their host is still there
        destroyed = run_cli("destroy", "--session", session.group(1), env=env, timeout=300)
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr


def _forward_reopened(session: str, env: dict[str, str]) -> None:
    """The kept VM's ``ssh -L`` ends, as a dropped connection or a reboot here ends it:
    ``list`` marks its ports down and names the command, and ``forward`` opens them again on
    the same port of 127.0.0.1, where the kept VM's nginx answers."""
    (record,) = (paths.sessions_dir() / session).glob(f"vm*/{FORWARDS_RECORD}")
    pid = sshforward.recorded_alive(record)
    assert pid is not None, record.read_text()
    os.kill(pid, signal.SIGTERM)  # the ssh the run started, by the id it recorded
    # Ended, reaped or not: a zombie forwards nothing (the init that inherits it may not reap).
    wait_for(lambda: sshforward.recorded_alive(record) is None, timeout=30,
             what="the kept ssh -L to end")
    listed = run_cli("list", env=env, timeout=120)
    port = re.search(rf"^{session}\s+vm\s.*\b80->(\d+).*\(ssh -L down\)", listed.stdout,
                     re.MULTILINE)
    assert port, listed.stdout
    assert f"python -m pytest_vmcontainer forward --session {session}" in listed.stdout
    reopened = run_cli("forward", "--session", session, env=env, timeout=120)
    assert reopened.returncode == 0, reopened.stdout + reopened.stderr
    assert "vm: forwarded again (ssh " in reopened.stdout, reopened.stdout
    assert "container: forwarded already (ssh " in reopened.stdout, reopened.stdout
    assert http_get(f"http://127.0.0.1:{port.group(1)}/").status == 200


def _reached_and_refused(session: str, env: dict[str, str], uri: str) -> None:
    inside = run_cli("exec", "vm", "--session", session, "--", "systemd-detect-virt",
                     env=env, timeout=120)
    assert inside.returncode == 0 and inside.stdout.split() in (["qemu"], ["kvm"]), inside
    here = {key: value for key, value in env.items() if key != "VMC_LIBVIRT_URI"}
    for command in (["exec", "vm", "--session", session, "--", "true"],
                    ["destroy", "--session", session]):
        refused = run_cli(*command, env=here, timeout=120)
        assert refused.returncode != 0, refused
        assert error_line(refused.stderr).endswith(f"run it with VMC_LIBVIRT_URI={uri}"), \
            refused.stderr


def _stale_copy_there(host: enginehost.EngineHost, env: dict[str, str]) -> Path:
    """What a VM cache entry that this host evicted since a run there left there: its disk in
    this home's pool there and its kernel beside it. Returns the volume's path there."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(libvirt.LIBVIRT_URI_ENV, env["VMC_LIBVIRT_URI"])
        pool = libvirt.REMOTE_POOL_ROOT / libvirt.pool_name()
    volume = pool / (f"pytest-vmcontainer-cache-VAGRANTSLASH-{'0' * 24}_vagrant_box_image_0_1_"
                     "box.img")
    boot = Path(f"{pool}-boot") / volume.name.removesuffix(".img")
    host.inside("sh", "-c", f"mkdir -p {pool} {boot} && truncate -s 1M {volume} && "
                f": > {boot}/vmlinuz")
    return volume


BAD_LIBVIRT = {"unreachable": "no SSH server answers there",
               "refused key": "refused every key offered",
               "no libvirt there": "has no virsh"}


@pytest.mark.parametrize("case", list(BAD_LIBVIRT))
def test_a_bad_libvirt_host_is_one_line_and_leaves_nothing(
        case: str, docker_client: Any, libvirt_image: str, keys: dict[str, Path],
        tmp_path: Path, own_home: Path, leak_check: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    with enginehost.bad_host(case, docker_client, libvirt_image, keys, tmp_path,
                             docker=False) as (host, key):
        if case == "no libvirt there":  # sshd alone, and its virsh removed
            host.inside("rm", "-f", "/usr/bin/virsh")
        result = run_cli("up", "--target=vm", env=_env(host, key, container_there=False),
                         timeout=120)
    enginehost.check_one_line_left_nothing(case, result, BAD_LIBVIRT[case], host.libvirt_uri,
                                           host, own_home, capsys)


@pytest.mark.skipif(os.environ.get("VMC_TEST_BENCH") != "1",
                    reason="a measurement, not a check (minutes): VMC_TEST_BENCH=1 runs it")
def test_the_ssh_hop_costs_the_vm(libvirt_host: enginehost.EngineHost, keys: dict[str, Path],
                                  bases: None, tmp_path: Path, record_property: Any,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Bring-up (provisioned on both), a testinfra call and an HTTP GET: the VM on this
    host's libvirt against the libvirt host's, alternating (``bench/remote_hop.py``)."""
    figures = tmp_path / "hop.json"
    result = run_process(
        [sys.executable, str(ROOT / "bench" / "remote_hop.py"), "--kind", "vm", "--rounds",
         "1", "--calls", "10", "--json", str(figures)], ROOT, timeout=1800,
        env=_env(libvirt_host, keys["accepted"], container_there=False))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    with capsys.disabled():
        print(f"\n{result.stdout}", end="")
    record_property("vmc.remote_vm_hop", json.loads(figures.read_text()))
    assert [line for line in _virsh_there(libvirt_host, "list", "--all", "--name")
            if line.startswith("vmc-")] == []
