#!/bin/sh
# A private sshd on a loopback address (127.0.0.1 unless given) that stands in for a remote
# hypervisor: root may log in with the key this script makes, DIR/id.
# Usage: sshd.sh start|stop DIR PORT [ADDRESS]
set -eu
action=$1 dir=$2 port=$3 address=${4:-127.0.0.1}
case $action in
  start)
    mkdir -p "$dir" /run/sshd
    chmod 0700 "$dir"
    [ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
    [ -f "$dir/id" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/id"
    cp "$dir/id.pub" "$dir/authorized_keys"
    cat >"$dir/sshd_config" <<CONF
Port $port
ListenAddress $address
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $dir/sshd.pid
LogLevel VERBOSE
CONF
    /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
    ;;
  stop)
    [ -f "$dir/sshd.pid" ] && kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
    ;;
esac
