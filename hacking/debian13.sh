#!/usr/bin/env bash
# Runs the integration suite a second time on Debian 13 (libvirt 11, QEMU 10), as root on the
# Debian 12 machine hacking/test.sh runs on. A trixie root filesystem is made afresh (debootstrap
# minbase, then apt-get inside: a full --include fails on a systemd pre-dependency with bookworm's
# debootstrap); the host role installs QEMU and libvirt in it, as on a user's machine, before the
# test tools come. Everything runs in private mount and PID namespaces (the suite also in a private
# network namespace): its QEMUs, bridges and sshd never meet the host's, and every mount and
# process inside goes with the namespaces when the run ends or is killed. The tree is removed
# afterwards. The test guests come from the host's cache (tests/guest/build.sh).
# Usage: hacking/debian13.sh [ansible-test integration arguments: targets, --exclude ...]
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$PWD
step_name=debian13
. tests/guest/common.sh

inner=/embedvirt   # the checkout's copy inside the tree
need_packages debootstrap ca-certificates
# Fresh and root's alone (mode 0700), never a path someone else could have made first.
base=$(mktemp -d "${TMPDIR:-/tmp}/embedvirt-debian13.XXXXXX")
tree=$base/tree

mounted_under() {
  # Mount points at or below $1 in this namespace (there should be none out here).
  awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo
}
remove_tree() {
  # Killed, not finished: end the namespaces first. unshare --fork ignores SIGTERM; with
  # --kill-child its child, PID 1 inside, dies with it, and so does everything inside.
  [ -z "${inside:-}" ] || { kill -KILL "$inside"; wait "$inside"; } 2>/dev/null || true
  if [ -n "$(mounted_under "$base")" ]; then
    echo "debian13: not removing $base: still mounted there: $(mounted_under "$base" | tr '\n' ' ')" \
      "(umount -R them, then rm -rf --one-file-system $base)" >&2
    return 1
  fi
  # A process that was still dying may have written one more file: try again briefly.
  for _ in 1 2 3 4 5; do rm -rf --one-file-system "$base" 2>/dev/null && return 0; sleep 1; done
  rm -rf --one-file-system "$base"
}
trap remove_tree EXIT
trap 'exit 143' TERM INT

# The test guests are built on the host, once; the tree sees them read-only.
tests/guest/build.sh "$checkout/.cache/guest" >/dev/null
tests/guest/build.sh cloud "$checkout/.cache/guest" >/dev/null

step "debootstrap trixie from $mirror"
debootstrap --variant=minbase trixie "$tree" "$mirror" >"$base/debootstrap.log" 2>&1 \
  || { tail -20 "$base/debootstrap.log"; exit 1; }
cp /etc/resolv.conf "$tree/etc/resolv.conf"
# The CAs this machine trusts (a proxy's among them, where there is one), for pip inside.
cp "${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}" "$tree/etc/embedvirt-host-ca.crt"
# Packages never start their services here (sshd's postinst would, on the host's network).
printf '#!/bin/sh\nexit 101\n' >"$tree/usr/sbin/policy-rc.d"
chmod 0755 "$tree/usr/sbin/policy-rc.d"

# The checkout's files as git knows them (as hacking/test.sh copies them), without its caches,
# and its .git, which hacking/test.sh inside lists them with.
mkdir -p "$tree$inner"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | tar -c --null -T - -f - | tar -x -C "$tree$inner" -f -
cp -a .git "$tree$inner/.git"

# in_tree NET SCRIPT: SCRIPT (bash) inside the tree, in private mount and PID namespaces with
# /proc, /sys, /dev and a private /run; NET=private adds a private network namespace (loopback
# only), NET=host keeps the host's network for downloads. --kill-child: killing this script
# kills everything inside. The tree becomes the namespace's root (pivot_root), not a chroot:
# libvirt makes the devices of QEMU's private /dev from a process that enters QEMU's mount
# namespace (setns), which starts at the namespace's root; below a chroot it would make them
# outside the tree, and QEMU's /dev would lack /dev/null and /dev/urandom.
in_tree() {
  local net=$1 script=$2 flags=(--mount --propagation private --pid --fork --kill-child)
  [ "$net" = private ] && flags+=(--net)
  unshare "${flags[@]}" /usr/bin/env TREE="$tree" GUEST="$checkout/.cache/guest" INNER="$inner" \
    NET="$net" SCRIPT="$script" bash -euo pipefail -c '
    # libvirt'"'"'s mount namespace for QEMU needs its root to be a mount point.
    mount --bind "$TREE" "$TREE"
    mount -t proc proc "$TREE/proc"
    mount -t sysfs sysfs "$TREE/sys"
    mount --rbind /dev "$TREE/dev"
    mount -t tmpfs -o mode=0755 tmpfs "$TREE/run"
    mkdir -p "$TREE$INNER/.cache/guest"
    mount --bind "$GUEST" "$TREE$INNER/.cache/guest"
    mount -o remount,bind,ro "$TREE$INNER/.cache/guest"
    [ "$NET" = private ] && ip link set lo up
    mkdir -p "$TREE/.host"
    cd "$TREE"
    pivot_root . .host
    cd /
    umount -l /.host
    rmdir /.host
    /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
      PIP_CERT=/etc/embedvirt-host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 bash -euo pipefail -c "$SCRIPT"' &
  inside=$!
  wait "$inside"
  inside=
}

step "Ansible, then the host role, then the test tools (with the network)"
in_tree host "
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends python3 python3-venv python3-apt git ca-certificates >/dev/null
  cd $inner
  hacking/bootstrap.sh --venv-only >/dev/null
  # What a user runs on a new host; its output is kept for when it fails.
  ANSIBLE_COLLECTIONS_PATH=$inner/.cache/collections .cache/venv/bin/ansible localhost -c local \
    -m ansible.builtin.include_role -a name=embedvirt.libvirt.host >/tmp/host-role.log 2>&1 \
    || { tail -40 /tmp/host-role.log; exit 1; }
  dpkg-query -W -f='\${Package} \${Version} \${db:Status-Status}\n' libvirt-daemon-driver-secret libvirt0 qemu-system-x86 python3
  # The role installed a whole stack: the secret driver (a package of its own on trixie)...
  dpkg-query -W -f='\${db:Status-Status}' libvirt-daemon-driver-secret | grep -qx installed
  getent passwd libvirt-qemu >/dev/null
  # ... and bootstrap.sh, which installs what is missing, adds only the test tools.
  tools=\$(hacking/bootstrap.sh openssh-client openssh-server | sed -n 's/^bootstrap: installing //p')
  echo \"test tools: \$tools\"
  for p in \$tools; do
    case \$p in qemu*|libvirt*|python3-libvirt|ovmf) echo \"the host role did not install \$p\"; exit 1 ;; esac
  done
"
step "set up"

args=''
[ $# -eq 0 ] || args=$(printf '%q ' "$@")
in_tree private "cd $inner && hacking/test.sh integration -- $args"
