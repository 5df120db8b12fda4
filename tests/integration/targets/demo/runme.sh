#!/usr/bin/env bash
# The main job as README runs it (playbooks/demo.yml, by its collection name), on a test root:
# a real guest reached through its agent, a second run that changes nothing, then the purge.
set -euxo pipefail
root=/tmp/evt-demo
out=$(mktemp -d)
image=$(sed -n 's/^embedvirt_guest_image: //p' ../../integration_config.yml)
demo() {
  # The system Python: it has the libvirt bindings (host) and is what the guest has.
  ansible-playbook -i localhost, -c local -e ansible_python_interpreter=/usr/bin/python3 embedvirt.libvirt.demo \
    -e embedvirt_root=$root -e "demo_image=$image" "$@"
}
# A failed run leaves nothing behind either.
trap 'rm -rf "$out"; [ ! -e $root ] || demo -e demo_state=purged >/dev/null 2>&1 || true' EXIT
demo | tee "$out/first"
grep -q 'demo runs Debian 12' "$out/first"
grep -q 'guests: demo running' "$out/first"
grep -q 'reached through its guest agent' "$out/first"
pgrep -f "[g]uest=demo,.*$root/lib/qemu" >/dev/null

demo | tee "$out/second"
# Nothing to do the second time, on the host or in the guest (its tasks count for localhost).
grep -Eq '^localhost +: ok=[0-9]+ +changed=0 ' "$out/second"

demo -e demo_state=purged | tee "$out/purged"
grep -q "root $root purged" "$out/purged"
test ! -e $root
! pgrep -f "[g]uest=demo,.*$root/lib/qemu"
