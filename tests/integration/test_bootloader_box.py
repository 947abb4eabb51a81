"""Any libvirt box: the shipped parity suite on a box built the way public boxes are.

The box (``pytest-vmcontainer/debian-12-bootloader``) boots through GRUB from a partitioned
disk, carries no plumbing in its embedded Vagrantfile, and authorizes Vagrant's public
insecure key, which Vagrant replaces at the first boot. Everything that reaches the VM
through 127.0.0.1 comes from the harness's plumbing around it.

The run passes ``--vmc-no-vm-cache``: a VM started from the provisioned-VM cache logs in with
the key saved at its first boot and skips the provisioners, so it would prove neither the
key replacement nor that the shipped provisioning works on this box. Every run provisions.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_vmcontainer.host import bases
from tests.integration.conftest import ROOT, leftovers, write_project

PYPROJECT = str(ROOT / "pyproject.toml")

# Checks of the box itself, next to the unchanged parity suite.
BOX_CHECKS = """
INSECURE_KEY = {insecure_key!r}


def test_booted_through_grub_from_a_partition(vm):
    cmdline = vm.host.file("/proc/cmdline").content_string
    assert "BOOT_IMAGE=/boot/vmlinuz-" in cmdline, cmdline  # GRUB's; a direct boot has none
    assert "net.ifnames=0" in cmdline, cmdline
    assert vm.host.mount_point("/").device == "/dev/vda1"
    assert vm.run("test -e /boot/grub/grub.cfg && test -e /boot/grub/i386-pc/core.img").rc == 0


def test_vagrant_replaced_the_insecure_key_at_first_boot(vm):
    keys = vm.run("cat /home/vagrant/.ssh/authorized_keys").stdout
    assert keys.strip(), "no authorized key left"
    assert INSECURE_KEY not in keys


def test_eth0_is_the_nic_the_harness_forwards_through(vm):
    assert "inet 10.0.3." in vm.run("ip -4 -o addr show dev eth0").stdout
"""


def test_parity_suite_on_a_box_built_like_a_public_box(
        pytester: pytest.Pytester, tmp_path: Path, bootloader_box: str,
        leak_check: None) -> None:
    shipped = (ROOT / "Vagrantfile").read_text()
    vagrantfile = shipped.replace(f'config.vm.box = "{bases.BOX_NAME}"',
                                  f'config.vm.box = "{bootloader_box}"')
    assert vagrantfile != shipped and vagrantfile.count(bootloader_box) == 1
    project = write_project(tmp_path / "project", vagrantfile=vagrantfile)
    insecure_key = bases.vagrant_insecure_key().read_text().split()[1]
    checks = pytester.makepyfile(test_box=BOX_CHECKS.format(insecure_key=insecure_key))
    result = pytester.runpytest_subprocess(
        str(ROOT / "suites" / "test_parity.py"), str(checks), "-c", PYPROJECT, "--rootdir",
        str(ROOT), "-p", "no:cacheprovider", "--target=vm", "--vmc-no-vm-cache",
        f"--vagrantfile={project / 'Vagrantfile'}",
        f"--vmc-provision-inputs={project / 'fixtures'}", timeout=1800)
    result.assert_outcomes(passed=15)
    output = result.stdout.str()
    result.stdout.fnmatch_lines(["*vmcontainer parity matrix*",
                                 "test_parity.py::test_nginx_installed_same_version*passed*"])
    assert "DIFFERS" not in output
    session = re.search(r"vmc-([0-9a-z]+)-default", output)
    assert session, output
    assert leftovers(session.group(1)) == []
