"""Any libvirt box: a project on a box built the way public boxes are.

The box (``pytest-vmcontainer/debian-12-bootloader``) boots through GRUB from a partitioned
disk, carries no plumbing in its embedded Vagrantfile, and authorizes Vagrant's public
insecure key, which Vagrant replaces at the first boot. Everything that reaches the VM
through 127.0.0.1 comes from the harness's plumbing around it.

The project's provisioner is trivial (a page served by the box's own python3): this test is
about booting and reaching any box, not about apt. The run passes ``--vmc-no-vm-cache``: a
VM started from the provisioned-VM cache logs in with the key saved at its first boot and
skips the provisioners, so it would prove neither the key replacement nor the provisioner.
"""

from __future__ import annotations

import re
import secrets

import pytest

from pytest_vmcontainer.host import bases
from tests.integration.conftest import leftovers, page_project

pytestmark = [pytest.mark.vm, pytest.mark.slow]  # a boot through GRUB, then Vagrant's key swap

CHECKS = """
from pytest_vmcontainer.runtime.waiting import http_get

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


def test_the_provisioned_page_through_the_forward(vm):
    response = http_get(vm.url("/", port=8000))
    assert response.status == 200 and response.body == b"{token}\\n"
"""


def test_a_box_built_like_a_public_box(pytester: pytest.Pytester, bootloader_box: str,
                                       leak_check: None) -> None:
    token = secrets.token_hex(8)
    page_project(pytester.path, bootloader_box, token)
    insecure_key = bases.vagrant_insecure_key().read_text().split()[1]
    pytester.makepyfile(test_box=CHECKS.format(insecure_key=insecure_key, token=token))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--target=vm",
                                           "--vmc-no-vm-cache", timeout=1200)
    result.assert_outcomes(passed=4)
    session = re.search(r"vmc-([0-9a-z]+)-default", result.stdout.str())
    assert session, result.stdout.str()
    assert leftovers(session.group(1)) == []
