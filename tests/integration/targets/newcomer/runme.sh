#!/usr/bin/env bash
# A newcomer's first hour: an ordinary user with Ansible in a venv of its own (no libvirt
# bindings, no system site packages), the collection built and installed from its tarball, a
# root in the user's home, a guest from the cloud image (served over loopback HTTP) reached
# through its agent, ad hoc and through the domains inventory, then the purge. Only the
# helper needs the bindings: it runs with the host's Python that has them.
set -euxo pipefail
user=evtnew
home=/tmp/evt-nc-home
root=$home/vms
out=$(mktemp -d)
chmod 0755 "$out"
image=$(sed -n 's/^embedvirt_cloud_image: //p' ../../integration_config.yml)
sha256=$(sed -n 's/^embedvirt_cloud_image_sha256: //p' ../../integration_config.yml)
as_user() {
  # A login-like environment of the user's own: nothing of this harness's Python or Ansible.
  (cd "$home" && runuser -u $user -- env -i HOME="$home" USER=$user PATH=/usr/bin:/bin LANG=C.UTF-8 "$@")
}
cleanup() {
  set +e
  [ ! -e $root ] || as_user venv/bin/ansible localhost -m embedvirt.libvirt.root_dir \
    -a "root=$root state=absent purge_guests=true purge_images=true" >/dev/null 2>&1
  [ -z "${www:-}" ] || kill "$www"
  pkill -9 -u $user
  userdel $user 2>/dev/null
  rm -rf "$home" "$out"
}
trap cleanup EXIT
pkill -9 -u $user || true
userdel $user 2>/dev/null || true
rm -rf "$home"
useradd --home-dir "$home" --create-home --shell /bin/bash $user

# The cloud image, served on loopback as a download site would.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$(dirname "$image")" "$port" >"$out/www.log" 2>&1 &
www=$!

# The collection as a release tarball, built from this tree.
collection=$(ansible-galaxy collection list embedvirt.libvirt --format json \
  | python3 -c 'import json, sys; print(next(iter(json.load(sys.stdin))) + "/embedvirt/libvirt")')
ansible-galaxy collection build "$collection" --output-path "$out"
tarball=$(ls "$out"/embedvirt-libvirt-*.tar.gz)
chmod 0644 "$tarball"

# What a newcomer types: a venv with ansible-core, the collection installed from the tarball.
core=$(python3 -c 'import ansible.release; print(ansible.release.__version__)')
as_user python3 -m venv venv
as_user venv/bin/pip install --quiet "ansible-core==$core"
! as_user venv/bin/python3 -c 'import libvirt'
as_user venv/bin/ansible-galaxy collection install "$tarball"

cat >"$out/first.yml" <<PLAYBOOK
- name: A first guest
  hosts: localhost
  gather_facts: false
  tasks:
    - name: A Debian guest from its cloud image
      embedvirt.libvirt.instance:
        root: $root
        name: first
        image: http://127.0.0.1:$port/$(basename "$image")
        checksum: sha256:$sha256
        memory: 512
        wait_for: agent
PLAYBOOK
as_user venv/bin/ansible-playbook "$out/first.yml" | tee "$out/first.log"
grep -Eq '^localhost +: ok=1 +changed=1 .*failed=0' "$out/first.log"

# Ad hoc, with the controller's Python (the venv's): implicit localhost.
as_user venv/bin/ansible localhost -m embedvirt.libvirt.domain_info -a "root=$root" | tee "$out/info.log"
grep -q '"state": "running"' "$out/info.log"

# The guest through the domains inventory and the guest_agent connection.
printf 'plugin: embedvirt.libvirt.domains\nroots: [%s]\n' "$root" >"$out/vms.embedvirt.yml"
as_user venv/bin/ansible -i "$out/vms.embedvirt.yml" first -m ansible.builtin.command -a 'cat /etc/os-release' \
  | tee "$out/agent.log"
grep -q 'first | CHANGED | rc=0' "$out/agent.log"
grep -q 'ID=debian' "$out/agent.log"

# The helper runs as the user, with the host's Python; QEMU as the user too.
helper=$(pgrep -u $user -f -- "--embedvirt-helper --root $root ")
[ "$(readlink /proc/$helper/exe)" = "$(readlink -f /usr/bin/python3)" ]
pgrep -u $user -f "[g]uest=first,.*$root/lib/qemu" >/dev/null

as_user venv/bin/ansible localhost -m embedvirt.libvirt.root_dir \
  -a "root=$root state=absent purge_guests=true purge_images=true" | tee "$out/purge.log"
grep -q 'CHANGED' "$out/purge.log"
test ! -e $root
! pgrep -u $user -f "[g]uest=first"
