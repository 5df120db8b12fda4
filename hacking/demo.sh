#!/usr/bin/env bash
# The main job on this machine, as root on Debian 12: installs what it needs, then runs
# playbooks/demo.yml against localhost. Extra arguments go to ansible-playbook.
set -euo pipefail
cd "$(dirname "$0")/.."
hacking/bootstrap.sh
export ANSIBLE_COLLECTIONS_PATH="$PWD/.cache/collections"
exec .cache/venv/bin/ansible-playbook -i hacking/localhost.ini playbooks/demo.yml "$@"
