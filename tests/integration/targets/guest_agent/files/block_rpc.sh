#!/bin/sh
# Runs in a test guest: make its qemu-ga block the RPC named in $1. qemu-ga reads its config
# when the guest's init restarts it; the kill waits a second so this command still returns.
mkdir -p /etc/qemu
printf '[general]\nblock-rpcs=%s\n' "$1" >/etc/qemu/qemu-ga.conf
setsid sh -c 'sleep 1
for p in /proc/[0-9]*; do
  [ "$(cat "$p/comm" 2>/dev/null)" = qemu-ga ] && kill "${p#/proc/}"
done' >/dev/null 2>&1 </dev/null &
