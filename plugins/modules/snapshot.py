#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
module: snapshot
short_description: Take, revert and delete snapshots of guests of an embedded libvirt root
version_added: 0.1.0
description:
  - Manages the snapshots of one domain of the embedded QEMU driver of a root, through the root's
    helper. Snapshots are internal qcow2 snapshots, kept inside the guest's qcow2 disk files, with
    libvirt's record of each under C(<root>/lib/qemu/snapshot/<domain>/); they travel with the root
    (see M(embedvirt.libvirt.root_dir) O(embedvirt.libvirt.root_dir#module:state=archived)).
  - A snapshot of a running guest holds its memory by default, so reverting resumes the guest where
    it was. With O(memory=false) it holds the disks only, optionally quiesced through the guest agent;
    reverting to it restarts a running guest on the reverted disks.
  - Every writable disk of the guest must be qcow2 (read-only disks and CD-ROMs are left out of the
    snapshot); a raw disk is refused with C(error_kind=disk_format). libvirt 9.0 cannot revert or delete
    external snapshots, so this module does not make them.
  - A domain with snapshots cannot be undefined until they are deleted (see O(embedvirt.libvirt.domain#module:remove_snapshots)).
options:
  domain:
    description:
      - Name of the domain.
    type: str
    required: true
  name:
    description:
      - Name of the snapshot, 1 to 100 letters, digits, C(.), C(_), C(+), C(@), C(:) and C(-), starting with a letter or digit
        (libvirt makes a file name of it, and QEMU's monitor reads it as one word).
      - Not digits only. QEMU's revert looks a name up as a snapshot id first (it numbers the snapshots in a
        disk 1, 2, and so on), so reverting to C(1) would go to whichever snapshot has id 1. Refused with
        C(error_kind=name) with O(state=present) and O(state=reverted), before anything changes; a snapshot
        so named by an earlier release can still be deleted (O(state=absent), which QEMU looks up by name).
    type: str
    required: true
  state:
    description:
      - V(present) takes the snapshot unless the domain has one of that name (whatever it holds). Refused
        with C(error_kind=clone_source) while linked clones are built on the domain's disk (the snapshot is
        written inside it).
      - V(absent) deletes it (its children stay, with its parent as theirs) and frees its space in the
        disks.
      - V(reverted) brings the domain back to the snapshot. Always a change. A memory snapshot resumes
        the guest in its saved state (running or paused), even if the guest was shut off; a disk snapshot
        restarts a running guest and leaves a shut-off one shut off. Refused with
        C(error_kind=clone_source) while linked clones are built on the domain's disk.
    type: str
    choices: [present, absent, reverted]
    default: present
  description:
    description:
      - Free text stored with a new snapshot.
    type: str
  memory:
    description:
      - Whether a new snapshot holds the running guest's memory and device state.
      - Defaults to V(true) when the guest runs (and O(quiesce) is not set), V(false) when it is shut off.
      - V(true) on a shut-off guest fails with C(error_kind=memory), and so does V(true) on a guest that
        boots UEFI firmware (libvirt 9.0 cannot keep a memory snapshot next to its raw NVRAM); take a disk
        snapshot of those (its NVRAM is not part of it).
      - The guest is paused while its memory is written (about a second per few hundred MiB here).
    type: bool
  quiesce:
    description:
      - For a disk snapshot of a running guest, freeze the guest's filesystems through its guest agent
        while the snapshot is taken, so that the disks are clean rather than crash-consistent.
      - Needs qemu-guest-agent in the guest (C(error_kind=quiesce) otherwise). Implies O(memory=false)
        when O(memory) is not given.
    type: bool
    default: false
  timeout:
    description:
      - Seconds the guest agent may take to freeze the filesystems.
    type: int
    default: 60
extends_documentation_fragment:
  - embedvirt.libvirt.root
  - embedvirt.libvirt.attributes
  - embedvirt.libvirt.attributes.actiongroup_libvirt
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The domain's snapshots before and after, one line each.
  idempotent:
    support: partial
    details: V(present) and V(absent) are idempotent; V(reverted) reverts every time.
seealso:
  - module: embedvirt.libvirt.domain_info
    description: Lists the snapshots of every domain with O(embedvirt.libvirt.domain_info#module:snapshots=true).
author:
  - Embedvirt Developers (@embedvirt)
'''

EXAMPLES = r'''
- name: Snapshot the running guest web1 with its memory
  embedvirt.libvirt.snapshot:
    root: /srv/vms
    domain: web1
    name: before-upgrade
    description: before the package upgrade

- name: A quiesced snapshot of the disks only
  embedvirt.libvirt.snapshot:
    root: /srv/vms
    domain: web1
    name: nightly
    quiesce: true

- name: Go back to it
  embedvirt.libvirt.snapshot:
    root: /srv/vms
    domain: web1
    name: before-upgrade
    state: reverted

- name: Delete it
  embedvirt.libvirt.snapshot:
    root: /srv/vms
    domain: web1
    name: before-upgrade
    state: absent
'''

RETURN = r'''
snapshot:
  description: The snapshot after the task; V(null) when it does not exist.
  returned: success
  type: dict
  contains:
    name:
      description: Its name.
      type: str
    description:
      description: Its description.
      type: str
    creation_time:
      description: When it was taken, in seconds since the epoch (V(null) for one check mode predicts).
      type: int
    parent:
      description: The snapshot it was taken on top of, if any.
      type: str
    state:
      description: The guest's state it holds (V(running), V(paused) for a memory snapshot; V(shutoff) for a
        disk snapshot).
      type: str
    memory:
      description: Whether it holds the guest's memory.
      type: bool
    current:
      description: Whether it is the domain's current snapshot (the last taken or reverted to).
      type: bool
snapshots:
  description: Every snapshot of the domain after the task, oldest first, each like RV(snapshot).
  returned: success
  type: list
  elements: dict
domain:
  description: The domain after the task (see M(embedvirt.libvirt.domain)).
  returned: success
  type: dict
actions:
  description: What the task did (or would do in check mode).
  returned: always
  type: list
  elements: str
  sample: [create]
error_kind:
  description:
    - Why the task failed. V(no_domain), V(no_snapshot), V(disk_format) (a writable disk that is not
      qcow2), V(memory), V(quiesce), V(clone_source), V(name), V(snapshot) (QEMU refused the snapshot of
      a running guest's disks), V(value) (a O(timeout) below 1), V(libvirt); see also
      M(embedvirt.libvirt.domain_info).
  returned: failure
  type: str
  sample: disk_format
'''

from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import EmbedvirtModule
from ansible_collections.embedvirt.libvirt.plugins.module_utils._snapshot import STATES, SnapshotManager


def main():
    module = EmbedvirtModule(
        dict(
            domain=dict(type='str', required=True),
            name=dict(type='str', required=True),
            state=dict(type='str', choices=STATES, default='present'),
            description=dict(type='str'),
            memory=dict(type='bool'),
            quiesce=dict(type='bool', default=False),
            timeout=dict(type='int', default=60),
        ),
        supports_check_mode=True,
    )
    if module.params['timeout'] < 1:
        module.fail('timeout is %d: give a number of seconds' % module.params['timeout'], error_kind='value')
    module.exit(**SnapshotManager(module).run())


if __name__ == '__main__':
    main()
