#!/bin/sh
# Turns a debootstrapped root filesystem into a guest the way public Debian boxes are made
# (debian/bookworm64, generic/debian12): booted by GRUB from its own disk, eth0 by DHCP,
# and Vagrant's public insecure key, which Vagrant replaces at the first boot.
# Usage: customize.sh ROOTFS INSECURE_PUBLIC_KEY ROOT_FS_UUID
set -eu
rootfs=$1
pubkey=$2
root_uuid=$3
hostname=bookworm

echo "$hostname" > "$rootfs/etc/hostname"
cat > "$rootfs/etc/hosts" <<HOSTS
127.0.0.1 localhost
127.0.1.1 $hostname
::1 localhost ip6-localhost ip6-loopback
HOSTS
echo "UUID=$root_uuid / ext4 defaults,errors=remount-ro 0 1" > "$rootfs/etc/fstab"

# The kernel command line GRUB gives: net.ifnames=0 keeps the first NIC eth0, as the
# network config below expects; a serial console for the QEMU log.
mkdir -p "$rootfs/etc/default/grub.d"
cat > "$rootfs/etc/default/grub.d/50-vagrant-box.cfg" <<GRUB
GRUB_TIMEOUT=1
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="net.ifnames=0 biosdevname=0 console=tty0 console=ttyS0,115200n8"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
GRUB
# A later grub-pc upgrade inside the VM reinstalls GRUB on the VM's disk.
echo "grub-pc grub-pc/install_devices multiselect /dev/vda" | chroot "$rootfs" debconf-set-selections

# eth0 only, by DHCP (ifupdown), as public boxes configure it; dhclient writes resolv.conf.
cat > "$rootfs/etc/network/interfaces" <<NET
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet dhcp
NET
rm -f "$rootfs/etc/resolv.conf"  # debootstrap's copy of the build host's
# apt's daily timers would run at the first boot (never run before) and hold the dpkg lock
# while the provisioner installs packages; public boxes turn them off too.
chroot "$rootfs" systemctl mask apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1

chroot "$rootfs" useradd --create-home --shell /bin/bash vagrant
echo "vagrant ALL=(ALL) NOPASSWD:ALL" > "$rootfs/etc/sudoers.d/vagrant"
chmod 0440 "$rootfs/etc/sudoers.d/vagrant"
install -d -m 0700 "$rootfs/home/vagrant/.ssh"
install -m 0600 "$pubkey" "$rootfs/home/vagrant/.ssh/authorized_keys"
chroot "$rootfs" chown -R vagrant:vagrant /home/vagrant/.ssh
printf 'UseDNS no\n' > "$rootfs/etc/ssh/sshd_config.d/vagrant.conf"
