# guestfish script: GRUB installed on the box's partitioned disk, inside the libguestfs
# appliance (nothing is mounted on the build host). boxes.make_bootloader_disk made the
# partition table and the root filesystem, and fills in the placeholder.
add-drive ${disk} format:qcow2
run
mount /dev/sda1 /
# Inside the guest's root (the appliance binds /dev, /proc and /sys into it).
command "grub-install --target=i386-pc /dev/sda"
command "update-grub"
umount-all
