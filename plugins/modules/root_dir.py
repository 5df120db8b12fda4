#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: root_dir
short_description: Create an embedded libvirt root directory, or purge one safely
version_added: 0.1.0
description:
  - Creates the directory of an embedded root with this collection's layout (C(etc), C(images),
    C(lib/embedvirt), C(log/embedvirt), C(run/embedvirt)) and a marker file, C(.embedvirt-root), that
    proves the directory belongs to this collection.
  - Purges a root, only when the marker proves it is one - shuts its guests down (gracefully, then by
    force), stops its helper, ends any QEMU process left of it and deletes the directory. Files outside
    the root, such as disk images that guests named elsewhere, are never touched; symbolic links inside
    the root are removed, never followed.
  - The C(embedvirt.libvirt.root) role uses this module and adds qemu.conf and the boot service.
options:
  state:
    description:
      - V(present) creates (or checks) the root; V(absent) purges it.
    type: str
    choices: [present, absent]
    default: present
  lifecycle:
    description:
      - Recorded in the marker. A V(ephemeral) root is scratch space, purged with everything in it
        without O(purge_guests) or O(purge_images).
    type: str
    choices: [persistent, ephemeral]
    default: persistent
  owner:
    description:
      - User that owns the root (and runs its guests when unprivileged). Defaults to the user running
        the task.
    type: str
  group:
    description:
      - Group of the root. Defaults to the owner's primary group.
    type: str
  mode:
    description:
      - Mode of the root directory, as an octal string.
    type: str
    default: '0700'
  adopt:
    description:
      - Mark an existing directory that already has files (an embedded root made before) as a root.
        Without it such a directory is refused.
    type: bool
    default: false
  purge_guests:
    description:
      - With O(state=absent), also purge a root that still has defined or running guests.
    type: bool
    default: false
  purge_images:
    description:
      - With O(state=absent), also purge a root that still has files under C(images).
    type: bool
    default: false
  shutdown_timeout:
    description:
      - With O(state=absent), seconds a guest gets to shut down before it is powered off.
    type: int
    default: 60
extends_documentation_fragment:
  - embedvirt.libvirt.root
  - embedvirt.libvirt.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
seealso:
  - module: embedvirt.libvirt.helper
author:
  - Embedvirt Developers (@embedvirt)
'''

EXAMPLES = r'''
- name: A root for alice's guests
  embedvirt.libvirt.root_dir:
    root: /srv/alice-vms
    owner: alice

- name: Purge it, guests and disk images included
  embedvirt.libvirt.root_dir:
    root: /srv/alice-vms
    state: absent
    purge_guests: true
    purge_images: true
'''

RETURN = r'''
root:
  description: The root.
  returned: always
  type: str
  sample: /srv/vms
actions:
  description: What the task did (or would do), in order.
  returned: always
  type: list
  elements: str
privileged:
  description: Whether the root belongs to uid 0 (QEMU then needs the privileged qemu.conf settings).
  returned: when O(state=present)
  type: bool
owner:
  description: uid of the owner.
  returned: when O(state=present)
  type: int
purged:
  description: Whether the root was (or would be) deleted.
  returned: when O(state=absent)
  type: bool
domains:
  description: The guests the root held when it was purged.
  returned: when O(state=absent) and the root existed
  type: list
  elements: dict
images:
  description: The files under C(images) when it was purged.
  returned: when O(state=absent) and the root existed
  type: list
  elements: str
'''

from ansible_collections.embedvirt.libvirt.plugins.module_utils.common import EmbedvirtModule
from ansible_collections.embedvirt.libvirt.plugins.module_utils.lifecycle import RootLifecycle


def main():
    module = EmbedvirtModule(
        dict(
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            lifecycle=dict(type='str', choices=['persistent', 'ephemeral'], default='persistent'),
            owner=dict(type='str'),
            group=dict(type='str'),
            mode=dict(type='str', default='0700'),
            adopt=dict(type='bool', default=False),
            purge_guests=dict(type='bool', default=False),
            purge_images=dict(type='bool', default=False),
            shutdown_timeout=dict(type='int', default=60),
        ),
        supports_check_mode=True,
    )
    try:
        int(module.params['mode'], 8)
    except ValueError:
        module.fail("mode '%s' is not an octal mode such as '0700'" % module.params['mode'], error_kind='mode')
    module.exit(**RootLifecycle(module).run())


if __name__ == '__main__':
    main()
