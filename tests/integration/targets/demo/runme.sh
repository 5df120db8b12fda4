#!/usr/bin/env bash
# The main job (playbooks/demo.yml, by its collection name, as CONTRIBUTING.md describes), on a test root:
# a real guest from the cloud image, downloaded and checked against the SHA512SUMS published next
# to it (on loopback, as a download site would), reached through its agent, a second run that
# changes nothing, a run from another copy of the collection with the image in a file elsewhere
# that changes nothing either (the root holds everything its guest needs), then the purge.
set -euxo pipefail
root=/tmp/evt-pc-demo
out=$(mktemp -d)
cached=$(sed -n 's/^embedvirt_cloud_image: //p' ../../integration_config.yml)
mkdir "$out/www"
# A link where it can be (the image may be on another filesystem: Debian 13's tree mounts it).
cp -l "$cached" "$out/www/cloud.qcow2" 2>/dev/null || cp "$cached" "$out/www/cloud.qcow2"
(cd "$out/www" && sha512sum cloud.qcow2 >SHA512SUMS && echo "$(printf 'f%.0s' $(seq 128))  other.qcow2" >>SHA512SUMS)
sha512=$(cut -d' ' -f1 "$out/www/SHA512SUMS" | head -1)
# The root caches a checked image under the start of its digest.
base=$root/images/base/${sha512:0:12}-cloud.qcow2
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$out/www" "$port" >"$out/www.log" 2>&1 &
www=$!
image=http://127.0.0.1:$port/cloud.qcow2
demo() {
  # The system Python: it has the libvirt bindings (host) and is what the guest has. The test
  # image has its guest agent already, and the guest no Internet to install it from.
  ansible-playbook -i localhost, -c local -e ansible_python_interpreter=/usr/bin/python3 embedvirt.libvirt.demo \
    -e embedvirt_root=$root -e "demo_image=$image" -e demo_install_agent=false "$@"
}
# A failed run leaves nothing behind either.
trap 'kill $www; [ ! -e $root ] || demo -e demo_state=purged >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
demo | tee "$out/first"
grep -q '"GET /SHA512SUMS HTTP' "$out/www.log"
grep -q 'demo runs Debian 12' "$out/first"
grep -q 'guests: demo running' "$out/first"
grep -q 'reached through its guest agent' "$out/first"
pgrep -f "[g]uest=demo,.*$root/lib/qemu" >/dev/null

# Every file of the guest's disk chain is inside the root.
qemu-img info -U --output=json --backing-chain $root/images/demo.qcow2 >"$out/chain.json"
python3 - "$root" "$out/chain.json" <<'EOF'
import json, sys
root, chain = sys.argv[1:]
files = [image['filename'] for image in json.load(open(chain))]
assert len(files) == 2, files
outside = [f for f in files if not f.startswith(root + '/')]
assert not outside, 'outside the root: %s' % outside
EOF

demo | tee "$out/second"
# Nothing to do the second time, on the host or in the guest (its tasks count for localhost).
grep -Eq '^localhost +: ok=[0-9]+ +changed=0 ' "$out/second"

# Another copy of the collection (a second clone), its guest image in a file at another path,
# with the same checksum: the same root, nothing changes, and the root's base image is still the
# one its guest's disk is on.
collection=$(ansible-galaxy collection list embedvirt.libvirt --format json \
  | python3 -c 'import json, sys; print(next(iter(json.load(sys.stdin))) + "/embedvirt/libvirt")')
mkdir -p "$out/clone/ansible_collections/embedvirt/libvirt" "$out/image"
cp -a "$collection/." "$out/clone/ansible_collections/embedvirt/libvirt/"
cp -l "$cached" "$out/image/cloud.qcow2" 2>/dev/null || cp "$cached" "$out/image/cloud.qcow2"
base_before=$(stat -c '%i %Y' "$base")
ANSIBLE_COLLECTIONS_PATH=$out/clone image=$out/image/cloud.qcow2 demo -e demo_checksum=sha512:$sha512 \
  | tee "$out/clone.log"
grep -Eq '^localhost +: ok=[0-9]+ +changed=0 ' "$out/clone.log"
[ "$(stat -c '%i %Y' "$base")" = "$base_before" ]
# Named relative to the guest's disk: the root can move.
qemu-img info -U --output=json $root/images/demo.qcow2 | grep -q "\"backing-filename\": \"base/${sha512:0:12}-cloud.qcow2\""

demo -e demo_state=purged | tee "$out/purged"
grep -q "root $root purged" "$out/purged"
test ! -e $root
! pgrep -f "[g]uest=demo,.*$root/lib/qemu"
