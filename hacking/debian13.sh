#!/usr/bin/env bash
# Runs the integration suite a second time on Debian 13 (libvirt 11, QEMU 10), as root on the
# Debian 12 machine hacking/test.sh runs on. A trixie root filesystem is made afresh (debootstrap
# minbase, then apt-get inside: a full --include fails on a systemd pre-dependency with bookworm's
# debootstrap) and completed by the host role, as a user's machine would be. The suite runs in it
# in private mount, PID and network namespaces: its QEMUs, bridges and sshd never meet the host's,
# and every mount and process inside goes with the namespaces when the run ends, however it ends.
# The tree is removed afterwards. The test guests come from the host's cache (tests/guest/build.sh).
# Usage: hacking/debian13.sh [ansible-test integration arguments: targets, --start-at ...]
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$PWD
step_name=debian13
. tests/guest/common.sh

base=${TMPDIR:-/tmp}/embedvirt-debian13
tree=$base/tree
inner=/embedvirt   # the checkout's copy inside the tree

mounted_under() {
  # Mount points at or below $1 in this namespace (there should be none out here).
  awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo
}
remove_tree() {
  [ -e "$base" ] || return 0
  if [ -n "$(mounted_under "$base")" ]; then
    echo "debian13: not removing $base: still mounted: $(mounted_under "$base" | tr '\n' ' ')" >&2
    return 1
  fi
  rm -rf --one-file-system "$base"
}
remove_tree
trap remove_tree EXIT
mkdir -p "$base"

# The test guests are built on the host, once; the tree sees them read-only.
tests/guest/build.sh "$checkout/.cache/guest" >/dev/null
tests/guest/build.sh cloud "$checkout/.cache/guest" >/dev/null

need_packages debootstrap
step "debootstrap trixie from $mirror"
debootstrap --variant=minbase trixie "$tree" "$mirror" >"$base/debootstrap.log" 2>&1 \
  || { tail -20 "$base/debootstrap.log"; exit 1; }
cp /etc/resolv.conf "$tree/etc/resolv.conf"
# The CAs this machine trusts (a proxy's among them, where there is one), for pip inside.
cp "${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}" "$tree/etc/embedvirt-host-ca.crt"

# The checkout's files as git knows them (as hacking/test.sh copies them), without its caches,
# and its .git, which hacking/test.sh inside lists them with.
mkdir -p "$tree$inner"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | tar -c --null -T - -f - | tar -x -C "$tree$inner" -f -
cp -a .git "$tree$inner/.git"

# in_tree NET COMMAND: COMMAND (a bash script) inside the tree, in a private mount namespace
# with /proc, /sys, /dev and a private /run; NET=private adds private PID and network
# namespaces (loopback only), NET=host keeps the host's network for downloads.
in_tree() {
  local net=$1 script=$2 flags=(--mount --propagation private --fork)
  [ "$net" = private ] && flags+=(--pid --net)
  unshare "${flags[@]}" /usr/bin/env TREE="$tree" GUEST="$checkout/.cache/guest" INNER="$inner" \
    NET="$net" SCRIPT="$script" bash -euc '
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
    chroot "$TREE" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
      PIP_CERT=/etc/embedvirt-host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 bash -euc "$SCRIPT"'
}

step "packages, the test tools and the host role (with the network)"
in_tree host "
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends python3 python3-venv python3-apt git ca-certificates >/dev/null
  cd $inner
  hacking/bootstrap.sh openssh-client openssh-server >/dev/null
  # What a user runs on a new host: here it adds the secret driver, which trixie split out.
  ANSIBLE_COLLECTIONS_PATH=$inner/.cache/collections .cache/venv/bin/ansible localhost -c local \
    -m ansible.builtin.include_role -a name=embedvirt.libvirt.host
  dpkg-query -W -f='\${Package} \${Version} \${db:Status-Status}\n' libvirt-daemon-driver-secret libvirt0 qemu-system-x86 python3
  dpkg-query -W -f='\${db:Status-Status}' libvirt-daemon-driver-secret | grep -qx installed
"
step "set up"

in_tree private "cd $inner && hacking/test.sh integration -- $(printf '%q ' "$@")"
