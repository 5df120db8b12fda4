#!/usr/bin/env bash
# A newcomer's first hour: an ordinary user with Ansible in a venv of its own (the oldest
# ansible-core the collection claims, no libvirt bindings, no system site packages), the
# collection built and installed from its tarball, and README's first playbook, copied from
# README itself: a root in the user's home, a guest from
# Debian's cloud image (here the test image, served on loopback as cloud.debian.org serves it,
# with a SHA512SUMS beside it) reached through its agent; then README's ad hoc command, the
# guest through the domains inventory, and the purge. Only the helper needs the bindings: it
# runs with the host's Python that has them.
set -euxo pipefail
user=evtnew
# A home as deep as a CI workspace's: the root below it is 115 bytes, reached by libvirt
# through its alias /tmp/.ev<uid>/<8 hex of sha256(root)>.
home=/tmp/evt-nc/home/a-newcomer-whose-home-is-as-deep-as-a-ci-workspace/work/project/project
root=$home/.local/share/embedvirt/vms   # README's
site=https://cloud.debian.org/images/cloud/bookworm/latest/
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
  rm -rf "/tmp/.ev$(id -u $user)"
  userdel $user 2>/dev/null
  rm -rf /tmp/evt-nc "$out"
}
trap cleanup EXIT
pkill -9 -u $user || true
userdel $user 2>/dev/null || true
rm -rf /tmp/evt-nc
mkdir -p "$(dirname "$home")"
useradd --home-dir "$home" --create-home --shell /bin/bash $user
[ ${#root} -gt 100 ]

# The cloud image, served on loopback as Debian's site serves its own.
mkdir "$out/www"
name=debian-12-genericcloud-amd64.qcow2
cp -l "$image" "$out/www/$name" 2>/dev/null || cp "$image" "$out/www/$name"
echo "$(sha512sum <"$image" | cut -d' ' -f1)  $name" >"$out/www/SHA512SUMS"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$out/www" "$port" >"$out/www.log" 2>&1 &
www=$!

# The collection as a release tarball, built from this tree.
collection=$(ansible-galaxy collection list embedvirt.libvirt --format json \
  | python3 -c 'import json, sys; print(next(iter(json.load(sys.stdin))) + "/embedvirt/libvirt")')
ansible-galaxy collection build "$collection" --output-path "$out"
tarball=$(ls "$out"/embedvirt-libvirt-*.tar.gz)
chmod 0644 "$tarball"

# What a newcomer types: a venv with ansible-core, the collection installed from the tarball.
# The oldest ansible-core that meta/runtime.yml claims: the rest of the suite runs the newest.
oldest=$(sed -n "s/^requires_ansible: '>=\([0-9]*\.[0-9]*\)\..*/\1/p" "$collection/meta/runtime.yml")
[ -n "$oldest" ]
as_user python3 -m venv venv
as_user venv/bin/pip install --quiet "ansible-core~=$oldest.0"
as_user venv/bin/ansible --version | grep -q "^ansible \[core $oldest\."
! as_user venv/bin/python3 -c 'import libvirt'
as_user venv/bin/ansible-galaxy collection install "$tarball"

# README's first playbook and ad hoc command, as README has them; only the site is this one.
python3 - "$collection/README.md" "$out" "$site" "http://127.0.0.1:$port/" <<'EOF'
import re, sys
readme, out, site, local = sys.argv[1:]
section = open(readme).read().split('\n## A first guest\n', 1)[1].split('\n## ', 1)[0]
playbook = re.search(r'```yaml\n(.*?)```', section, re.S).group(1)
assert playbook.count(site) == 2, 'README names the image and its SHA512SUMS on ' + site
open(out + '/first.yml', 'w').write(playbook.replace(site, local))
command = re.search(r'```\n(ansible localhost -m [^\n]*)\n```', section).group(1)
open(out + '/adhoc', 'w').write(command + '\n')
EOF
cat "$out/first.yml"
as_user venv/bin/ansible-playbook "$out/first.yml" | tee "$out/first.log"
grep -Eq '^localhost +: ok=1 +changed=1 .*failed=0' "$out/first.log"
grep -q '"GET /SHA512SUMS HTTP' "$out/www.log"

# README's ad hoc command, with the controller's Python (the venv's): implicit localhost.
read -ra adhoc <"$out/adhoc"
[ "${adhoc[0]}" = ansible ]
as_user venv/bin/ansible "${adhoc[@]:1}" | tee "$out/info.log"
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
alias=/tmp/.ev$(id -u $user)/$(printf %s "$root" | sha256sum | cut -c1-8)
[ "$(readlink "$alias")" = "$root" ]
[ "$(stat -c '%U %a' "$(dirname "$alias")")" = "$user 700" ]
pgrep -u $user -f "[g]uest=first,.*$alias/lib/qemu" >/dev/null

as_user venv/bin/ansible localhost -m embedvirt.libvirt.root_dir \
  -a "root=$root state=absent purge_guests=true purge_images=true" | tee "$out/purge.log"
grep -q 'CHANGED' "$out/purge.log"
test ! -e $root
test ! -L "$alias"   # the purge took the alias too
! pgrep -u $user -f "[g]uest=first"
