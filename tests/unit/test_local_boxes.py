"""The boxes built here: one table, one build mechanism, and the one built like a public box."""

from __future__ import annotations

import argparse
import os
import re
import string
import threading
from pathlib import Path
from typing import Any

import pytest

from pytest_vmcontainer import cli, commands
from pytest_vmcontainer.errors import BuildError
from pytest_vmcontainer.host import bases, setup
from pytest_vmcontainer.runtime import hashing
from pytest_vmcontainer.runtime.progress import Progress, quiet
from pytest_vmcontainer.targets.base import TargetSpec
from pytest_vmcontainer.targets.vagrant import MachineConfig, VagrantTarget

BOOTLOADER = bases.BOOTLOADER_BOX


def test_each_local_box_has_its_own_name_kind_and_recipe() -> None:
    boxes = list(bases.LOCAL_BOXES.values())
    assert [box.name for box in boxes] == [bases.BOX_NAME, bases.BOOTLOADER_BOX_NAME]
    for attribute in ("name", "kind", "directory"):
        assert len({getattr(box, attribute) for box in boxes}) == len(boxes), attribute
    for box in boxes:
        assert os.access(box.directory / "customize.sh", os.X_OK), box.name
        assert (box.directory / "Vagrantfile").is_file(), box.name
        assert box.boot in ("kernel", "bootloader")
        assert box.values()["SUITE"] == bases.recipe()["SUITE"]  # one suite for every base


def test_the_project_box_keeps_its_cache_key() -> None:
    """The box's key is its recipes and the parity scan's collector (its scan of the box's
    files is made with the box), nothing else: the same files give the same key."""
    assert bases.box_recipe_hash() == hashing.content_hash(
        [bases.BASE_RECIPE, bases.BOX_RECIPE, bases.SCAN_COLLECTOR], extra=["box"])[:16]
    assert bases.PROJECT_BOX.values()["BOX_INCLUDE"] == bases.recipe()["BOX_INCLUDE"]
    assert bases.box_dir() == bases.PROJECT_BOX.box_dir()


def test_a_box_recipe_hash_follows_its_own_directory_only(tmp_path: Path) -> None:
    mine, other = tmp_path / "mine", tmp_path / "other"
    for directory in (mine, other):
        directory.mkdir()
        (directory / "customize.sh").write_text("true\n")
    box = bases.BoxRecipe("team/box", "box-team", mine, "kernel")
    first = box.recipe_hash()
    (other / "customize.sh").write_text("false\n")
    assert box.recipe_hash() == first
    (mine / "customize.sh").write_text("echo changed\n")
    assert box.recipe_hash() != first
    assert bases.BoxRecipe("team/box", "box-other", mine, "kernel").recipe_hash() != \
        box.recipe_hash()


def test_the_bootloader_box_embeds_no_plumbing() -> None:
    """What a public box carries: vagrant-libvirt's own `vagrant package` Vagrantfile."""
    embedded = (BOOTLOADER.directory / "Vagrantfile").read_text()
    for plumbing in ("kernel", "initrd", "cmd_line", "qemuargs", "ssh", "network", "forward",
                     "insert_key", "private_key", "mgmt_attach", "ENV", "synced_folder"):
        assert plumbing not in embedded, plumbing
    assert 'libvirt.driver = "kvm"' in embedded


def test_the_bootloader_box_is_made_like_a_public_box() -> None:
    includes = BOOTLOADER.values()["BOX_INCLUDE"].split(",")
    for package in ("grub-pc", "qemu-guest-agent", "sudo", "python3", "openssh-server",
                    "systemd-sysv", "dbus", "ifupdown", "isc-dhcp-client"):
        assert package in includes, package
    customize = (BOOTLOADER.directory / "customize.sh").read_text()
    assert "net.ifnames=0" in customize
    assert re.findall(r"^iface (\S+) inet dhcp$", customize, re.M) == ["eth0"]
    assert "UUID=$root_uuid / ext4" in customize
    assert not any((BOOTLOADER.directory / name).exists() for name in ("vmlinuz", "initrd.img"))


def test_the_project_box_keeps_the_kernels_nic_names() -> None:
    """net.ifnames=0, as the boot-loader box's GRUB line has: no NIC is renamed while
    systemd-networkd starts, a race in which networkd 252 failed a renamed link's DHCP and
    the guest got no IPv4."""
    embedded = (bases.PROJECT_BOX.directory / "Vagrantfile").read_text()
    cmd_line = re.findall(r'^\s*lv\.cmd_line = "([^"]+)"$', embedded, re.M)
    assert len(cmd_line) == 1 and "net.ifnames=0" in cmd_line[0].split(), cmd_line


def test_the_disk_script_installs_grub_on_the_disk_made_here() -> None:
    """The appliance only installs GRUB: the partition and its files are made on the host."""
    template = (BOOTLOADER.directory / "make-disk.fish").read_text()
    script = string.Template(template).substitute(disk="/w/box.img")
    commands = [line.split()[0] for line in script.splitlines()
                if line.strip() and not line.startswith("#")]
    assert commands == ["add-drive", "run", "mount", "command", "command", "umount-all"]
    assert "add-drive /w/box.img format:qcow2" in script
    assert 'command "grub-install --target=i386-pc /dev/sda"' in script


def test_the_insecure_key_is_found_or_the_error_says_how(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    key = tmp_path / "vagrant-2.3.4" / "keys" / "vagrant.pub"
    key.parent.mkdir(parents=True)
    key.write_text("ssh-rsa AAAA vagrant insecure public key\n")
    monkeypatch.setattr(bases, "INSECURE_KEY_GLOBS",
                        (str(tmp_path / "absent-*" / "vagrant.pub"),
                         str(tmp_path / "vagrant-*" / "keys" / "vagrant.pub")))
    assert bases.vagrant_insecure_key() == key
    monkeypatch.setattr(bases, "INSECURE_KEY_GLOBS", (str(tmp_path / "absent-*"),))
    with pytest.raises(BuildError) as raised:
        bases.vagrant_insecure_key()
    assert "insecure key" in raised.value.cause and "setup" in raised.value.remedy


@pytest.mark.parametrize("box", [bases.BOX_NAME, bases.BOOTLOADER_BOX_NAME, "team/other-box"])
def test_prepare_builds_a_box_of_the_table_when_the_config_names_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, box: str) -> None:
    built: list[str] = []
    monkeypatch.setenv("VMC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VMC_ACCEL", "tcg")

    def ensure_box(progress: Progress, rebuild: bool, cancel: threading.Event | None,
                   recipe: bases.BoxRecipe) -> str:
        built.append(recipe.name)
        return recipe.name

    monkeypatch.setattr(bases, "ensure_box", ensure_box)
    machine = MachineConfig.from_json({"name": "default", "box": box, "box_installed": True,
                                       "box_directory": str(tmp_path / "box"),
                                       "project_providers": ["libvirt"],
                                       "qemu_use_agent": True})
    monkeypatch.setattr(VagrantTarget, "read_config", lambda self: machine)
    spec = TargetSpec("s1", tmp_path / "work", tmp_path / "Vagrantfile", tmp_path / "Dockerfile",
                      vm_cache=False)
    target = VagrantTarget(spec, quiet())
    target.prepare()
    assert built == ([] if box == "team/other-box" else [box])
    assert target.local_box == bases.LOCAL_BOXES.get(box)


def test_build_builds_the_boxes_asked_for(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    asked: dict[str, Any] = {}
    monkeypatch.setenv("VMC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VMC_ACCEL", "tcg")
    monkeypatch.setattr(setup, "ensure_host",
                        lambda progress, needs: asked.update(needs=set(needs)))
    monkeypatch.setattr(bases, "ensure_bases",
                        lambda progress, client, **kwargs: asked.update(kwargs))
    lines: list[str] = []

    def build(*argv: str) -> list[str]:
        args = cli.parser().parse_args(["build", "--target=vm", *argv])
        assert isinstance(args, argparse.Namespace)
        commands.cmd_build(args, Progress(write=lines.append))
        return [box.name for box in asked["boxes"]]

    assert build() == [bases.BOX_NAME]
    assert asked["needs"] == {"libvirt"}  # what the VM backend declares (host_needs)
    assert build("--box", bases.BOOTLOADER_BOX_NAME) == [bases.BOOTLOADER_BOX_NAME]
    assert build("--box", bases.BOX_NAME, "--box", bases.BOOTLOADER_BOX_NAME,
                 "--box", bases.BOX_NAME) == [bases.BOX_NAME, bases.BOOTLOADER_BOX_NAME]
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["build", "--box", "debian/bookworm64"])
