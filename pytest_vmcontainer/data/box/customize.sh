#!/bin/sh
# Turns a debootstrapped root filesystem into a bootable Vagrant guest.
# Usage: customize.sh ROOTFS PUBLIC_KEY_FILE
set -eu
rootfs=$1
pubkey=$2
hostname=vmcontainer

echo "$hostname" > "$rootfs/etc/hostname"
cat > "$rootfs/etc/hosts" <<HOSTS
127.0.0.1 localhost
127.0.1.1 $hostname
::1 localhost ip6-localhost ip6-loopback
HOSTS
echo "/dev/vda / ext4 defaults,errors=remount-ro 0 1" > "$rootfs/etc/fstab"

# DHCP on every NIC; the slirp (user-mode) NICs answer DHCP and DNS inside QEMU.
cat > "$rootfs/etc/systemd/network/80-dhcp.network" <<NET
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
NET
chroot "$rootfs" systemctl enable systemd-networkd.service >/dev/null 2>&1
# No systemd-resolved in the box: point at the slirp DNS forwarders of both NICs.
rm -f "$rootfs/etc/resolv.conf"
printf 'nameserver 10.0.2.3\nnameserver 10.0.3.3\n' > "$rootfs/etc/resolv.conf"
# Boots are timed: nothing periodic should start behind the measurement's back. Nor behind
# the parity scan's: a VM restored from a state saved the day before sets its clock past
# midnight, and dpkg-db-backup.timer (daily, persistent) then ran dpkg-db-backup and savelog
# as the scan read the processes, which it reported as drift.
chroot "$rootfs" systemctl mask apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
    fstrim.timer systemd-tmpfiles-clean.timer >/dev/null 2>&1
for timer in dpkg-db-backup fstrim systemd-tmpfiles-clean; do
    if [ "$(readlink "$rootfs/etc/systemd/system/$timer.timer")" != /dev/null ]; then
        echo "customize.sh: $timer.timer is not masked" >&2
        exit 1
    fi
done
# Under emulation every unit at boot costs seconds (measured with systemd-analyze blame,
# TCG): none that this box cannot use. e2scrub checks ext4 on LVM (there is none), and the
# others serve graphics, EFI, binfmt and kernel debugging.
chroot "$rootfs" systemctl mask e2scrub_reap.service e2scrub_all.timer modprobe@drm.service \
    modprobe@efi_pstore.service systemd-binfmt.service sys-kernel-debug.mount \
    sys-kernel-tracing.mount >/dev/null 2>&1
# Online is one configured NIC: both NICs answer DHCP, and the app is reached through either.
install -d "$rootfs/etc/systemd/system/systemd-networkd-wait-online.service.d"
printf '[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any\n' \
    > "$rootfs/etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf"
# sshd listens on every address, so it need not wait for network.target (networkd's start,
# about 4 s under TCG): it starts beside it, and answers once DHCP has given a NIC its address.
# Nor need it test its own config before it starts (ExecStartPre=sshd -t): the box's config is
# fixed at build time, and that second sshd took about 2 s of the boot under TCG.
sed -e 's/^After=network.target /After=/' -e '/^ExecStartPre=\/usr\/sbin\/sshd -t$/d' \
    "$rootfs/lib/systemd/system/ssh.service" > "$rootfs/etc/systemd/system/ssh.service"
grep -q '^After=auditd.service$' "$rootfs/etc/systemd/system/ssh.service"
if grep -q '^ExecStartPre=' "$rootfs/etc/systemd/system/ssh.service"; then
    echo "customize.sh: ssh.service still tests its config at start" >&2
    exit 1
fi
# Early boot is one process after another, and under TCG each costs about half a second
# (systemd-analyze critical-chain): the steps this image does not need go. Its users exist
# (sysusers), the kernel mounts the root read-write (remount-fs), and it loads no module
# for device mapper, loop, FUSE or configfs, nor mounts hugepages or message queues. Its
# journal stays in memory (no flush to disk at boot), and the generators for what it has
# not (encrypted, integrity or verity disks, GPT auto-mounts, hibernation, boot counting,
# offline updates, debug shells and units from the kernel command line) are masked.
# Measured with QEMU directly (TCG, 2 vCPU, interleaved): SSH answered in 22.2 to 22.7 s
# with all of it and with RDRAND, against 27.4 to 35.8 s with RDRAND only.
chroot "$rootfs" systemctl mask systemd-sysusers.service systemd-remount-fs.service \
    modprobe@configfs.service modprobe@dm_mod.service modprobe@fuse.service \
    modprobe@loop.service kmod-static-nodes.service dev-hugepages.mount dev-mqueue.mount \
    sys-kernel-config.mount sys-fs-fuse-connections.mount \
    systemd-network-generator.service systemd-journal-flush.service >/dev/null 2>&1
install -d "$rootfs/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' > "$rootfs/etc/systemd/journald.conf.d/volatile.conf"
install -d "$rootfs/etc/systemd/system-generators"
for generator in bless-boot cryptsetup debug gpt-auto hibernate-resume integritysetup \
        veritysetup system-update run; do
    ln -sf /dev/null "$rootfs/etc/systemd/system-generators/systemd-$generator-generator"
done
# The kernel boots directly (no boot loader); its initramfs needs only the virtio disk's
# modules. MODULES=most made a 15 MB initramfs whose udev took about 3 s under TCG.
sed -i 's/^MODULES=.*/MODULES=list/' "$rootfs/etc/initramfs-tools/initramfs.conf"
printf 'virtio_pci\nvirtio_blk\n' >> "$rootfs/etc/initramfs-tools/modules"
chroot "$rootfs" update-initramfs -u -k all >/dev/null 2>&1

chroot "$rootfs" useradd --create-home --shell /bin/bash vagrant
echo "vagrant ALL=(ALL) NOPASSWD:ALL" > "$rootfs/etc/sudoers.d/vagrant"
chmod 0440 "$rootfs/etc/sudoers.d/vagrant"
install -d -m 0700 "$rootfs/home/vagrant/.ssh"
install -m 0600 "$pubkey" "$rootfs/home/vagrant/.ssh/authorized_keys"
chroot "$rootfs" chown -R vagrant:vagrant /home/vagrant/.ssh
# Vagrant logs in as vagrant over SSH with the per-build key only.
printf 'PasswordAuthentication no\nUseDNS no\n' > "$rootfs/etc/ssh/sshd_config.d/vagrant.conf"
# Every SSH connection's first command opened a PAM session that ran update-motd's scripts
# (run-parts, sh, uname) and looked for mail: 0.58 s against 0.24 s without, under TCG, and
# more on a restored VM, whose QEMU translates all of it afresh. No one reads this box's motd.
sed -i -e 's/^\(session[[:space:]]\+optional[[:space:]]\+pam_motd\.so\)/# \1/' \
    -e 's/^\(session[[:space:]]\+optional[[:space:]]\+pam_mail\.so\)/# \1/' \
    "$rootfs/etc/pam.d/sshd"
if grep -Eq '^session[[:space:]]+optional[[:space:]]+pam_(motd|mail)\.so' "$rootfs/etc/pam.d/sshd"
then
    echo "customize.sh: sshd's PAM session still runs pam_motd or pam_mail" >&2
    exit 1
fi
