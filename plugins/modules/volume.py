#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
module: volume
short_description: Disk images of an embedded libvirt root, handled with qemu-img
version_added: 0.1.0
description:
  - libvirt's storage driver cannot be embedded, so guests of an embedded root use plain image files.
    This module creates them (raw or qcow2, with a backing file, optionally LUKS-encrypted), grows
    them, reports them and removes them, with C(qemu-img).
  - Images stay inside the root's C(images/) directory unless O(allow_outside_root=true).
  - An image inside the root is never reached through a symbolic link. A path whose directories or
    file inside the root are links, or whose directories belong to anyone but the root's owner, is
    refused (O(allow_outside_root) does not change that). New images there belong to the root's owner.
  - An existing image is never replaced or shrunk; one that differs from what is asked is an error.
    An image that one running guest uses is grown by that guest's QEMU (libvirt's C(blockResize)), so the
    guest sees the new size at once; growing one that several running guests share is refused. Removing an
    image that a running guest uses, and growing or removing a disk of the source of linked clones (their
    disks are built on it), are refused, and so is growing a qcow2 image that keeps its data in an external
    file (C(data_file)), since that file would grow too.
  - qemu-img is told the format of an existing image (qcow2 when it starts with the qcow2 header, else
    raw), never left to guess it, and every run of it is stopped after 300 seconds (a backing file that
    is a FIFO would block it forever).
options:
  path:
    description:
      - The image file. A relative path is taken under C(<root>/images/) and may not leave it with C(..).
      - An absolute path must be under C(<root>/images/) too, unless O(allow_outside_root=true). A path
        in the root outside C(images/) (C(etc/), C(lib/), the files libvirt keeps) is always refused.
    type: path
    required: true
  state:
    description:
      - Whether the image exists. With V(present) an existing image is reported (and grown when O(size)
        is larger), so check mode gives its details without changing anything.
    type: str
    choices: [present, absent]
    default: present
  format:
    description:
      - Image format.
    type: str
    choices: [qcow2, raw]
    default: qcow2
  size:
    description:
      - Virtual size, in bytes or with a K, M, G or T suffix (powers of 1024), such as V(10G).
      - Required to create an image without O(backing_file). A larger size grows an existing image; a
        smaller one is refused.
    type: str
  backing_file:
    description:
      - Create a qcow2 image on top of this one (copy on write). Its format is detected unless
        O(backing_format) is given.
      - A relative path is read from the image's directory, as qemu-img does. Like O(path), it must be
        under C(<root>/images/) unless O(allow_outside_root=true). A name qemu-img would read as a protocol
        (a V(:) before any V(/), such as V(nbd:...) or V(json:...)) is refused; write V(./name) for a file.
    type: path
  backing_format:
    description:
      - Format of O(backing_file).
    type: str
    choices: [qcow2, raw]
  encryption_passphrase:
    description:
      - Create a LUKS-encrypted qcow2 image with this passphrase; needed again to grow it.
      - Store the same value as a secret (M(embedvirt.libvirt.secret), O(embedvirt.libvirt.secret#module:usage_type=volume))
        and name that secret in the disk's C(<encryption>) so the guest can open it.
      - Passed to qemu-img through a pipe, never on its command line or in a file.
    type: str
  allow_outside_root:
    description:
      - Allow an image, or a backing file, outside the root (given as an absolute path). Paths in the root
        outside its C(images/) directory stay refused.
    type: bool
    default: false
extends_documentation_fragment:
  - embedvirt.libvirt.root
  - embedvirt.libvirt.attributes
  - embedvirt.libvirt.attributes.actiongroup_libvirt
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
requirements:
  - qemu-img (qemu-utils)
seealso:
  - module: embedvirt.libvirt.domain
  - module: embedvirt.libvirt.secret
author:
  - Embedvirt Developers (@embedvirt)
'''

EXAMPLES = r'''
- name: A 10 GiB qcow2 disk for web
  embedvirt.libvirt.volume:
    root: /srv/vms
    path: web.qcow2
    size: 10G

- name: A copy-on-write disk on a shared base image
  embedvirt.libvirt.volume:
    root: /srv/vms
    path: web2.qcow2
    backing_file: /srv/vms/images/debian-12.qcow2

- name: An encrypted disk and its secret
  embedvirt.libvirt.volume:
    root: /srv/vms
    path: db.qcow2
    size: 20G
    encryption_passphrase: "{{ vault_db_passphrase }}"

- name: Grow web's disk while web runs (web's QEMU grows it, and web sees its new size)
  embedvirt.libvirt.volume:
    root: /srv/vms
    path: web.qcow2
    size: 40G

- name: Remove it (refused while a running guest uses it)
  embedvirt.libvirt.volume:
    root: /srv/vms
    path: web.qcow2
    state: absent
'''

RETURN = r'''
volume:
  description: The image after the task (predicted in check mode), as qemu-img reports it; null when absent.
  returned: always
  type: dict
  contains:
    path:
      description: Absolute path of the image.
      type: str
      sample: /srv/vms/images/web.qcow2
    format:
      description: Image format.
      type: str
      sample: qcow2
    virtual_size:
      description: Size the guest sees, in bytes.
      type: int
    actual_size:
      description: Space used on the host, in bytes.
      type: int
    backing_file:
      description: Backing file, if any.
      type: str
    backing_format:
      description: Format of the backing file.
      type: str
    encrypted:
      description: Whether the image is encrypted.
      type: bool
used_by:
  description: Domains whose definitions name the image, checked before growing or removing it.
  returned: when the image was grown or removed
  type: list
  elements: str
  sample: [web]
actions:
  description: What the task did (or would do), of create, grow, grow live (through a running guest's QEMU), remove.
  returned: always
  type: list
  elements: str
'''

from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import EmbedvirtModule
from ansible_collections.embedvirt.libvirt.plugins.module_utils._volume import VolumeManager


def main():
    module = EmbedvirtModule(
        dict(
            path=dict(type='path', required=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            format=dict(type='str', choices=['qcow2', 'raw'], default='qcow2'),
            size=dict(type='str'),
            backing_file=dict(type='path'),
            backing_format=dict(type='str', choices=['qcow2', 'raw']),
            encryption_passphrase=dict(type='str', no_log=True),
            allow_outside_root=dict(type='bool', default=False),
        ),
        required_by=dict(backing_format=('backing_file',)),
        supports_check_mode=True,
    )
    if module.params['backing_file'] and module.params['format'] != 'qcow2':
        module.fail('backing_file needs format=qcow2', error_kind='format')
    module.exit(**VolumeManager(module).run())


if __name__ == '__main__':
    main()
