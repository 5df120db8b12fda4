#!/usr/bin/env bash
# The main job on this machine, as root on Debian 12: installs what it needs, builds the small
# Debian cloud image once (a few minutes; cached in .cache/guest), then runs
# playbooks/demo.yml against localhost. Extra arguments go to ansible-playbook.
set -euo pipefail
cd "$(dirname "$0")/.."
hacking/bootstrap.sh
echo "demo: cloud image (built once, then cached in .cache/guest)"
image=$(tests/guest/build.sh cloud "$PWD/.cache/guest")/cloud.qcow2
export ANSIBLE_COLLECTIONS_PATH="$PWD/.cache/collections"
exec .cache/venv/bin/ansible-playbook -i hacking/localhost.ini playbooks/demo.yml -e "demo_image=$image" "$@"
