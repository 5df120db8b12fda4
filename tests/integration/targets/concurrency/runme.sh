#!/usr/bin/env bash
# Many tasks at once against one root, and two roots at once: one helper per root, always.
set -eux
export ANSIBLE_ROLES_PATH=../
ansible-playbook -i inventory.ini concurrency.yml "$@"
