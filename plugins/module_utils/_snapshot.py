# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""Bring a domain's snapshot to the state a task asks for (the snapshot module)."""

from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import Manager
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import ACTIVE_STATES
from ansible_collections.embedvirt.libvirt.plugins.module_utils._rules import (
    REVERT, SNAPSHOT, clone_source_problem, creation_problem, name_problem)

STATES = ['present', 'absent', 'reverted']


def render(snapshots):
    """A domain's snapshots as diff text, one line each."""
    return ''.join('%s: %s%s%s\n' % (
        s['name'], 'memory' if s['memory'] else 'disks', ', parent %s' % s['parent'] if s['parent'] else '',
        ', current' if s['current'] else '') for s in snapshots)


class SnapshotManager(Manager):

    def run(self):
        params = self.params
        domain, name = params['domain'], params['name']
        # Before anything: QEMU could take the name for another snapshot's (the helper checks again).
        self.refuse(name_problem(name, deleting=params['state'] == 'absent'))
        self.domain = self.module.helper_or_fail.domain_get(name=domain)
        if self.domain is None:
            self.module.fail("domain '%s' is not defined in root %s: check the name with "
                             "embedvirt.libvirt.domain_info" % (domain, params['root']), error_kind='no_domain')
        before = self.module.helper_or_fail.snapshot_list(name=domain)
        self.snapshots = [dict(s) for s in before]
        existing = self.find(name)
        getattr(self, 'ensure_' + params['state'])(domain, name, existing)
        result = dict(changed=self.changed, actions=self.actions, snapshot=self.find(name),
                      snapshots=self.snapshots, domain=self.domain)
        if self.module.diff_mode:
            result['diff'] = dict(before=render(before), after=render(self.snapshots),
                                  before_header='%s snapshots (before)' % domain,
                                  after_header='%s snapshots (after)' % domain)
        return result

    def find(self, name):
        return next((s for s in self.snapshots if s['name'] == name), None)

    def refuse_clone_source(self, domain, action):
        self.refuse(clone_source_problem(domain, self.module.helper_or_fail.domain_clones(name=domain), action))

    def ensure_present(self, domain, name, existing):
        if existing is not None:
            return
        params = self.params
        running = self.domain['state'] in ACTIVE_STATES
        memory = params['memory']
        if memory is None:
            memory = running and not params['quiesce']  # quiescing is for a snapshot of the disks
        # The helper's own checks, made here too so that check mode predicts no snapshot it would refuse.
        self.refuse(creation_problem(domain, name, running, memory, params['quiesce'], self.domain['xml']))
        self.refuse_clone_source(domain, SNAPSHOT)
        if self.plan('create'):
            created = self.module.helper_or_fail.snapshot_create(
                name=domain, snapshot=name, description=params['description'], memory=memory,
                quiesce=params['quiesce'], timeout=params['timeout'])
            self.snapshots = self.module.helper_or_fail.snapshot_list(name=domain)
            if not created['memory'] and running:
                self.domain = self.module.helper_or_fail.domain_get(name=domain)
            return
        # Check mode: what the helper would record.
        parent = next((s['name'] for s in self.snapshots if s['current']), None)
        for snapshot in self.snapshots:
            snapshot['current'] = False
        self.snapshots.append(dict(name=name, description=params['description'], creation_time=None,
                                   parent=parent, state=self.domain['state'] if memory else 'shutoff',
                                   memory=memory, current=True))

    def ensure_absent(self, domain, name, existing):
        if existing is None:
            return
        if self.plan('delete'):
            self.module.helper_or_fail.snapshot_delete(name=domain, snapshot=name)
            self.snapshots = self.module.helper_or_fail.snapshot_list(name=domain)
        else:
            self.snapshots.remove(existing)
            for snapshot in self.snapshots:
                if snapshot['parent'] == name:
                    snapshot['parent'] = existing['parent']  # as libvirt re-parents the children

    def ensure_reverted(self, domain, name, existing):
        if existing is None:
            self.module.fail("domain '%s' has no snapshot '%s': list them with embedvirt.libvirt.domain_info "
                             "snapshots=true" % (domain, name), error_kind='no_snapshot')
        self.refuse_clone_source(domain, REVERT)
        if self.plan('revert'):
            self.domain = self.module.helper_or_fail.snapshot_revert(name=domain, snapshot=name)
            self.snapshots = self.module.helper_or_fail.snapshot_list(name=domain)
            return
        for snapshot in self.snapshots:
            snapshot['current'] = snapshot['name'] == name
        if existing['memory']:
            self.domain = dict(self.domain, state=existing['state'])
