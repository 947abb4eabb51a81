"""The scan's rules, as data: what is noise, and which differences come from each target's nature.

``IDENTITY``: values that identify one machine, one boot or one start. They are
dropped from both sides before comparing (and counted), never reported.

``NATURE``: differences that come from what each target is (a VM boots a kernel and
an init and is reached over SSH; Docker generates some files of every container).
They are reported as expected, with the reason. ``only`` says on which side the item
must be the one present ("vm", "container"), or "" for any difference.

Users add rules of their own (``vmc_scan_expect``): one per line, ``CATEGORY GLOB
reason...``; they are checked first. Globs are ``fnmatch`` patterns on the item.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from pytest_vmcontainer.errors import SettingError
from pytest_vmcontainer.scan.model import CATEGORIES


@dataclass(frozen=True)
class Rule:
    category: str
    pattern: str  # fnmatch glob on the item
    reason: str
    only: str = ""  # "vm", "container": the rule holds only when the item is on that side only

    def matches(self, category: str, item: str, vm: str | None, container: str | None) -> bool:
        if category != self.category or not fnmatchcase(item, self.pattern):
            return False
        if self.only == "vm":
            return container is None
        if self.only == "container":
            return vm is None
        return True


_MACHINE = "identifies one machine"
_BOOT = "changes at every boot or service start"
IDENTITY = (
    Rule("file", "/etc/machine-id", _MACHINE),
    Rule("file", "/var/lib/dbus/machine-id", _MACHINE),
    Rule("file", "/etc/hostname", _MACHINE),
    Rule("file", "/etc/ssh/ssh_host_*", "SSH host keys are made for each machine"),
    Rule("file", "/etc/.pwd.lock", "a lock file, written when users change"),
    Rule("file", "/etc/shadow", "holds the day each password last changed"),
    Rule("file", "/etc/*-", "backups of the previous passwd, group and shadow files"),
    Rule("file", "/etc/ld.so.cache", "rebuilt by ldconfig; its bytes follow the install order"),
    Rule("file", "/etc/adjtime", "the clock's drift, written at shutdown"),
    Rule("file", "/var/lib/dhcp/*", "DHCP leases"),
    Rule("file", "/var/lib/systemd/random-seed", _BOOT),
    Rule("file", "/var/log/*", "logs hold timestamps"),
    Rule("environment", "*: INVOCATION_ID", _BOOT),
    Rule("environment", "*: JOURNAL_STREAM", _BOOT),
    Rule("environment", "*: SYSTEMD_EXEC_PID", "a PID"),
    Rule("environment", "*: HOSTNAME", _MACHINE),
    Rule("system", "hostname", _MACHINE),
)

_KERNEL = "the VM boots its own kernel; a container runs on the host's"
_INIT = "the VM boots an init (systemd); a container's PID 1 is its CMD"
_SSH = "Vagrant reaches the VM over SSH"
_AGENT = "libvirt talks to the VM through the guest agent"
_DOCKER_FILES = "Docker generates this file for each container"
_FORWARDING = ("Docker turns IPv4 forwarding on in the host, and a container's network "
               "namespace starts with the host's")
NATURE = (
    Rule("package", "linux-image-*", _KERNEL, "vm"),
    Rule("package", "linux-base", _KERNEL, "vm"),
    Rule("package", "initramfs-tools*", _KERNEL, "vm"),
    Rule("package", "klibc-utils", _KERNEL, "vm"),
    Rule("package", "libklibc", _KERNEL, "vm"),
    Rule("package", "kmod", _KERNEL, "vm"),
    Rule("package", "firmware-*", _KERNEL, "vm"),
    Rule("package", "grub*", "the VM's disk boots through a bootloader", "vm"),
    Rule("package", "systemd*", _INIT, "vm"),
    Rule("package", "udev", _INIT, "vm"),
    Rule("package", "dbus*", _INIT, "vm"),
    Rule("package", "openssh-*", _SSH, "vm"),
    Rule("package", "sudo", "Vagrant's user becomes root with sudo", "vm"),
    Rule("package", "qemu-guest-agent", _AGENT, "vm"),
    Rule("user", "vagrant", "Vagrant's login user", "vm"),
    Rule("group", "vagrant", "Vagrant's login user", "vm"),
    Rule("user", "sshd", _SSH, "vm"),
    Rule("user", "systemd-*", _INIT, "vm"),
    Rule("group", "systemd-*", _INIT, "vm"),
    Rule("user", "messagebus", _INIT, "vm"),
    Rule("group", "messagebus", _INIT, "vm"),
    Rule("port", "tcp *:22", _SSH, "vm"),
    Rule("port", "udp *:68", "the VM's network is set up by DHCP", "vm"),
    Rule("port", "udp 127.0.0.11:*", "Docker's embedded DNS resolver", "container"),
    Rule("port", "tcp 127.0.0.11:*", "Docker's embedded DNS resolver", "container"),
    Rule("process", "systemd* (*)", _INIT, "vm"),
    Rule("process", "(sd-pam) (*)", _INIT, "vm"),
    Rule("process", "init (root)", _INIT, "vm"),
    Rule("process", "(udev-worker) (root)", "udev's short-lived workers for the VM's devices "
         "(a container has no udev)", "vm"),
    Rule("process", "dbus-daemon (*)", _INIT, "vm"),
    Rule("process", "agetty (root)", "login prompts on the VM's consoles", "vm"),
    Rule("process", "sshd (*)", _SSH, "vm"),
    Rule("process", "qemu-ga (root)", _AGENT, "vm"),
    Rule("file", "/etc/hosts", _DOCKER_FILES),
    Rule("file", "/etc/resolv.conf", "Docker writes the container's resolver from the host's; "
         "the VM's comes with its network"),
    Rule("file", "/etc/fstab", "the VM mounts its own disk; Docker mounts a container's"),
    Rule("file", "/etc/ssh*", _SSH, "vm"),
    Rule("file", "/etc/sudoers*", "Vagrant's user becomes root with sudo", "vm"),
    Rule("file", "/etc/kernel*", _KERNEL, "vm"),
    Rule("file", "/etc/initramfs-tools*", _KERNEL, "vm"),
    Rule("file", "/etc/modprobe.d*", _KERNEL, "vm"),
    Rule("file", "/etc/modules*", _KERNEL, "vm"),
    Rule("file", "/etc/udev*", _INIT, "vm"),
    Rule("file", "/etc/dbus-1*", _INIT, "vm"),
    Rule("file", "/etc/qemu*", _AGENT, "vm"),
    Rule("file", "/etc/default/qemu-guest-agent", _AGENT, "vm"),
    Rule("system", "kernel", _KERNEL),
    Rule("system", "resolver *", "Docker writes the container's resolver from the host's; "
         "the VM's comes with its network"),
    Rule("sysctl", "net.ipv4.ping_group_range", "Docker opens ping to every group of a "
         "container's network namespace"),
    Rule("sysctl", "net.ipv4.ip_unprivileged_port_start", "Docker lets a container's users "
         "bind ports below 1024"),
    Rule("sysctl", "net.ipv4.ip_forward", _FORWARDING),
    Rule("sysctl", "net.ipv4.conf.all.forwarding", _FORWARDING),
    Rule("sysctl", "net.ipv6.conf.all.disable_ipv6", "Docker turns IPv6 off in a container "
         "whose network has none"),
)
# What a difference is, when its two values equal those of the bases the targets start from.
FROM_BASES = "from the bases"


def parse_user_rules(lines: Iterable[str], where: str) -> tuple[Rule, ...]:
    """``CATEGORY GLOB reason...`` lines (blank lines and ``#`` comments skipped)."""
    rules = []
    for line in lines:
        words = line.strip().split(None, 2)
        if not words or words[0].startswith("#"):
            continue
        if len(words) < 3 or words[0] not in CATEGORIES:
            raise SettingError(f"{where}: {line.strip()!r} is not 'CATEGORY GLOB reason'",
                               f"write e.g. 'package libfoo* the VM needs it', with a "
                               f"category out of {', '.join(CATEGORIES)}")
        rules.append(Rule(words[0], words[1], words[2]))
    return tuple(rules)


def find(rules: Iterable[Rule], category: str, item: str, vm: str | None,
         container: str | None) -> Rule | None:
    return next((rule for rule in rules if rule.matches(category, item, vm, container)), None)
