# guestfish script: the box's partitioned disk, made and made bootable inside the libguestfs
# appliance (nothing is mounted on the build host). bases.py fills in the placeholders.
add-drive ${disk} format:qcow2
run
part-init /dev/sda mbr
part-add /dev/sda p 2048 -1
part-set-bootable /dev/sda 1 true
mkfs ext4 /dev/sda1 label:root
set-uuid /dev/sda1 ${root_uuid}
mount /dev/sda1 /
tar-in ${rootfs_tar} / xattrs:true
# Inside the guest's root (the appliance binds /dev, /proc and /sys into it).
command "grub-install --target=i386-pc /dev/sda"
command "update-grub"
umount-all
