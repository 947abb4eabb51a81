"""libvirt on another machine (``host.libvirthost``): the URI, the ssh command line, what a
failed probe says, and files put there. ssh and virsh are stand-ins on PATH: the stand-in
ssh runs the remote command on this host, in a directory of the test's own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_vmcontainer.errors import HostSetupError
from pytest_vmcontainer.host import libvirt, libvirthost, setup
from pytest_vmcontainer.host.libvirthost import LibvirtHost
from pytest_vmcontainer.runtime.progress import Progress

URI = "qemu+ssh://deploy@kvm1:2222/system?keyfile=/keys/ci&no_tty=1"
# Runs the remote command here (the last argument), or fails as ssh would.
STAND_IN_SSH = """#!/bin/sh
for last; do :; done
if [ -n "$SSH_FAILS" ]; then echo "$SSH_FAILS" >&2; exit "${SSH_STATUS:-255}"; fi
exec sh -c "$last"
"""
# Fails as VIRSH_FAILS says when called here with the URI (libvirt's transport), not there.
STAND_IN_VIRSH = """#!/bin/sh
case "$2" in qemu+ssh:*) if [ -n "$VIRSH_FAILS" ]; then echo "error: $VIRSH_FAILS" >&2; exit 1; fi;;
esac
case "$*" in *" version"*) echo "Compiled against library: libvirt 9.0.0";; esac
echo qemu:///system
"""


@pytest.fixture
def stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("ssh", STAND_IN_SSH), ("virsh", STAND_IN_VIRSH)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(libvirt.LIBVIRT_URI_ENV, URI)
    for name in ("SSH_FAILS", "SSH_STATUS", "VIRSH_FAILS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(libvirthost, "_probed", {})  # no probe of another test remembered
    return bin_dir


def test_the_uri_gives_the_ssh_login() -> None:
    host = LibvirtHost.parse(URI)
    assert host.ssh_destination() == ["-l", "deploy", "-p", "2222", "-i", "/keys/ci", "--",
                                      "kvm1"]
    assert LibvirtHost.parse("qemu+ssh://kvm1/system").ssh_destination() == ["--", "kvm1"]


@pytest.mark.parametrize(("uri", "said"), [
    ("qemu+tcp://kvm1/system", "over tcp: the harness reaches a remote VM's ports only over SSH"),
    ("qemu+ssh://kvm1/session", "names no host, or not its system libvirtd"),
    ("qemu+ssh://kvm1:port/system", "has no valid port"),
])
def test_a_uri_the_vm_cannot_use_is_one_line(uri: str, said: str) -> None:
    with pytest.raises(HostSetupError) as raised:
        LibvirtHost.parse(uri)
    assert said in raised.value.one_line() and "\n" not in raised.value.one_line()


def test_the_probe_answers_the_versions_there(stand_ins: Path) -> None:
    assert libvirthost.require_reachable() == "Compiled against library: libvirt 9.0.0 " \
        "qemu:///system"


# What virsh version said on this Debian 12 host, and on a host of another release.
BOOKWORM = ("Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\n"
            "Using API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.22\n")
NEWER = ("Compiled against library: libvirt 10.0.0\nUsing library: libvirt 10.0.0\n"
         "Using API: QEMU 10.0.0\nRunning hypervisor: QEMU 8.2.2\n"
         "Running against daemon: 10.0.0\n")


def test_the_versions_there_are_read_from_virsh() -> None:
    assert libvirthost.versions(BOOKWORM) == {"libvirt": "9.0.0", "qemu": "7.2.22"}
    assert libvirthost.versions(NEWER) == {"libvirt": "10.0.0", "qemu": "8.2.2"}
    assert libvirthost.versions("error: failed to connect") == {}


@pytest.mark.parametrize(("there", "here", "shown"), [
    (BOOKWORM, {"libvirt": "9.0.0", "qemu": "7.2.22"}, "libvirt 9.0.0, QEMU 7.2.22"),
    (NEWER, {"libvirt": "9.0.0", "qemu": "7.2.22"},
     "libvirt 10.0.0, QEMU 8.2.2; this host has libvirt 9.0.0, QEMU 7.2.22"),
    (NEWER, {"qemu": "8.2.2"}, "libvirt 10.0.0, QEMU 8.2.2"),  # no libvirt here: nothing to say
    (NEWER, {}, "libvirt 10.0.0, QEMU 8.2.2"),  # a runner with neither
    ("", {"qemu": "7.2.22"}, "versions unknown"),
])
def test_a_version_there_that_differs_from_here_is_said(there: str, here: dict[str, str],
                                                         shown: str) -> None:
    shown_now = libvirthost.shown_versions(libvirthost.versions(there), here)
    assert shown_now == shown and "\n" not in shown_now


def test_this_hosts_versions_come_from_its_programs(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "libvirtd").write_text("#!/bin/sh\necho 'libvirtd (libvirt) 9.0.0'\n")
    (bin_dir / "libvirtd").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))  # no qemu-system-x86_64 here
    libvirthost.versions_here.cache_clear()  # read once per process
    try:
        assert libvirthost.versions_here() == {"libvirt": "9.0.0"}
    finally:
        libvirthost.versions_here.cache_clear()


@pytest.mark.parametrize(("failure", "status", "said"), [
    ("deploy@kvm1: Permission denied (publickey).", 255, "refused every key offered"),
    ("ssh: connect to host kvm1 port 2222: Connection refused", 255,
     "cannot reach libvirt at qemu+ssh://deploy@kvm1:2222/system?keyfile=/keys/ci&no_tty=1: "
     "no SSH server answers there"),
    ("Host key verification failed.", 255, "cannot trust libvirt's host"),
    ("sh: 1: virsh: not found", 127, "has no virsh"),
    ("error: failed to connect to the hypervisor", 1, "does not answer"),
])
def test_a_failed_probe_is_one_line_naming_the_cause(
        stand_ins: Path, monkeypatch: pytest.MonkeyPatch, failure: str, status: int,
        said: str) -> None:
    monkeypatch.setenv("SSH_FAILS", failure)
    monkeypatch.setenv("SSH_STATUS", str(status))
    with pytest.raises(HostSetupError) as raised:
        setup.ensure_host(Progress(lambda line: None), needs={"libvirt"})
    line = raised.value.one_line()
    assert said in line and "\n" not in line, line


def test_libvirts_own_transport_failing_is_named(stand_ins: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRSH_FAILS", "Cannot recv data: nc: command not found")
    with pytest.raises(HostSetupError) as raised:
        LibvirtHost.parse(URI).probe()
    assert "libvirt's own SSH transport to" in raised.value.one_line()
    assert "nc: command not found" in raised.value.one_line()


def test_the_accelerator_there_is_what_its_libvirt_offers(
        stand_ins: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = LibvirtHost.parse(URI)
    assert host.accel().mode == "kvm"
    monkeypatch.setenv("VIRSH_FAILS", "unsupported configuration: KVM is not supported")
    accel = host.accel()
    assert accel.mode == "tcg" and "offers no KVM" in accel.reason
    monkeypatch.setenv("VMC_ACCEL", "kvm")
    assert host.accel().mode == "kvm"


def test_a_file_is_put_there_once_whole_with_its_mtime(stand_ins: Path, tmp_path: Path) -> None:
    source = tmp_path / "vmlinuz"
    source.write_bytes(os.urandom(300_000))
    os.utime(source, (1_700_000_000, 1_700_000_000))
    there = tmp_path / "there" / "boxes" / "vmlinuz"
    host = LibvirtHost.parse(URI)
    assert host.put_file(source, str(there))
    assert there.read_bytes() == source.read_bytes()
    assert int(there.stat().st_mtime) == 1_700_000_000
    assert not host.put_file(source, str(there))  # the same size and mtime: not sent again
    assert [p.name for p in there.parent.iterdir()] == ["vmlinuz"]  # no staged copy left


def test_a_failed_put_names_the_file_and_leaves_no_part(stand_ins: Path, tmp_path: Path) -> None:
    source = tmp_path / "box.img"
    source.write_bytes(b"x" * 1000)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory should be")
    with pytest.raises(HostSetupError) as raised:
        LibvirtHost.parse(URI).put_file(source, str(blocked / "pool" / "box.img"))
    assert raised.value.one_line().startswith(f"could not copy box.img to {blocked}")


def test_the_boot_files_there_have_one_path_per_box_build_not_per_session(
        stand_ins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The box's Vagrantfile names its kernel under the session's own Vagrant home (a path of
    this host, new every run): the plumbing names the copy there instead, beside the pool,
    after the box's volume (CI's first remote run booted; the second found no kernel)."""
    from pytest_vmcontainer.targets.vagrant.config import MachineConfig
    from pytest_vmcontainer.targets.vagrant.domain import boot_files_there, booted_box

    monkeypatch.setattr(libvirt, "pool_path", lambda: Path("/var/lib/libvirt/images/p/vmc"))
    box = tmp_path / "boxes" / "team-VAGRANTSLASH-box" / "0" / "libvirt"
    box.mkdir(parents=True)
    for name in ("box.img", "vmlinuz", "initrd.img"):
        (box / name).write_bytes(b"x")
    os.utime(box / "box.img", (1_700_000_000, 1_700_000_000))
    machine = MachineConfig("default", "team/box", True, str(box), ("libvirt",), (), (),
                            False, True)
    there = "/var/lib/libvirt/images/p/vmc-boot/team-VAGRANTSLASH-box_vagrant_box_image_" \
        "0_1700000000_box"
    assert boot_files_there(booted_box(machine, None)) == {
        "kernel": (box / "vmlinuz", f"{there}/vmlinuz"),
        "initrd": (box / "initrd.img", f"{there}/initrd.img")}
    monkeypatch.setenv(libvirt.LIBVIRT_URI_ENV, "qemu:///system")
    assert boot_files_there(booted_box(machine, None)) == {}  # this host's libvirt reads
    # the box's own


def test_a_vm_from_the_cache_boots_the_entrys_disk_and_kernel_there(
        stand_ins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A VM that starts from a VM cache entry on libvirt on another machine: the entry's disk
    (not the base box's) goes into the pool there, and the kernel the entry kept from its
    source box beside it, under the entry's volume name."""
    from pytest_vmcontainer.targets import vmcache
    from pytest_vmcontainer.targets.vagrant.config import MachineConfig
    from pytest_vmcontainer.targets.vagrant.domain import boot_files_there, booted_box

    monkeypatch.setenv("VMC_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(libvirt, "pool_path", lambda: Path("/var/lib/libvirt/images/p/vmc"))
    base = tmp_path / "boxes" / "team-VAGRANTSLASH-box" / "0" / "libvirt"
    entry = vmcache.Entry("e" * 24)
    for directory in (base, entry.directory):
        directory.mkdir(parents=True)
        for name in ("box.img", "vmlinuz", "initrd.img"):
            (directory / name).write_bytes(b"x")
    machine = MachineConfig("default", "team/box", True, str(base), ("libvirt",), (), (),
                            False, True)
    box = booted_box(machine, entry)
    assert box is not None and box.image == entry.directory / "box.img"
    assert box.volume_name == entry.volume_name()
    there = f"/var/lib/libvirt/images/p/vmc-boot/{entry.volume_name().removesuffix('.img')}"
    assert boot_files_there(box) == {
        "kernel": (entry.directory / "vmlinuz", f"{there}/vmlinuz"),
        "initrd": (entry.directory / "initrd.img", f"{there}/initrd.img")}
    started_here = booted_box(machine, None)  # no entry: the machine's own box
    assert started_here is not None and started_here.image == base / "box.img"


def test_the_copies_there_of_boxes_gone_here_are_removed(
        stand_ins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A box rebuilt here, or a VM cache entry evicted: its volume and boot files there go
    at the next start there (or ``clean --caches``); the boxes still here, a session's disk
    and whatever is not a box stay."""
    from pytest_vmcontainer.host import paths
    from pytest_vmcontainer.targets.vagrant.domain import (
        box_volumes_here,
        remove_copies_of_gone_boxes,
    )

    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    pool = tmp_path / "there" / "pool"
    monkeypatch.setattr(libvirt, "pool_path", lambda: pool)
    for escaped, mtime in (("pytest-vmcontainer-VAGRANTSLASH-debian-12", 1_700_000_001),
                           (f"pytest-vmcontainer-cache-VAGRANTSLASH-{'a' * 24}", 1_700_000_002)):
        box = paths.vagrant_home() / "boxes" / escaped / "0" / "libvirt"
        box.mkdir(parents=True)
        (box / "box.img").write_bytes(b"x")
        os.utime(box / "box.img", (mtime, mtime))
    kept = sorted(box_volumes_here())
    assert kept == ["pytest-vmcontainer-VAGRANTSLASH-debian-12_vagrant_box_image_0_1700000001_"
                    "box.img", f"pytest-vmcontainer-cache-VAGRANTSLASH-{'a' * 24}_vagrant_box_"
                    "image_0_1700000002_box.img"]
    gone = ["pytest-vmcontainer-VAGRANTSLASH-debian-12_vagrant_box_image_0_1600000000_box.img",
            f"pytest-vmcontainer-cache-VAGRANTSLASH-{'b' * 24}_vagrant_box_image_0_17_box.img"]
    volumes = [*kept, *gone, "vmc-1a2b3c4d-default.img"]
    deleted: list[str] = []
    monkeypatch.setattr(libvirt, "pool_volumes", lambda: volumes)
    monkeypatch.setattr(libvirt, "delete_volume", deleted.append)
    boot = tmp_path / "there" / "pool-boot"
    for volume in (kept[0], gone[0]):
        (boot / volume.removesuffix(".img")).mkdir(parents=True)
        (boot / volume.removesuffix(".img") / "vmlinuz").write_bytes(b"k")
    import subprocess

    ended = subprocess.Popen(["true"])  # a pid that no live run has now
    ended.wait()
    writing, abandoned = (boot / f".entry-{'c' * 24}-{pid}" for pid in (os.getpid(), ended.pid))
    writing.write_bytes(b"d")  # an entry's disk, written there by a live run of this machine
    abandoned.write_bytes(b"d")  # by a run killed meanwhile
    assert remove_copies_of_gone_boxes(LibvirtHost.parse(URI)) == gone
    assert deleted == gone
    assert sorted(path.name for path in boot.iterdir()) == [writing.name,
                                                            kept[0].removesuffix(".img")]


def test_a_runner_has_its_own_pool_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runners that share a libvirt host, each with the default home, have a pool each
    there: one's removals never take the other's boxes. This host's pool is the home's."""
    here = libvirt.pool_name()
    monkeypatch.setenv(libvirt.LIBVIRT_URI_ENV, URI)
    pools = set()
    for runner in ("runner-1", "runner-2"):
        monkeypatch.setattr(libvirt, "this_machine", lambda runner=runner: runner)
        pools.add(libvirt.pool_name())
    assert len(pools) == 2 and here not in pools
    assert all(pool.startswith(libvirt.POOL_PREFIX) for pool in pools)
    monkeypatch.delenv(libvirt.LIBVIRT_URI_ENV)
    assert libvirt.pool_name() == here


def test_a_kept_vm_there_is_reached_through_that_host(
        stand_ins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """login and exec of a VM there go through the libvirt host to QEMU's forward on that
    host's 127.0.0.1 (``-W``), with the guest's own ssh config, not through the kept VM's
    ``ssh -L`` (which a dropped connection ends); this host's libvirt keeps ``vagrant ssh``."""
    from pytest_vmcontainer.targets.base import TargetSpec
    from pytest_vmcontainer.targets.vagrant import VagrantTarget
    from pytest_vmcontainer.targets.vagrant.hostforwards import login_argv

    spec = TargetSpec(session_id="1a2b3c4d", workdir=tmp_path / "vm",
                      vagrantfile=tmp_path / "Vagrantfile", dockerfile=tmp_path / "Dockerfile")
    spec.workdir.mkdir()
    vm = VagrantTarget(spec)
    vm.ssh_config_path.write_text("Host default\n  HostName 127.0.0.1\n  Port 2201\n")
    proxy = ("ProxyCommand=ssh -o BatchMode=yes -l deploy -p 2222 -i /keys/ci -W %h:%p -- "
             "kvm1")
    assert login_argv(vm, ["uname", "-a"]) == [
        "ssh", "-F", str(vm.ssh_config_path), "-o", proxy, "-T", "default", "uname -a"]
    assert login_argv(vm, None) == ["ssh", "-F", str(vm.ssh_config_path), "-o", proxy, "-t",
                                    "default"]
    monkeypatch.setenv(libvirt.LIBVIRT_URI_ENV, "qemu:///system")
    assert login_argv(vm, None) is None


def test_a_long_command_there_ends_when_its_stdin_does() -> None:
    """``run_long``'s shell line (``ends_with_stdin``), here: it answers the program's status,
    returns as soon as the program ends, and kills the program once its stdin (the pipe the
    run holds, over ssh) closes, as when the run is stopped or killed."""
    import subprocess

    for program, status in ((["true"], 0), (["false"], 1)):
        # stdin held open until the program has ended, as the run holds it: closed at once
        # (subprocess.run does), it races the program and may kill it first (143).
        with subprocess.Popen(["sh", "-c", libvirthost.ends_with_stdin(program)],
                              stdin=subprocess.PIPE) as done:
            assert done.wait(timeout=30) == status
    with subprocess.Popen(["sh", "-c", libvirthost.ends_with_stdin(["sleep", "600"])],
                          stdin=subprocess.PIPE) as running:
        assert running.stdin is not None
        with pytest.raises(subprocess.TimeoutExpired):
            running.wait(timeout=1)  # the pipe is open: the program runs
        running.stdin.close()
        assert running.wait(timeout=30) != 0  # killed, not ended by itself


def _disk(path: Path, size: str) -> Path:
    import subprocess

    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


def _virtual_size(path: Path) -> int:
    import json
    import subprocess

    return int(json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                                         capture_output=True, text=True,
                                         check=True).stdout)["virtual-size"])


def test_a_vm_cache_entry_written_there_keeps_its_disk_there(
        stand_ins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A VM provisioned on libvirt on another machine: qemu-img flattens its disk there,
    into this home's pool there; here the entry holds an empty disk of the same virtual
    size (the box's image, which names the volume) and records where the disk is and its
    bytes, in the cache's budget. Once the disk is gone there, the entry is no hit."""
    from pytest_vmcontainer.host import paths
    from pytest_vmcontainer.targets import entrywrite, vmcache

    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    pool = tmp_path / "there" / "pool"
    pool.mkdir(parents=True)
    monkeypatch.setattr(libvirt, "pool_path", lambda: pool)
    monkeypatch.setattr(libvirt, "pool_volumes", lambda: sorted(p.name for p in pool.iterdir()))
    monkeypatch.setattr(libvirt, "delete_volume", lambda name: (pool / name).unlink())
    disk = _disk(tmp_path / "there" / "vm.qcow2", "64M")
    remote = LibvirtHost.parse(URI)
    key = vmcache.there_key("a" * 24, "kvm1:2222")
    with entrywrite.Writer(key, None, tmp_path / "log", remote) as writer:
        writer.add_disk(disk)
        writer.add_box_files(None)
        entry = writer.commit({"proven": True}, budget_bytes=2**40)
    assert entry.there == remote.shown
    volume = pool / entry.volume_name()
    assert [p.name for p in pool.iterdir()] == [volume.name]  # nothing staged is left
    assert not list(Path(f"{pool}-boot").iterdir())
    assert _virtual_size(volume) == _virtual_size(entry.directory / "box.img") == 64 * 2**20
    assert (entry.directory / "box.img").stat().st_size < 2**20  # empty: no disk came here
    there_bytes = entry.info()["there_bytes"]
    assert there_bytes > 0 and vmcache.disk_bytes(entry) > there_bytes
    assert vmcache.lookup(key) == entry
    volume.unlink()
    said: list[str] = []
    assert vmcache.lookup(key, said.append) is None
    assert "its disk is gone from the pool at qemu+ssh://" in said[0]
    assert not entry.box_root.exists()


@pytest.mark.parametrize("reachable", [True, False])
def test_an_entry_written_there_takes_its_disk_there_when_removed_from_here(
        stand_ins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        reachable: bool) -> None:
    """``clean`` (or an eviction) in a run on this host's libvirt removes an entry written
    on another machine: its disk, boot files and saved VMs there go too, by the URI the
    entry recorded; an unreachable host leaves them, and the clean says so in its line."""
    from pytest_vmcontainer.host import paths
    from pytest_vmcontainer.targets import entrywrite, vmcache

    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setattr(libvirt, "REMOTE_POOL_ROOT", tmp_path / "there")
    pool = tmp_path / "there" / libvirt.pool_name(URI)
    pool.mkdir(parents=True)
    monkeypatch.setattr(libvirt, "pool_path", lambda: pool)
    key = vmcache.there_key("a" * 24, "kvm1:2222")
    with entrywrite.Writer(key, None, tmp_path / "log", LibvirtHost.parse(URI)) as writer:
        writer.add_disk(_disk(tmp_path / "vm.qcow2", "16M"))
        writer.add_box_files(None)
        entry = writer.commit({"proven": True}, budget_bytes=2**40)
    volume = pool / entry.volume_name()
    boot = Path(f"{pool}-boot") / volume.name.removesuffix(".img")
    boot.mkdir(parents=True)  # the kernel a boot there put beside the pool
    other = pool / "pytest-vmcontainer-VAGRANTSLASH-debian-12_vagrant_box_image_0_1_box.img"
    other.write_bytes(b"x")  # a base box's copy there: not the entry's
    saved = Path(f"{pool}-saved") / key / "s0123456789abn0"
    saved.mkdir(parents=True)
    (saved / "state.sav").write_bytes(b"s")  # a saved VM of the entry, there
    monkeypatch.delenv(libvirt.LIBVIRT_URI_ENV)  # a later run on this host's libvirt
    monkeypatch.setattr(libvirt, "pool_volumes", lambda: [])
    if not reachable:
        monkeypatch.setenv("SSH_FAILS", "ssh: connect to host kvm1 port 2222: No route to host")
    removed = vmcache.remove_all()
    assert not entry.box_root.exists()
    if reachable:
        assert removed == [f"vm cache {key}"]
        assert [path.name for path in pool.iterdir()] == [other.name]
        assert not boot.exists() and not saved.parent.exists()
    else:
        assert removed == [f"vm cache {key} (its disk stays on kvm1 (ssh: connect to host "
                           "kvm1 port 2222: No route to host))"]
        assert volume.exists() and boot.exists() and saved.exists()


def test_a_failed_write_there_is_one_line_and_leaves_nothing(
        stand_ins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_vmcontainer.errors import TargetError
    from pytest_vmcontainer.host import paths
    from pytest_vmcontainer.targets import entrywrite

    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    pool = tmp_path / "there" / "pool"
    pool.mkdir(parents=True)
    monkeypatch.setattr(libvirt, "pool_path", lambda: pool)
    with entrywrite.Writer("b" * 24, None, tmp_path / "log", LibvirtHost.parse(URI)) as writer:
        with pytest.raises(TargetError) as raised:
            writer.add_disk(tmp_path / "no-such-disk")
        assert not writer.partial.exists()
    assert raised.value.one_line().startswith(
        "qemu-img on kvm1 could not copy the provisioned disk into the VM cache there")
    assert not list(pool.iterdir()) and not list(Path(f"{pool}-boot").iterdir())


def test_clean_caches_removes_this_homes_pool_there_once_no_run_lives(
        stand_ins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``clean --caches`` with the URI: while a run of this home lives, only the copies of
    boxes gone here go; with none, the pool there goes whole (its volumes, the boot files
    beside it, its definition), so that a retired runner leaves nothing there."""
    from pytest_vmcontainer import targets
    from pytest_vmcontainer.host import paths

    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    pool = tmp_path / "there" / "pool"
    boot = Path(f"{pool}-boot") / "pytest-vmcontainer-VAGRANTSLASH-debian-12_box"
    boot.mkdir(parents=True)
    pool.mkdir()
    copy = pool / "pytest-vmcontainer-VAGRANTSLASH-debian-12_vagrant_box_image_0_1_box.img"
    copy.write_bytes(b"x")
    monkeypatch.setattr(libvirt, "pool_path", lambda: pool)
    monkeypatch.setattr(libvirt, "pool_volumes",
                        lambda: sorted(path.name for path in pool.iterdir()))
    monkeypatch.setattr(libvirt, "delete_volume", lambda name: (pool / name).unlink())
    undefined: list[str] = []
    monkeypatch.setattr(libvirt, "remove_storage_pool",
                        lambda: undefined.append(libvirt.pool_name()))
    overlay = pool / "vmc-1a2b3c4d-default.img"  # a live run's VM's disk
    overlay.write_bytes(b"x")
    assert targets.clean_caches(live_runs=1) == [copy.name]  # a box this home no longer has
    assert overlay.exists() and undefined == []
    assert targets.clean_caches(live_runs=0) == [
        f"libvirt pool {libvirt.pool_name()} on kvm1 (1 volume)"]
    assert undefined == [libvirt.pool_name()]
    assert not pool.exists() and not boot.parent.exists()
