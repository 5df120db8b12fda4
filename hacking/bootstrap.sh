#!/usr/bin/env bash
# Installs what the demo and the tests need on a Debian 12 machine, as root: a virtual
# environment in .cache/venv (ansible-core and test tools) that also sees Debian's
# python3-libvirt, then, with it, the collection's host role, which installs QEMU, libvirt's
# QEMU and secret drivers, the Python bindings and OVMF and makes the libvirt-qemu account the
# privileged embedded driver looks up (the role's list of packages is the only one), and the
# tools the tests use besides.
# Usage: hacking/bootstrap.sh [more Debian packages]
#        hacking/bootstrap.sh --venv-only   (only the virtual environment: hacking/debian13.sh
#                                            then lets the host role install the rest, as a user would)
#        hacking/bootstrap.sh --core 2.17   (only a virtual environment with that ansible-core release,
#                                            .cache/core-2.17, for hacking/test.sh matrix; prints its path)
set -euo pipefail
cd "$(dirname "$0")/.."
venv_only=false core=
[ "${1:-}" = --venv-only ] && { venv_only=true; shift; }
[ "${1:-}" = --core ] && { venv_only=true core=${2:?"--core needs an ansible-core version such as 2.17"}; shift 2; }

packages=(
  python3 python3-venv python3-apt   # the venv, and the apt module the host role runs
  git procps iproute2
  mtools dosfstools   # independent readers of the cloud-init seed's FAT image (unit tests)
  default-jre-headless   # ansible-rulebook's rule engine (the events target)
  "$@"   # what the caller needs on top (hacking/test.sh: an SSH server for the hypervisor tests)
)
missing=()
$venv_only && packages=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

venv=.cache/venv requirements=requirements-dev.txt
if [ -n "$core" ]; then
  # ansible-core alone: ansible-test installs what its sanity and units tests need.
  venv=.cache/core-$core requirements=$(mktemp)
  echo "ansible-core~=$core.0" >"$requirements"
fi
if [ ! -x "$venv/bin/ansible" ] || ! cmp -s "$requirements" "$venv/requirements-dev.txt"; then
  echo "bootstrap: building $venv" >&2
  rm -rf "$venv"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$venv/requirements-dev.txt"
fi
[ -z "$core" ] || rm -f "$requirements"

# ansible-rulebook in a venv of its own (its dependencies are not the controller's), for the
# events target, which runs it with the collection's event source.
if ! $venv_only && { [ ! -x .cache/rulebook/bin/ansible-rulebook ] \
    || ! cmp -s hacking/rulebook-requirements.txt .cache/rulebook/requirements.txt; }; then
  echo "bootstrap: building .cache/rulebook" >&2
  rm -rf .cache/rulebook
  /usr/bin/python3 -m venv .cache/rulebook
  .cache/rulebook/bin/pip install -q --disable-pip-version-check -r hacking/rulebook-requirements.txt >&2
  cp hacking/rulebook-requirements.txt .cache/rulebook/requirements.txt
fi

# Ansible finds the collection here, whatever the checkout is called.
if [ -z "$core" ]; then
  mkdir -p .cache/collections/ansible_collections/embedvirt
  ln -sfn "$PWD" .cache/collections/ansible_collections/embedvirt/libvirt
fi

# QEMU, libvirt and the bindings, and libvirt's QEMU account: the host role, as a user runs it.
if ! $venv_only; then
  ANSIBLE_COLLECTIONS_PATH=$PWD/.cache/collections .cache/venv/bin/ansible localhost -c local \
    -m ansible.builtin.include_role -a name=embedvirt.libvirt.host >.cache/host-role.log 2>&1 \
    || { echo "bootstrap: the host role failed (.cache/host-role.log):" >&2; tail -40 .cache/host-role.log >&2; exit 1; }
fi

# ansible-test bootstraps pip in its test environments with a script from a host this
# machine cannot reach; put our stand-in where it looks for a cached copy.
pip_version=$("$venv/bin/python" - <<'PY'
import os, re, ansible_test
path = os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')
print(re.search(r"pip='([0-9.]+)'", open(path).read()).group(1))
PY
)
install -D -m 0644 hacking/get_pip.py "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
[ -z "$core" ] || echo "$PWD/$venv"
