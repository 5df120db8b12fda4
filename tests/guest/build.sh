#!/usr/bin/env bash
# Builds a small real Debian guest for the guest_agent connection tests, once, into
# .cache/guest/ (ignored by git): debootstrap (minbase, python3 with its full standard
# library, which Ansible modules need, qemu-guest-agent, sudo),
# Debian's cloud kernel, a busybox initramfs that loads the virtio modules and switches to
# the disk, and the disk made with mkfs.ext4 -d (no mount, no loop device). As root.
#   tests/guest/build.sh [OUTDIR]     prints OUTDIR when the guest is there
#   tests/guest/build.sh cloud [OUTDIR]  builds the cloud-style image instead (tests/guest/cloud.sh)
set -euo pipefail
# Only the result goes to stdout (callers capture it): tools' chatter goes to stderr.
exec 3>&1 1>&2
here=$(cd "$(dirname "$0")" && pwd)
if [ "${1:-}" = cloud ]; then shift; exec "$here/cloud.sh" "$@" >&3; fi
. "$here/common.sh"
out=${1:-$here/../../.cache/guest}
version=4   # bump when what this script builds changes
if [ -s "$out/disk.img" ] && [ "$(cat "$out/version" 2>/dev/null)" = "$version" ]; then
  echo "$out" >&3; exit 0
fi

need_packages debootstrap busybox-static e2fsprogs cpio gzip

work=$(mktemp -d /var/tmp/embedvirt-guest.XXXXXX)
trap 'rm -rf "$work"' EXIT
step "debootstrap from $mirror (the longest step)"
debootstrap --variant=minbase --include=python3,qemu-guest-agent,sudo \
  bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log"; exit 1; }

step "kernel"
kpkg=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
# As root, not apt's sandbox user: the work directory is private (trixie's apt drops to _apt).
(cd "$work" && apt-get download -o APT::Sandbox::User=root "$kpkg" >/dev/null 2>&1)
dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
# Debian 12's kernel package has lib/modules, Debian 13's (merged /usr) usr/lib/modules.
modules=$work/kernel/lib/modules
[ -d "$modules" ] || modules=$work/kernel/usr/lib/modules
kver=$(ls "$modules")

step "initramfs"
init=$work/initramfs
mkdir -p "$init"/{bin,dev,proc,sys,newroot,modules}
cp /bin/busybox "$init/bin/busybox"
ln -s busybox "$init/bin/sh"   # the kernel runs /init through its #!/bin/sh
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk virtio_console; do
  f=$(find "$modules/$kver" -name "$m.ko*" | head -1)
  [ -n "$f" ] && cp "$f" "$init/modules/"
done
cp "$here/initramfs-init" "$init/init"
chmod 0755 "$init/init"
(cd "$init" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$work/initrd.img"

step "root filesystem"
rootfs=$work/rootfs
cp "$here/guest-init" "$rootfs/sbin/embedvirt-init"
chmod 0755 "$rootfs/sbin/embedvirt-init"
echo embedvirt-guest >"$rootfs/etc/hostname"
# A user for become tests: sudo without password, as on many cloud images.
chroot "$rootfs" useradd --create-home --shell /bin/sh guest
echo 'guest ALL=(ALL) NOPASSWD: ALL' >"$rootfs/etc/sudoers.d/guest"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
mkfs.ext4 -q -L embedvirt -d "$rootfs" "$work/disk.img" 1G

mkdir -p "$out"
cp "$work/kernel/boot/vmlinuz-$kver" "$out/vmlinuz"
mv "$work/initrd.img" "$work/disk.img" "$out/"
echo "$version" >"$out/version"
step "done: $out"
echo "$out" >&3
