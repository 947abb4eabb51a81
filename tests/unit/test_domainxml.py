"""A new VM from a kept libvirt definition (``domainxml.boot_xml``)."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest

from pytest_vmcontainer.errors import TargetError
from pytest_vmcontainer.targets import domainxml

NETDEV = ("user,id=vmcfwd,net=10.0.3.0/24,hostfwd=tcp:127.0.0.1:40001-:22,"
          "hostfwd=tcp:127.0.0.1:40002-:80")
KEPT = f"""<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>vmc-1a2b3c4d-default</name>
  <uuid>6f1c8d52-2c1e-4b7e-9d2a-0d4a1e7f0c11</uuid>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <kernel>/home/sessions/1a2b3c4d/vm/vagrant.d/boxes/b-VAGRANTSLASH-k/0/libvirt/vmlinuz</kernel>
    <initrd>/home/sessions/1a2b3c4d/vm/vagrant.d/boxes/b-VAGRANTSLASH-k/0/libvirt/initrd.img</initrd>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='default'/>
      <source file='/pool/vmc-1a2b3c4d-default.img'/>
      <backingStore type='file'><format type='qcow2'/><source file='/pool/box.img'/></backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='user'>
      <mac address='52:54:00:aa:bb:cc'/>
      <model type='virtio'/>
    </interface>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='{NETDEV}'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=vmcfwd,mac=52:54:00:aa:bb:cc,bus=pci.0,addr=0x10'/>
  </qemu:commandline>
</domain>"""
Q = "{http://libvirt.org/schemas/domain/qemu/1.0}"


def _boot(tmp_path: Path, forwards: dict[int, int], disk_cache: str | None = None,
          kept: str = KEPT) -> ElementTree.Element:
    xml = domainxml.boot_xml(kept, "vmc-99887766-default", tmp_path / "new.img", forwards,
                             tmp_path / "boxes", "52:54:00:01:02:03", "kvm", disk_cache)
    return ElementTree.fromstring(xml)


def test_a_boot_gets_a_name_of_its_own_and_a_new_uuid(tmp_path: Path) -> None:
    root = _boot(tmp_path, {22: 50022, 80: 50080})
    assert root.findtext("name") == "vmc-99887766-default"
    assert root.find("uuid") is None  # libvirt makes one at define
    assert root.get("type") == "kvm"


def test_a_boot_runs_on_the_overlay_with_this_vms_forwards_mac_and_kernel(tmp_path: Path) -> None:
    root = _boot(tmp_path, {80: 50080, 22: 50022, 8080: 50088})  # any ports, any order
    disk = root.find("./devices/disk")
    assert disk is not None and disk.find("backingStore") is None
    assert disk.find("source").get("file") == str(tmp_path / "new.img")  # type: ignore[union-attr]
    args = [arg.get("value") for arg in root.iter(f"{Q}arg")]
    assert args[1] == ("user,id=vmcfwd,net=10.0.3.0/24,hostfwd=tcp:127.0.0.1:50022-:22,"
                       "hostfwd=tcp:127.0.0.1:50080-:80,hostfwd=tcp:127.0.0.1:50088-:8080")
    assert "mac=52:54:00:01:02:03," in str(args[3])
    assert root.find("./devices/interface/mac").get("address") == "52:54:00:01:02:03"  # type: ignore[union-attr]
    assert root.findtext("./os/kernel") == f"{tmp_path}/boxes/b-VAGRANTSLASH-k/0/libvirt/vmlinuz"


@pytest.mark.parametrize(("asked", "expected"), [("none", "none"), (None, None)])
def test_a_boot_runs_with_the_disk_cache_mode_asked_for(tmp_path: Path, asked: str | None,
                                                        expected: str | None) -> None:
    driver = _boot(tmp_path, {22: 1}, asked).find("./devices/disk/driver")
    assert driver is not None and driver.get("cache") == expected


def test_a_definition_without_the_forwarding_nic_is_refused(tmp_path: Path) -> None:
    kept = KEPT.replace(NETDEV, "user,id=vmcfwd,net=10.0.3.0/24")
    with pytest.raises(TargetError, match="0 forwarding NICs"):
        _boot(tmp_path, {22: 1}, kept=kept)
