#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
module: helper
short_description: Start, stop or inspect the helper process of an embedded libvirt root
version_added: 0.1.0
description:
  - Every task of this collection reaches a root's embedded drivers through one helper process per root,
    which owns libvirt's event loop and the C(qemu:///embed) and C(secret:///embed) connections.
    Tasks start it on demand; this module starts it ahead of time, changes its idle timeout, stops it
    or reports its status.
  - Stopping the helper does not stop guests; the next helper reconnects to them.
options:
  state:
    description:
      - V(started) makes sure a helper of the current code runs (replacing one of other code) and
        applies O(helper_idle_timeout) when given.
      - V(stopped) asks a running helper to finish its requests in flight and exit.
      - V(status) only reports; it never starts or stops anything.
    type: str
    choices: [started, stopped, status]
    default: started
extends_documentation_fragment:
  - embedvirt.libvirt.root
  - embedvirt.libvirt.attributes
  - embedvirt.libvirt.attributes.actiongroup_libvirt
attributes:
  check_mode:
    support: full
    details: Check mode, V(status) and V(stopped) never create the root or start a helper.
  diff_mode:
    support: none
  idempotent:
    support: full
author:
  - Embedvirt Developers (@embedvirt)
'''

EXAMPLES = r'''
- name: Keep the helper of /srv/vms running until told otherwise
  embedvirt.libvirt.helper:
    root: /srv/vms
    helper_idle_timeout: 0

- name: Stop it (guests keep running)
  embedvirt.libvirt.helper:
    root: /srv/vms
    state: stopped
'''

RETURN = r'''
helper:
  description: Status of the helper after the task; C(running) is false when none runs.
  returned: always
  type: dict
  contains:
    running:
      description: Whether a helper serves the root.
      type: bool
      sample: true
    pid:
      description: Process id of the helper.
      type: int
      sample: 4242
    version:
      description: Hash of the helper's code.
      type: str
    uptime:
      description: Seconds since the helper started.
      type: float
    root:
      description: The root it serves.
      type: str
      sample: /srv/vms
    idle_timeout:
      description: Seconds of idleness after which it exits; 0 means never.
      type: int
    requests_served:
      description: Requests answered since it started.
      type: int
    libvirt:
      description: Version of the libvirt library the helper runs, and so of its embedded drivers.
      type: str
      sample: 11.3.0
    subscribers:
      description:
        - Subscriptions to the root's domain events, such as those of the C(embedvirt.libvirt.domain_events) event
          source for ansible-rulebook. While there is one the helper does not exit when idle; one that is stopped
          under a subscription is started again by the subscriber's next attempt.
      type: int
      sample: 1
'''

from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import EmbedvirtModule


def main():
    module = EmbedvirtModule(
        dict(state=dict(type='str', choices=['started', 'stopped', 'status'], default='started')),
        supports_check_mode=True,
        connect_first=False,  # status and stopped need no helper; started asks for the code itself
    )
    client = module.client
    state = module.params['state']
    before = module.guard(client.status)
    current = before is not None and before['version'] == client.version
    after = before
    changed = False
    if state == 'started':
        wanted = module.params['helper_idle_timeout']
        changed = not current or (wanted is not None and before['idle_timeout'] != wanted)
        if changed and not module.check_mode:
            after = module.guard(client.ensure)
    elif state == 'stopped':
        changed = before is not None
        if changed and not module.check_mode:
            module.guard(client.stop)
            after = None
    helper = dict(after or {}, running=after is not None)
    module.exit(changed=changed, helper=helper)


if __name__ == '__main__':
    main()
