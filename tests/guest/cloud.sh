#!/usr/bin/env bash
# Builds the cloud-style test image for the instance tests, once, into .cache/guest/
# (ignored by git): an ordinary Debian cloud image in miniature that boots by itself from
# its own disk, BIOS or UEFI, and waits for a NoCloud seed (a disk labelled cidata):
#   partition 1  FAT, active, ESP type: syslinux (BIOS, with syslinux's MBR) and Debian's
#                signed shim and GRUB (UEFI, \EFI\BOOT\BOOTX64.EFI: a chain that Secure Boot
#                with Microsoft's keys accepts), Debian's signed cloud kernel and its
#                initramfs-tools initrd (root=LABEL=, virtio drivers);
#   partition 2  ext4 labelled embedvirt-root, last on the disk so cloud-init's growpart can
#                grow it: debootstrap bookworm (minbase) with systemd, udev, cloud-init
#                (NoCloud and None only), openssh-server, qemu-guest-agent, python3, sudo,
#                ifupdown and isc-dhcp-client (cloud-init renders ENI for them), nss-myhostname
#                (sudo resolves the hostname cloud-init sets).
# No root password, SSH host keys, machine id or hostname: cloud-init and systemd make them
# on the first boot. Made without mounts or loop devices (mkfs.ext4 -d, mtools, sfdisk, dd).
# As root.
#   tests/guest/build.sh cloud [OUTDIR]   prints OUTDIR when OUTDIR/cloud.qcow2 (compressed)
#                                         and OUTDIR/cloud.qcow2.sha256 (its hex sha256) are there
set -euo pipefail
exec 3>&1 1>&2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
step_name=cloud
out=${1:-$here/../../.cache/guest}
version=4   # bump when what this script builds changes
if [ -s "$out/cloud.qcow2" ] && [ -s "$out/cloud.qcow2.sha256" ] \
   && [ "$(cat "$out/cloud.version" 2>/dev/null)" = "$version" ]; then
  echo "$out" >&3; exit 0
fi

need_packages debootstrap e2fsprogs dosfstools mtools syslinux syslinux-common fdisk \
  qemu-utils

work=$(mktemp -d /var/tmp/embedvirt-cloud.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
label=embedvirt-root
cmdline="root=LABEL=$label ro console=ttyS0"

step "debootstrap from $mirror (the longest step)"
# policy-rc.d: nothing the packages install is started inside the chroot.
mkdir -p "$rootfs/usr/sbin"
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 20 "$work/debootstrap.log" "$rootfs/debootstrap/debootstrap.log"; exit 1; }
# apt, not debootstrap --include: only apt resolves virtual packages (python3-cryptography's).
step "packages"
# The chroot has no $TMPDIR of the caller's: maintainer scripts' mktemp would fail.
unset TMPDIR
chroot "$rootfs" apt-get update -q >"$work/apt.log" 2>&1
DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get install -y -q --no-install-recommends \
  systemd-sysv udev linux-image-cloud-amd64 initramfs-tools cloud-init cloud-guest-utils \
  openssh-server qemu-guest-agent python3 sudo ifupdown isc-dhcp-client netbase \
  libnss-myhostname zstd dbus \
  >>"$work/apt.log" 2>&1 || { tail -n 30 "$work/apt.log"; exit 1; }

step "configure"
rm -f "$rootfs/usr/sbin/policy-rc.d"
install -m 0644 "$here/cloud/99_embedvirt.cfg" "$rootfs/etc/cloud/cloud.cfg.d/"
echo "LABEL=$label / ext4 defaults 0 1" >"$rootfs/etc/fstab"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
# cloud-init's ENI goes to interfaces.d; ifupdown must read it.
printf 'auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n' \
  >"$rootfs/etc/network/interfaces"
# Boot time under TCG: no periodic jobs, and waiting for the network is bounded.
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
            e2scrub_reap.service fstrim.timer; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
echo 'WAIT_ONLINE_TIMEOUT=10' >>"$rootfs/etc/default/networking"
# First-boot state is the image user's own: host keys, machine id, hostname, caches.
rm -f "$rootfs"/etc/ssh/ssh_host_* "$rootfs/etc/hostname" "$rootfs/etc/resolv.conf" \
  "$rootfs/var/lib/dbus/machine-id"
: >"$rootfs/etc/machine-id"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/var/log/*.log "$rootfs"/var/lib/cloud/*
kver=$(ls "$rootfs/lib/modules")

step "signed shim and GRUB"
# Unpacked, not installed: their maintainer scripts would install them to this host's ESP.
(cd "$work" && apt-get download -o APT::Sandbox::User=root shim-signed grub-efi-amd64-signed >/dev/null 2>&1)
for deb in "$work"/shim-signed_*.deb "$work"/grub-efi-amd64-signed_*.deb; do dpkg-deb -x "$deb" "$work/efi"; done

step "boot partition (syslinux, shim and GRUB, kernel $kver)"
boot=$work/boot.img
mkfs.vfat -C -F 32 -n EMBEDVIRT "$boot" $((128 * 1024)) >/dev/null
syslinux --install "$boot"
printf 'DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND %s\n' \
  "$cmdline" >"$work/syslinux.cfg"
# GRUB's root is the partition it was loaded from; Debian's signed GRUB reads the grub.cfg
# next to itself when its own prefix (\EFI\debian) has none.
printf 'set timeout=0\nlinux /vmlinuz %s\ninitrd /initrd.img\nboot\n' "$cmdline" >"$work/grub.cfg"
export MTOOLS_SKIP_CHECK=1
mmd -i "$boot" ::/EFI ::/EFI/BOOT
mcopy -i "$boot" "$rootfs/boot/vmlinuz-$kver" ::/vmlinuz
mcopy -i "$boot" "$rootfs/boot/initrd.img-$kver" ::/initrd.img
mcopy -i "$boot" "$work/syslinux.cfg" ::/syslinux.cfg
# shim, started as the removable-media loader, starts the grubx64.efi beside it.
mcopy -i "$boot" "$work/efi/usr/lib/shim/shimx64.efi.signed" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$boot" "$work/efi/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" ::/EFI/BOOT/grubx64.efi
mcopy -i "$boot" "$work/grub.cfg" ::/EFI/BOOT/grub.cfg
# The kernel and initrd live on the boot partition only.
rm -f "$rootfs"/boot/vmlinuz-* "$rootfs"/boot/initrd.img-* "$rootfs"/vmlinuz* "$rootfs"/initrd.img*

step "root partition"
mkfs.ext4 -q -L "$label" -d "$rootfs" "$work/root.img" 1900M >/dev/null

step "disk"
disk=$work/disk.raw
boot_mib=$(( $(stat -c %s "$boot") / 1048576 ))
root_mib=$(( $(stat -c %s "$work/root.img") / 1048576 ))
truncate -s $(( (1 + boot_mib + root_mib) * 1048576 )) "$disk"
printf 'label: dos\nstart=1MiB, size=%dMiB, type=ef, bootable\nstart=%dMiB, type=83\n' \
  "$boot_mib" $((1 + boot_mib)) | sfdisk -q "$disk"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$boot" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$disk" bs=1M seek=$((1 + boot_mib)) conv=notrunc,sparse status=none
qemu-img convert -c -O qcow2 "$disk" "$work/cloud.qcow2"

mkdir -p "$out"
mv "$work/cloud.qcow2" "$out/cloud.qcow2"
sha256sum "$out/cloud.qcow2" | cut -d' ' -f1 >"$out/cloud.qcow2.sha256"
echo "$version" >"$out/cloud.version"
step "done: $out/cloud.qcow2 ($(du -m "$out/cloud.qcow2" | cut -f1) MiB)"
echo "$out" >&3
