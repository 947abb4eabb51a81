#!/bin/sh
# Steps shared by both bases, run on the host against a debootstrapped root filesystem.
# Usage: finish-rootfs.sh ROOTFS SOURCES_LIST
set -eu
rootfs=$1
cp "$2" "$rootfs/etc/apt/sources.list"
# Same apt behaviour in both bases; the provisioning script asks for what it needs.
printf 'APT::Install-Recommends "false";\nAcquire::Languages "none";\n' > "$rootfs/etc/apt/apt.conf.d/90pytest-vmcontainer"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
: > "$rootfs/etc/machine-id"
