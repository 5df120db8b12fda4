#!/usr/bin/env bash
# The main job on this machine, as root on Debian 12: installs what it needs, builds the small
# Debian guest image once (about a minute; cached in .cache/guest), then runs
# playbooks/demo.yml against localhost. Extra arguments go to ansible-playbook.
set -euo pipefail
cd "$(dirname "$0")/.."
hacking/bootstrap.sh
echo "demo: guest image (built once, then cached in .cache/guest)"
image=$(tests/guest/build.sh "$PWD/.cache/guest")
export ANSIBLE_COLLECTIONS_PATH="$PWD/.cache/collections"
exec .cache/venv/bin/ansible-playbook -i hacking/localhost.ini playbooks/demo.yml -e "demo_image=$image" "$@"
