"""The libvirt domain definitions the VM backend starts VMs from without Vagrant.

Vagrant defines a VM's domain once (the provisioning run, or the first boot of a cache
entry). Its definition is kept, and later VMs start from it directly: a saved running
VM is restored under its saved name (``restore_xml``), and a new VM from the VM cache
is defined and booted under a name of its own (``boot_xml``). Either way the disk is a
new copy-on-write overlay, the QEMU user-mode forwards are this VM's ports on
127.0.0.1, and the kernel and initrd are read through this run's ``VAGRANT_HOME``.
"""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree

from pytest_vmcontainer.errors import TargetError

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
_HOSTFWD = re.compile(r"hostfwd=tcp:127\.0\.0\.1:(\d+)-:(\d+)")
_IN_BOXES = re.compile(r"/[^\s\"'<>]*/vagrant\.d/boxes/")  # a box's files in a VAGRANT_HOME
_NETDEV_MAC = re.compile(r"(?<=mac=)[0-9a-fA-F:]{17}")
_REMEDY = "remove the saved state and the VM cache: python -m pytest_vmcontainer clean --caches"


def _parse(xml: str) -> ElementTree.Element:
    ElementTree.register_namespace("qemu", QEMU_NS)
    return ElementTree.fromstring(xml)


def _on_overlay(root: ElementTree.Element, overlay: Path, boxes: Path) -> None:
    """The first disk on ``overlay`` (libvirt reads its chain from the overlay itself), the
    kernel and initrd from ``boxes``."""
    for boot_file in (root.find("./os/kernel"), root.find("./os/initrd")):
        if boot_file is not None and boot_file.text:
            boot_file.text = in_boxes(boot_file.text, boxes)
    disk = root.find("./devices/disk[@device='disk']")
    source = disk.find("source") if disk is not None else None
    if disk is None or source is None:
        raise TargetError("the kept VM definition has no disk", _REMEDY)
    source.set("file", str(overlay))
    for backing in disk.findall("backingStore"):
        disk.remove(backing)


def restore_xml(saved_xml: str, overlay: Path, forwards: dict[int, int], boxes: Path) -> str:
    """The saved domain on a new disk overlay, its QEMU host forwards moved to ``forwards``
    (guest port -> host port on 127.0.0.1), its kernel and initrd read from ``boxes``
    (``in_boxes``). Name and UUID stay: libvirt restores only under them."""
    root = _parse(saved_xml)
    _on_overlay(root, overlay, boxes)

    def moved(match: re.Match[str]) -> str:
        guest = int(match.group(2))
        if guest not in forwards:
            raise TargetError(f"the saved VM forwards guest port {guest}, this one does not",
                              _REMEDY)
        return f"hostfwd=tcp:127.0.0.1:{forwards[guest]}-:{guest}"

    found: set[int] = set()
    for arg in root.iter(f"{{{QEMU_NS}}}arg"):
        value = arg.get("value", "")
        found.update(int(m.group(2)) for m in _HOSTFWD.finditer(value))
        if "hostfwd=" in value:
            arg.set("value", _HOSTFWD.sub(moved, value))
    missing = sorted(set(forwards) - found)
    if missing:
        raise TargetError(f"the saved VM does not forward guest ports {missing}", _REMEDY)
    return ElementTree.tostring(root, encoding="unicode")


def boot_xml(kept_xml: str, name: str, overlay: Path, forwards: dict[int, int], boxes: Path,
             mac: str, driver: str, disk_cache: str | None) -> str:
    """A new domain from a kept definition: named ``name`` (libvirt gives it a new UUID),
    on ``overlay``, with exactly ``forwards`` on 127.0.0.1, the NICs' MAC ``mac``, the
    accelerator ``driver`` (``kvm``/``qemu``) and the disk cache mode ``disk_cache`` (None:
    the hypervisor's default)."""
    root = _parse(kept_xml)
    _on_overlay(root, overlay, boxes)
    root.set("type", driver)
    name_element, uuid = root.find("name"), root.find("uuid")
    if name_element is None:
        raise TargetError("the kept VM definition has no name", _REMEDY)
    name_element.text = name
    if uuid is not None:
        root.remove(uuid)
    driver_element = root.find("./devices/disk[@device='disk']/driver")
    if driver_element is not None:
        if disk_cache:
            driver_element.set("cache", disk_cache)
        else:
            driver_element.attrib.pop("cache", None)
    for nic_mac in root.findall("./devices/interface/mac"):
        nic_mac.set("address", mac)
    rules = "".join(f",hostfwd=tcp:127.0.0.1:{host}-:{guest}"
                    for guest, host in sorted(forwards.items()))
    netdevs = 0
    for arg in root.iter(f"{{{QEMU_NS}}}arg"):
        value = arg.get("value", "")
        if value.startswith("user,") and "hostfwd=" in value:
            kept = ",".join(part for part in value.split(",") if not part.startswith("hostfwd="))
            arg.set("value", kept + rules)
            netdevs += 1
        elif "mac=" in value:
            arg.set("value", _NETDEV_MAC.sub(mac, value))
    if netdevs != 1:
        raise TargetError(f"the kept VM definition has {netdevs} forwarding NICs, not one",
                          _REMEDY)
    return ElementTree.tostring(root, encoding="unicode")


def in_boxes(text: str, boxes: Path) -> str:
    """``text`` with the paths into the saving run's boxes (through its own VAGRANT_HOME,
    gone with it) moved to ``boxes``."""
    return _IN_BOXES.sub(lambda _match: f"{boxes}/", text)


def ssh_config_on(text: str, port: int, boxes: Path) -> str:
    """A saved ``vagrant ssh-config`` with the new SSH forward's port and the box's key
    read from ``boxes``."""
    return in_boxes(re.sub(r"(?m)^(\s*Port\s+)\d+", rf"\g<1>{port}", text), boxes)
