#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
module: instances
short_description: Many guests of one root converged in one task, in parallel
version_added: 0.1.0
description:
  - Converges every guest of O(guests), each one exactly as M(embedvirt.libvirt.instance) would with the same
    options, in one task. The root's helper serves the guests' requests at once (definitions, starts, disks, waits
    for their agents or SSH), at most O(parallel) guests at a time.
  - Guests go in waves. First one guest for each base image
    (O(embedvirt.libvirt.instance#module:image), so that an image is fetched and verified once, then shared), then
    the other guests, then the linked clones (O(embedvirt.libvirt.instance#module:clone_from)), whose template may be
    a guest of the waves before.
  - A guest that fails does not stop the others (unless O(stop_on_failure=true)); the task fails at the end with
    C(error_kind=guests), naming each guest that failed and why, and returns what the others did.
  - With O(exclusive=true), the root's instances that O(guests) does not list are undefined as
    M(embedvirt.libvirt.instance) does with O(embedvirt.libvirt.instance#module:state=undefined) (their disks,
    seeds, NVRAM and TPM state go), linked clones before their templates. An empty O(guests) is refused with
    O(exclusive=true), and nothing is removed when a listed guest failed. A template that keeps clones stays, and so does a
    domain that another module defined; both are listed in RV(kept). Check mode and diff mode show the removals
    first.
options:
  guests:
    description:
      - The guests, each a dict of the options of M(embedvirt.libvirt.instance)
        (O(embedvirt.libvirt.instance#module:name) required) on top of O(defaults), or only its name (a string).
        Each is checked as that module checks its options before anything is done; the task fails naming every
        guest that is wrong.
      - The root options (O(root), O(helper_python), O(helper_idle_timeout)) are the task's, for every guest.
    type: list
    elements: raw
    required: true
  defaults:
    description: Options every guest gets unless it gives its own (such as
      O(embedvirt.libvirt.instance#module:image) and O(embedvirt.libvirt.instance#module:checksum), or
      O(embedvirt.libvirt.instance#module:clone_from)).
    type: dict
    default: {}
  parallel:
    description:
      - How many guests are converged at once. Under TCG a guest's boot takes a CPU core much of the time; with
        O(embedvirt.libvirt.instance#module:wait_for), more guests than cores mostly wait.
    type: int
    default: 4
  exclusive:
    description: Undefine the root's instances that O(guests) does not list (see above).
    type: bool
    default: false
  stop_on_failure:
    description: Once a guest failed, start no other (they are listed in RV(not_started)); those under way finish.
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
    details: Shows the root's guests before and after (with O(exclusive), those removed).
  idempotent:
    support: full
notes:
  - Each guest's own result (RV(guests)) is what M(embedvirt.libvirt.instance) returns, warnings are prefixed with
    the guest's name.
  - The root's helper does the work of all guests; each guest has a connection of its own to it. A bench
    (C(bench/run.py)) measures one task against a loop of M(embedvirt.libvirt.instance).
  - The C(embedvirt.libvirt.root) role converges its C(root_guests) with this module.
seealso:
  - module: embedvirt.libvirt.instance
author:
  - Embedvirt Developers (@embedvirt)
'''

EXAMPLES = r'''
- name: Twenty linked clones of the template web (web-1 to web-20), waiting for their agents
  embedvirt.libvirt.instances:
    root: /srv/vms
    defaults:
      clone_from: web
      memory: 512
      wait_for: agent
    guests: "{{ range(1, 21) | map('regex_replace', '^', 'web-') }}"
    parallel: 8

- name: Exactly these guests in the root, the others removed (check mode shows which first)
  embedvirt.libvirt.instances:
    root: /srv/vms
    defaults:
      image: https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2
      checksum: sha512:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS
    guests:
      - {name: db, memory: 2048, disks: [{name: data, size: 20G}]}
      - {name: app1}
      - {name: app2}
    exclusive: true
  register: fleet

- name: What each guest did
  ansible.builtin.debug:
    msg: "{{ item.key }}: {{ item.value.actions }}"
  loop: "{{ fleet.guests | dict2items }}"
  loop_control:
    label: "{{ item.key }}"
'''

RETURN = r'''
guests:
  description: Each guest that was converged, by name, with what M(embedvirt.libvirt.instance) returns for it.
  returned: always
  type: dict
  sample: {web-1: {changed: true, actions: [define, start], domain: {name: web-1, state: running}}}
failures:
  description: Each guest that failed, by name, with its C(msg) and C(error_kind).
  returned: always
  type: dict
  sample: {web-2: {msg: "no SSH server answered ...", error_kind: timeout}}
removed:
  description: The instances O(exclusive=true) removed (or would remove, in check mode).
  returned: always
  type: list
  elements: str
kept:
  description: The root's domains not listed that O(exclusive=true) did not remove, each with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{name: base, reason: the source of the linked clones web-1}]
not_started:
  description: The guests not converged because one failed first and O(stop_on_failure=true).
  returned: always
  type: list
  elements: str
'''

from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import EmbedvirtModule
from ansible_collections.embedvirt.libvirt.plugins.module_utils._fleet import FleetManager


def main():
    module = EmbedvirtModule(
        dict(
            guests=dict(type='list', elements='raw', required=True),
            defaults=dict(type='dict', default={}),
            parallel=dict(type='int', default=4),
            exclusive=dict(type='bool', default=False),
            stop_on_failure=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    if module.params['parallel'] < 1:
        module.fail('parallel is %d: give at least 1' % module.params['parallel'], error_kind='value')
    module.exit(**FleetManager(module).run())


if __name__ == '__main__':
    main()
