#!/usr/bin/env bash
# playbooks/purge.yml on this machine; arguments go to ansible-playbook (-e embedvirt_root=...).
set -euo pipefail
cd "$(dirname "$0")/.."
hacking/bootstrap.sh
export ANSIBLE_COLLECTIONS_PATH="$PWD/.cache/collections"
exec .cache/venv/bin/ansible-playbook -i hacking/localhost.ini playbooks/purge.yml "$@"
