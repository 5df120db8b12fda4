#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
module: secret
short_description: Manage secrets of the embedded libvirt secret driver of a root
version_added: 0.1.0
description:
  - Defines and removes secrets in C(secret:///embed?root=...), the embedded secret driver that the
    embedded QEMU driver of the same root uses, for example for the passphrase of an encrypted disk.
  - The value never appears in results, diffs or logs. libvirt does not hand out the value of a private
    secret, so for those the module compares it with a salted digest it keeps under
    C(<root>/lib/embedvirt/secret-digests/) when it sets it; a private secret whose value was set by
    other means gets its value set once.
options:
  state:
    description:
      - Whether the secret exists.
    type: str
    choices: [present, absent]
    default: present
  uuid:
    description:
      - UUID of the secret. When omitted the secret is found by O(usage_type) and O(usage_id), and a new
        one gets a generated UUID.
    type: str
  usage_type:
    description:
      - What the secret is for, as libvirt's C(<usage type=...>). V(none) needs O(uuid).
    type: str
    choices: [none, ceph, iscsi, tls, volume, vtpm]
    default: none
  usage_id:
    description:
      - What the usage names, by O(usage_type) - V(volume) the path of the encrypted image, V(ceph) and
        V(tls) and V(vtpm) a name, V(iscsi) a target.
    type: str
  description:
    description:
      - Free text stored with the secret.
    type: str
  private:
    description:
      - Whether libvirt refuses to give the value back through its API.
    type: bool
    default: true
  ephemeral:
    description:
      - Whether the secret lives only in memory. In embedded mode that is the memory of the root's helper
        process, so the secret is gone when the helper exits.
      - Needs libvirt 11.3 or later. Earlier embedded secret drivers crash defining one (9.0 measured), so the
        module refuses it there with C(error_kind=unsupported).
    type: bool
    default: false
  value:
    description:
      - The value to store. Left as it is when omitted.
    type: str
  value_encoding:
    description:
      - How O(value) is written - V(text) is stored as its UTF-8 bytes, V(base64) is decoded first
        (for binary keys).
    type: str
    choices: [text, base64]
    default: text
extends_documentation_fragment:
  - embedvirt.libvirt.root
  - embedvirt.libvirt.attributes
  - embedvirt.libvirt.attributes.actiongroup_libvirt
attributes:
  check_mode:
    support: full
    details: On a root that does not exist it predicts from an empty root and creates nothing.
  diff_mode:
    support: full
    details: Shows the definition; a value change is shown as C(value (changed)), never the value.
  idempotent:
    support: full
seealso:
  - module: embedvirt.libvirt.volume
author:
  - Embedvirt Developers (@embedvirt)
'''

EXAMPLES = r'''
- name: Passphrase of an encrypted disk image
  embedvirt.libvirt.secret:
    root: /srv/vms
    usage_type: volume
    usage_id: /srv/vms/images/db.qcow2
    description: db disk passphrase
    value: "{{ vault_db_disk_passphrase }}"
  register: db_secret

- name: A binary key, by UUID
  embedvirt.libvirt.secret:
    root: /srv/vms
    uuid: 0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f
    value: "{{ vault_key_b64 }}"
    value_encoding: base64

- name: Remove it
  embedvirt.libvirt.secret:
    root: /srv/vms
    usage_type: volume
    usage_id: /srv/vms/images/db.qcow2
    state: absent
'''

RETURN = r'''
secret:
  description: The secret after the task (predicted in check mode), without its value; null once absent.
  returned: always
  type: dict
  contains:
    uuid:
      description: UUID of the secret (null in check mode for one not created yet).
      type: str
    usage_type:
      description: What it is for.
      type: str
      sample: volume
    usage_id:
      description: What the usage names.
      type: str
      sample: /srv/vms/images/db.qcow2
    description:
      description: Its description.
      type: str
    private:
      description: Whether libvirt keeps the value to itself.
      type: bool
    ephemeral:
      description: Whether it lives only in memory.
      type: bool
value_changed:
  description: Whether the value was (or in check mode would be) set.
  returned: always
  type: bool
actions:
  description:
    - What the task did (or would do in check mode), in order, of V(define) (a new or changed
      definition), V(set value) and V(undefine).
    - In check mode on a root that does not exist and a task that would change something, first
      V(create root <path>).
  returned: always
  type: list
  elements: str
  sample: [define, set value]
msg:
  description: In check mode on a root that does not exist, says so and whether a real run would create it.
  returned: in check mode when the root does not exist
  type: str
'''

from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import EmbedvirtModule
from ansible_collections.embedvirt.libvirt.plugins.module_utils._secret import USAGE_TYPES, SecretManager


def main():
    module = EmbedvirtModule(
        dict(
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            uuid=dict(type='str'),
            usage_type=dict(type='str', choices=USAGE_TYPES, default='none'),
            usage_id=dict(type='str'),
            description=dict(type='str'),
            private=dict(type='bool', default=True),
            ephemeral=dict(type='bool', default=False),
            value=dict(type='str', no_log=True),
            value_encoding=dict(type='str', choices=['text', 'base64'], default='text'),
        ),
        required_if=[
            ('usage_type', 'none', ('uuid',)),
            ('usage_type', 'volume', ('usage_id',)),
            ('usage_type', 'ceph', ('usage_id',)),
            ('usage_type', 'iscsi', ('usage_id',)),
            ('usage_type', 'tls', ('usage_id',)),
            ('usage_type', 'vtpm', ('usage_id',)),
        ],
        supports_check_mode=True,
    )
    module.exit(**SecretManager(module).run())


if __name__ == '__main__':
    main()
