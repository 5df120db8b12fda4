#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
module: domain_info
short_description: List the guests of an embedded libvirt root, with versions and helper status
version_added: 0.1.0
description:
  - Lists the domains (guests) that the embedded QEMU driver of a root knows, running or defined,
    through the root's helper process (started when none runs).
  - Also returns the libvirt and QEMU versions and the helper's status.
  - It never creates a root. On a root that does not exist it fails with C(error_kind=root_missing)
    and starts no helper.
options:
  name:
    description:
      - Only domains with one of these names.
    type: list
    elements: str
    aliases: [names]
  state:
    description:
      - Only domains in one of these states.
    type: list
    elements: str
    choices: [nostate, running, blocked, paused, shutdown, shutoff, crashed, pmsuspended]
    aliases: [states]
extends_documentation_fragment:
  - embedvirt.libvirt.root
  - embedvirt.libvirt.attributes
  - embedvirt.libvirt.attributes.actiongroup_libvirt
attributes:
  check_mode:
    support: full
    details: Runs normally; it changes nothing except starting the helper of an existing root when
      none runs.
  diff_mode:
    support: none
  idempotent:
    support: full
author:
  - Embedvirt Developers (@embedvirt)
'''

EXAMPLES = r'''
- name: List every guest of /srv/vms
  embedvirt.libvirt.domain_info:
    root: /srv/vms
  register: vms

- name: Only running guests called web or db
  embedvirt.libvirt.domain_info:
    root: /srv/vms
    name: [web, db]
    state: running
'''

RETURN = r'''
domains:
  description: The domains that match, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Domain name.
      type: str
      sample: web
    uuid:
      description: Domain UUID.
      type: str
    id:
      description: Id of a running domain, null when it is not running.
      type: int
    state:
      description: One of nostate, running, blocked, paused, shutdown, shutoff, crashed, pmsuspended.
      type: str
      sample: running
    state_reason:
      description: libvirt's reason code for the state.
      type: int
    persistent:
      description: Whether the domain has a stored definition (false for transient guests).
      type: bool
    autostart:
      description: Whether the domain starts when the root's helper starts.
      type: bool
versions:
  description: Versions of the software serving the root.
  returned: always
  type: dict
  contains:
    libvirt:
      description: libvirt library version.
      type: str
      sample: 9.0.0
    qemu:
      description: QEMU version as libvirt reports it.
      type: str
      sample: 7.2.0
    python_libvirt:
      description: Version of the libvirt Python bindings.
      type: str
helper:
  description: Status of the root's helper; see M(embedvirt.libvirt.helper).
  returned: always
  type: dict
error_kind:
  description:
    - Why the task failed. V(root_missing) - the root does not exist (create it with the
      C(embedvirt.libvirt.root) role or M(embedvirt.libvirt.root_dir), or correct the path);
      V(root) - the root path breaks a rule; V(os) - a file operation failed (RV(error_path) names the
      file); V(value) - an unexpected value; others come from the helper.
  returned: failure
  type: str
  sample: root_missing
error_path:
  description: The file an V(os) error was about.
  returned: when RV(error_kind=os)
  type: str
  sample: /srv/vms/log/embedvirt
'''

from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import EmbedvirtModule
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import DOMAIN_STATES


def main():
    module = EmbedvirtModule(
        dict(
            name=dict(type='list', elements='str', aliases=['names']),
            state=dict(type='list', elements='str', choices=list(DOMAIN_STATES), aliases=['states']),
        ),
        read_only=True,
        supports_check_mode=True,
    )
    domains = module.helper.domain_list(names=module.params['name'], states=module.params['state'])
    versions = module.helper.versions()
    helper = dict(module.helper.helper_status(), running=True)
    module.exit(changed=False, domains=domains, versions=versions, helper=helper)


if __name__ == '__main__':
    main()
