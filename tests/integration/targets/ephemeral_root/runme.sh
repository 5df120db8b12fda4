#!/usr/bin/env bash
# An ephemeral root is purged at the end of its play, also when the play fails.
set -eux
if ansible-playbook -i "${INVENTORY_PATH}" ephemeral.yml "$@"; then
  echo "the play was meant to fail"
  exit 1
fi
test ! -e /tmp/evt-eph
if pgrep -f '[g]uest=.*/tmp/evt-eph/'; then
  echo "a guest of the purged root still runs"
  exit 1
fi
