"""Saved running VMs (targets.vmsaved): the restore definition, slot names and slot locks."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_vmcontainer.errors import Cancelled, TargetError
from pytest_vmcontainer.harness import HarnessConfig
from pytest_vmcontainer.host import paths
from pytest_vmcontainer.targets import domainxml, vagrant, vmcache, vmsaved
from pytest_vmcontainer.targets.base import TargetSpec
from pytest_vmcontainer.targets.vagrant import _RESOURCE_NAME, VagrantTarget
from pytest_vmcontainer.targets.vagrant import restore as restore_module
from pytest_vmcontainer.targets.vagrant.restore import Restore

SAVED = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>vmc-s0123456789abn0-default</name>
  <uuid>6f1c8d52-2c1e-4b7e-9d2a-0d4a1e7f0c11</uuid>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <kernel>/home/sessions/1a2b/vm/vagrant.d/boxes/b-VAGRANTSLASH-k/0/libvirt/vmlinuz</kernel>
    <initrd>/home/sessions/1a2b/vm/vagrant.d/boxes/b-VAGRANTSLASH-k/0/libvirt/initrd.img</initrd>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/pool/vmc-s0123456789abn0-default.img'/>
      <backingStore type='file'><format type='qcow2'/><source file='/pool/box.img'/></backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=f,hostfwd=tcp:127.0.0.1:40001-:22,hostfwd=tcp:127.0.0.1:40002-:80'/>
  </qemu:commandline>
</domain>"""


def test_a_restore_keeps_name_and_uuid_and_moves_disk_and_forwards(tmp_path: Path) -> None:
    xml = domainxml.restore_xml(SAVED, tmp_path / "new.img", {22: 50022, 80: 50080},
                              tmp_path / "boxes")
    assert "<name>vmc-s0123456789abn0-default</name>" in xml
    assert "6f1c8d52-2c1e-4b7e-9d2a-0d4a1e7f0c11" in xml
    assert f"file=\"{tmp_path / 'new.img'}\"" in xml and "backingStore" not in xml
    assert "cache=\"none\"" in xml
    assert "hostfwd=tcp:127.0.0.1:50022-:22,hostfwd=tcp:127.0.0.1:50080-:80" in xml
    assert "40001" not in xml and "40002" not in xml
    assert f"<kernel>{tmp_path}/boxes/b-VAGRANTSLASH-k/0/libvirt/vmlinuz</kernel>" in xml
    assert f"<initrd>{tmp_path}/boxes/b-VAGRANTSLASH-k/0/libvirt/initrd.img</initrd>" in xml


@pytest.mark.parametrize("forwards", [{22: 1, 80: 2, 8080: 3}, {22: 1}])
def test_a_restore_refuses_forwards_other_than_the_saved_ones(tmp_path: Path,
                                                              forwards: dict[int, int]) -> None:
    with pytest.raises(TargetError, match="forward"):
        domainxml.restore_xml(SAVED, tmp_path / "new.img", forwards, tmp_path)


def test_slot_ids_differ_by_entry_and_variant_and_read_as_session_ids() -> None:
    ids = vmsaved.slot_ids("k" * 24, "ports=[22, 80] cache=None driver=qemu")
    assert len(ids) == vmsaved.SLOTS_PER_VARIANT and len(set(ids)) == len(ids)
    assert all(vmsaved.is_slot_id(slot_id) for slot_id in ids)
    assert not set(ids) & set(vmsaved.slot_ids("k" * 24, "ports=[22, 80] cache=none"))
    assert not set(ids) & set(vmsaved.slot_ids("j" * 24, "ports=[22, 80] cache=None driver=qemu"))
    # The sweep reads a domain's session from its name: a slot's domain reads as its slot.
    match = _RESOURCE_NAME.match(f"vmc-{ids[0]}-default")
    assert match is not None and match.group(1) == ids[0]


def test_a_slot_serves_one_run_at_a_time_and_is_left_clean(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path))
    first = vmsaved.take("k" * 24, "v")
    second = vmsaved.take("k" * 24, "v")
    third = vmsaved.take("k" * 24, "v")
    assert first is not None and second is not None and third is None
    assert first[0].id != second[0].id
    assert (paths.sessions_dir() / first[0].id / "lock").exists()
    first[1].release()
    again = vmsaved.take("k" * 24, "v")
    assert again is not None and again[0].id == first[0].id
    for _slot, lock in (again, second):
        lock.release()
    assert not list(paths.sessions_dir().iterdir())  # nothing left for the leak checks


def test_a_slot_is_saved_only_once_committed(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path))
    slot = vmsaved.Slot("k" * 24, vmsaved.slot_ids("k" * 24, "v")[0])
    slot.begin()
    slot.state.write_bytes(b"state")
    slot.disk.write_bytes(b"disk")
    slot.definition.write_text("<domain/>")
    slot.ssh_config.write_text("Host default\n")
    assert not slot.saved()  # an interrupted save is never restored
    slot.commit({"domain": "d"})
    assert slot.saved()
    slot.forget()
    assert not slot.directory.exists()


def test_a_slot_on_another_machine_keeps_its_files_there_and_its_record_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On libvirt on another machine the state and the disk are there, sealed over SSH (a
    stand-in that runs the command here); the record stays here. A disk written to there
    breaks the seal: ``take`` empties the slot, there too. Runners that share that host
    get slots of their own."""
    from pytest_vmcontainer.host import libvirt
    from pytest_vmcontainer.host.libvirthost import LibvirtHost

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text('#!/bin/sh\nfor last; do :; done\nexec sh -c "$last"\n')
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    uri = "qemu+ssh://ci@kvm1/system"
    monkeypatch.setenv(libvirt.LIBVIRT_URI_ENV, uri)
    monkeypatch.setattr(libvirt, "REMOTE_POOL_ROOT", tmp_path / "there")
    there = LibvirtHost.parse(uri)
    taken = vmsaved.take("k" * 24, "v", there=there)
    assert taken is not None
    slot, lock = taken
    assert slot.state.is_relative_to(tmp_path / "there") and slot.disk.parent == slot.state.parent
    slot.begin()
    slot.state.write_bytes(b"state")  # what virsh save writes there
    running = tmp_path / "there" / "vmc-x-default.img"
    running.write_bytes(b"disk")
    slot.keep_disk(running)
    slot.definition.write_text("<domain/>")
    slot.ssh_config.write_text("Host default\n")
    assert not running.exists() and not slot.saved()
    slot.commit({"domain": "d"})
    assert slot.saved() and not (slot.directory / "state.sav").exists()  # nothing large here
    with open(slot.disk, "ab") as disk:
        disk.write(b"!")
    lock.release()
    said: list[str] = []
    again = vmsaved.take("k" * 24, "v", said.append, there)
    assert again is not None and again[0] == slot
    assert "disk.qcow2 has 5 bytes, sealed with 4" in said[0]
    assert not slot.state.parent.exists() and not slot.directory.exists()
    again[1].release()
    monkeypatch.setattr(libvirt, "this_machine", lambda: "runner-2")
    assert slot.id not in vmsaved.slot_ids("k" * 24, "v")


def test_a_slot_there_whose_host_does_not_answer_is_not_trusted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its seal cannot be measured there: the run boots (and saves again) instead of
    restoring what it cannot check, and says why in one line."""
    from pytest_vmcontainer.host.libvirthost import LibvirtHost

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text("#!/bin/sh\necho 'ssh: connect to host kvm1 port 22: "
                                 "Connection timed out' >&2\nexit 255\n")
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    slot = vmsaved.Slot("k" * 24, "s0123456789abn0",
                        LibvirtHost.parse("qemu+ssh://ci@kvm1/system"))
    slot.directory.mkdir(parents=True)
    for name in ("saved.json", "domain.xml", "ssh_config"):
        (slot.directory / name).write_text(json.dumps({"seal": {"state.sav": {"size": 1}}}))
    assert slot.committed()
    assert slot.damage() == ("the saved VM s0123456789abn0 on kvm1: ssh: connect to host kvm1 "
                             "port 22: Connection timed out")
    assert not slot.saved()


def test_an_ssh_config_follows_the_new_forward_and_the_shared_boxes(tmp_path: Path) -> None:
    key = "/h/sessions/1a2b/vm/vagrant.d/boxes/b-VAGRANTSLASH-k/0/libvirt/vagrant_key"
    text = f"Host default\n  Port 40001\n  User vagrant\n  IdentityFile {key}\n"
    assert domainxml.ssh_config_on(text, 50022, tmp_path / "boxes") == (
        f"Host default\n  Port 50022\n  User vagrant\n"
        f"  IdentityFile {tmp_path}/boxes/b-VAGRANTSLASH-k/0/libvirt/vagrant_key\n")


@pytest.mark.parametrize(("settings", "restores"), [
    ({}, True), ({"vm_restore": False}, False), ({"vm_cache": False}, False),
    ({"keep": "on-failure"}, False), ({"reuse": True}, False)])
def test_vms_are_restored_only_when_nothing_outlives_the_run(
        settings: dict[str, object], restores: bool) -> None:
    config = HarnessConfig(vagrantfile=Path("Vagrantfile"), dockerfile=Path("Dockerfile"),
                           **settings)  # type: ignore[arg-type]
    assert config.restores is restores


def test_an_xdist_worker_attaches_to_a_restored_vm_under_its_slots_name(tmp_path: Path) -> None:
    spec = TargetSpec(session_id="1a2b3c4d", workdir=tmp_path / "vm",
                      vagrantfile=tmp_path / "Vagrantfile", dockerfile=tmp_path / "Dockerfile")
    vm = VagrantTarget(spec)
    vm.start_path.slot = vmsaved.Slot("k" * 24, "s0123456789abn0")
    state = json.loads(json.dumps(vm.state()))  # as target.json carries it to the worker
    attached = VagrantTarget.attach(replace(spec, workdir=tmp_path / "worker"), state)
    assert attached.resource_name == vm.resource_name == "vmc-s0123456789abn0-default"
    booted = VagrantTarget(spec)
    assert VagrantTarget.attach(spec, booted.state()).resource_name == "vmc-1a2b3c4d-default"


def _restoring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> tuple[VagrantTarget, Restore, vmsaved.Slot]:
    """A VM about to restore from a slot of entry k..k, the slot's directory begun."""
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path))
    spec = TargetSpec(session_id="1a2b3c4d", workdir=tmp_path / "vm",
                      vagrantfile=tmp_path / "Vagrantfile", dockerfile=tmp_path / "Dockerfile")
    vm = VagrantTarget(spec)
    restore = vm.start_path = Restore(vm, vmcache.Entry("k" * 24))
    slot = restore.slot = vmsaved.Slot("k" * 24, "s0123456789abn0")
    slot.begin()
    return vm, restore, slot


@pytest.mark.parametrize(("error", "kept"), [
    (TargetError("virsh restore failed: error: ...", "remedy"), False),
    (Cancelled("the run was interrupted"), True)])
def test_a_refused_restore_empties_the_slot_and_an_interrupted_one_keeps_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, kept: bool) -> None:
    monkeypatch.setattr(vagrant, "remove_libvirt_leftovers", lambda prefix: [])
    _vm, restore, slot = _restoring(tmp_path, monkeypatch)

    def refuse(slot: vmsaved.Slot) -> None:
        raise error

    monkeypatch.setattr(restore, "_restore_domain", refuse)
    if kept:
        with pytest.raises(Cancelled):
            restore.restored()
    else:
        assert restore.restored() is False  # the caller boots instead
    assert slot.directory.exists() is kept


@pytest.mark.parametrize("frozen", [True, False])
def test_a_state_saved_frozen_is_thawed_before_anything_waits_on_the_guest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frozen: bool) -> None:
    """The state a provisioning run keeps was saved with the guest's file systems frozen
    (its disk became the cache entry); a restore of it thaws them before SSH is waited for,
    and a restore of a state saved from a booted VM does not ask the agent."""
    vm, restore, slot = _restoring(tmp_path, monkeypatch)
    for path in (slot.state, slot.disk, slot.definition, slot.ssh_config):
        path.write_text("x")
    slot.commit({"domain": "d", "frozen": frozen} if frozen else {"domain": "d"})
    calls: list[str] = []
    monkeypatch.setattr(vm, "remove_machine", lambda: calls.append("remove"))

    def resume(*args: object) -> Path:
        calls.append("resume")
        return tmp_path / "boxes"

    monkeypatch.setattr(restore_module, "resume_on_overlay", resume)
    monkeypatch.setattr(vm.domain.__class__, "thaw", lambda self: calls.append("thaw"))
    monkeypatch.setattr(restore, "_adopt_domain", lambda *args: calls.append("adopt"))
    restore._restore_domain(slot)
    assert calls == ["remove", "resume", *(["thaw"] if frozen else []), "adopt"]
