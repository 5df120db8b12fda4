#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
module: domain
short_description: Define guests of an embedded libvirt root and bring them to a state
version_added: 0.1.0
description:
  - Defines, starts, pauses, shuts down, powers off and undefines domains (guests) of the embedded
    QEMU driver of a root (C(qemu:///embed?root=...)), through the root's helper process. No libvirtd.
  - A definition is compared in libvirt's own stored form, so attribute order, whitespace and the
    defaults libvirt fills in are not changes; it is redefined only when it really differs, in check
    mode too.
options:
  name:
    description:
      - Name of the domain. Defaults to the C(<name>) of O(xml); when both are given they must agree.
      - One of O(name) and O(xml) is required.
      - libvirt makes paths of domain names, so a name that is empty, V(.) or V(..), contains C(/) or a
        control character, or starts with C(embedvirt-probe-) (reserved) is refused before libvirt sees it.
      - libvirt puts the first 20 characters of the name in the path of the guest's agent socket, which
        may hold 107 bytes; a name whose first 20 characters take more bytes than the root leaves (20
        ASCII characters always fit, as a root of more than 27 bytes reaches libvirt through an alias of
        at most 27; most CJK characters take 3 bytes) is refused before it is defined.
    type: str
  xml:
    description:
      - The domain definition (libvirt domain XML). Template it with Jinja2 in the playbook with
        the P(ansible.builtin.template#lookup) lookup (see the examples).
      - When given, the domain is defined (or redefined) with it before any state change.
      - Interfaces without a C(<mac>) keep the MAC address of the existing definition.
      - A running domain keeps its running configuration until its next start.
    type: str
  state:
    description:
      - V(defined) only defines (with O(xml)) or checks that the domain exists.
      - V(running) starts a shut off domain and resumes a paused one.
      - V(paused) pauses a running domain, or starts a shut off one paused.
      - V(shutdown) asks the guest to power off (ACPI) and waits up to O(shutdown_timeout) seconds;
        then fails, or powers it off when O(force=true).
      - V(destroyed) powers the guest off at once (like pulling the plug); the definition stays.
      - V(restarted) powers a running guest off as V(shutdown) does, at once after O(shutdown_timeout) seconds,
        and starts it again in a new QEMU, so a definition changed while it ran applies; a guest that is off
        is started. It changes something at every run, as a service's V(restarted) does.
      - V(undefined) powers the guest off and removes its definition. Disk images, NVRAM files and TPM state
        (C(lib/swtpm/<uuid>)) are kept. A domain with snapshots is refused (C(error_kind=snapshots)) unless O(remove_snapshots=true).
    type: str
    choices: [defined, running, paused, shutdown, destroyed, restarted, undefined]
    default: defined
  autostart:
    description:
      - Whether the domain starts when its root's drivers start (when the root's helper starts).
      - V(true) is refused (C(error_kind=clone_source)) on the source of linked clones, and so is starting it;
        an autostart mark it got otherwise (by hand, an archive) is removed when the root's drivers open,
        so that it does not start under its clones.
      - Left as it is when omitted.
    type: bool
  remove_snapshots:
    description:
      - With O(state=undefined), delete the domain's snapshots (see M(embedvirt.libvirt.snapshot)) and
        free their space in its disks first; libvirt keeps a domain that has any.
    type: bool
    default: false
  shutdown_timeout:
    description:
      - Seconds to wait for a guest to power off after O(state=shutdown) asked it to.
    type: int
    default: 120
  force:
    description:
      - With O(state=shutdown), power the guest off when it has not shut down within
        O(shutdown_timeout).
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
    details: Shows state, autostart and the stored definition before and after.
  idempotent:
    support: full
seealso:
  - module: embedvirt.libvirt.domain_info
  - module: embedvirt.libvirt.volume
author:
  - Embedvirt Developers (@embedvirt)
'''

EXAMPLES = r'''
- name: A small guest with user-mode networking, running
  embedvirt.libvirt.domain:
    root: /srv/vms
    state: running
    autostart: true
    xml: |
      <domain type='qemu'>
        <name>web</name>
        <memory unit='MiB'>512</memory>
        <vcpu>1</vcpu>
        <os><type arch='x86_64' machine='q35'>hvm</type></os>
        <devices>
          <disk type='file' device='disk'>
            <driver name='qemu' type='qcow2'/>
            <source file='/srv/vms/images/web.qcow2'/>
            <target dev='vda' bus='virtio'/>
          </disk>
          <interface type='user'><model type='virtio'/></interface>
          <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
        </devices>
      </domain>

- name: Definition from a template
  embedvirt.libvirt.domain:
    root: /srv/vms
    xml: "{{ lookup('ansible.builtin.template', 'db.xml.j2') }}"
    state: running

- name: Shut it down, powering it off after 60 s
  embedvirt.libvirt.domain:
    root: /srv/vms
    name: web
    state: shutdown
    shutdown_timeout: 60
    force: true

- name: Remove the definition (disk images stay)
  embedvirt.libvirt.domain:
    root: /srv/vms
    name: web
    state: undefined
'''

RETURN = r'''
domain:
  description: The domain after the task (predicted in check mode); null once undefined.
  returned: always
  type: dict
  contains:
    name:
      description: Domain name.
      type: str
      sample: web
    uuid:
      description: Domain UUID.
      type: str
    id:
      description: Id while running, null otherwise.
      type: int
    state:
      description: libvirt's state, one of nostate, running, blocked, paused, shutdown, shutoff, crashed, pmsuspended.
      type: str
      sample: running
    persistent:
      description: Whether the domain has a stored definition.
      type: bool
    autostart:
      description: Whether it starts with the root's drivers.
      type: bool
    xml:
      description: The stored definition (the live one for a transient domain).
      type: str
actions:
  description: What the task did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [define, autostart, start]
'''

from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import EmbedvirtModule
from ansible_collections.embedvirt.libvirt.plugins.module_utils._domain import STATES, DomainManager


def main():
    module = EmbedvirtModule(
        dict(
            name=dict(type='str'),
            xml=dict(type='str'),
            state=dict(type='str', choices=STATES, default='defined'),
            autostart=dict(type='bool'),
            shutdown_timeout=dict(type='int', default=120),
            force=dict(type='bool', default=False),
            remove_snapshots=dict(type='bool', default=False),
        ),
        required_one_of=[('name', 'xml')],
        supports_check_mode=True,
    )
    if module.params['shutdown_timeout'] < 0:
        module.fail('shutdown_timeout is %d: give a number of seconds' % module.params['shutdown_timeout'])
    module.exit(**DomainManager(module).run())


if __name__ == '__main__':
    main()
