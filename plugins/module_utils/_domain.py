# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Bring a domain to the definition, autostart flag and state a task asks for."""


from xml.etree import ElementTree

from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import Manager
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import ACTIVE_STATES
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import domain_name_problem
from ansible_collections.embedvirt.libvirt.plugins.module_utils._rules import AUTOSTART, START, clone_source_problem

STATES = ['defined', 'running', 'paused', 'shutdown', 'destroyed', 'restarted', 'undefined']


def name_in_xml(xml):
    """The <name> of a domain XML document (or None), and the parser's complaint (or None)."""
    try:
        return (ElementTree.fromstring(xml).findtext('name') or '').strip() or None, None
    except ElementTree.ParseError as e:
        return None, 'the XML is not well-formed: %s' % e


def same_definition(stored, wanted):
    """Whether two definitions in libvirt's stored form are the same.

    Controllers libvirt adds itself are listed in an order that can differ between a define
    and a later start of the same definition (on q35, the virtio-serial controller of a guest
    agent channel moves past the PCIe root ports), so they compare as a set.
    """
    return canonical_form(stored) == canonical_form(wanted)


def canonical_form(xml):
    tree = ElementTree.fromstring(xml)
    devices = tree.find('devices')
    if devices is not None:
        controllers = devices.findall('controller')
        for controller in controllers:
            devices.remove(controller)
        devices.extend(sorted(controllers, key=ElementTree.tostring))
    return ElementTree.tostring(tree)


def render(domain):
    """A domain as diff text: what a reader checks first, then the definition."""
    if domain is None:
        return ''
    head = 'state: %s\nautostart: %s\npersistent: %s\n' % (
        domain['state'], domain['autostart'], domain['persistent'])
    return head + domain.get('xml', '')


class DomainManager(Manager):
    """Works out and applies the steps from a domain's current form to the wanted one.

    Each step is a helper call; in check mode the steps are only predicted.
    """

    def run(self):
        params = self.params
        name, xml = self.resolve_name()
        state = params['state']
        # Removing a domain needs no normalised definition (and no probe define).
        plan = self.module.helper_or_fail.domain_plan(name=name, xml=xml if state != 'undefined' else None)
        before = plan['current']
        self.domain = dict(before) if before else None
        self.wanted_xml = plan['wanted_xml']
        self.define_xml = plan['define_xml']

        if state == 'undefined':
            self.ensure_undefined(name)
        else:
            self.refuse_clone_source(name)
            self.ensure_definition(name, xml)
            if params['autostart'] is not None:
                self.ensure_autostart(name, params['autostart'])
            getattr(self, 'ensure_' + state)(name)

        result = dict(changed=self.changed, actions=self.actions, domain=self.domain)
        if self.module.diff_mode:
            result['diff'] = dict(before=render(before), after=render(self.domain),
                                  before_header='%s (before)' % name, after_header='%s (after)' % name)
        return result

    def resolve_name(self):
        name, xml = self.params['name'], self.params['xml']
        if xml:
            xml_name, error = name_in_xml(xml)
            if error:
                self.module.fail('%s: fix the XML syntax' % error, error_kind='xml')
            if name and xml_name and name != xml_name:
                self.module.fail("name is '%s' but the XML names the domain '%s': make them agree, "
                                 "or leave name out" % (name, xml_name), error_kind='xml')
            name = name or xml_name
            if not name:
                self.module.fail('the domain XML has no readable <name> and no name option is given: '
                                 'add <name>...</name> to the XML', error_kind='xml')
        # Before the helper (and libvirt) sees it; a definition is also measured against the
        # root's socket paths. The helper checks again: other clients talk to it too.
        problem = domain_name_problem(name, self.module.client.root.path if xml else None)
        if problem:
            self.module.fail('%s. Fix: %s' % problem, error_kind='name')
        return name, xml

    # --- steps -------------------------------------------------------------------------
    def step(self, action, call, predicted, **args):
        """Plan an action; carry it out (call, one of module.helper_or_fail's methods) unless in check
        mode, where the domain becomes predicted."""
        self.domain = call(**args) if self.plan(action) else predicted

    def predict(self, **changes):
        domain = dict(self.domain or {})
        domain.update(changes)
        if changes.get('state') == 'shutoff':
            domain['id'] = None
        return domain

    def require_domain(self, name):
        if self.domain is None:
            self.module.fail("domain '%s' is not defined in root %s: give xml to define it, or check "
                             "the name with embedvirt.libvirt.domain_info" % (name, self.params['root']),
                             error_kind='no_domain')

    def refuse_clone_source(self, name):
        """What the helper refuses for a source of linked clones, refused before anything changes."""
        current = self.domain or {}
        starts = self.params['state'] in ('running', 'paused', 'restarted') and current.get('state') not in ACTIVE_STATES
        autostarts = self.params['autostart'] and not current.get('autostart')
        if starts or autostarts:
            self.refuse(clone_source_problem(name, self.module.helper_or_fail.domain_clones(name=name),
                                             START if starts else AUTOSTART))

    def ensure_definition(self, name, xml):
        if not xml:
            self.require_domain(name)
            return
        current = self.domain
        if current is not None and current['persistent'] and same_definition(current['xml'], self.wanted_xml):
            return
        action = 'define' if current is None or not current['persistent'] else 'redefine'
        predicted = self.predict(name=name, xml=self.wanted_xml, persistent=True)
        if current is None:
            predicted.update(state='shutoff', id=None, uuid=None, autostart=False, state_reason=0)
        self.step(action, self.module.helper_or_fail.domain_define, predicted, xml=self.define_xml)
        if current is None and not self.module.check_mode:
            # Bad input must change nothing: a definition this task made goes if it fails later.
            self.module.on_failure_undo(
                'the definition this task made was removed again',
                lambda: self.module.client.domain_undefine(name=name))
        if current is not None and current['state'] in ACTIVE_STATES and self.params.get('warn_running', True):
            self.module.warn("domain '%s' is %s: its new definition takes effect at its next "
                             "start" % (name, current['state']))

    def ensure_autostart(self, name, autostart):
        if self.domain['autostart'] == autostart:
            return
        if not self.domain['persistent']:
            self.module.fail("domain '%s' is transient and cannot autostart: define it (give xml) "
                             "first" % name, error_kind='transient')
        self.step('autostart' if autostart else 'no_autostart', self.module.helper_or_fail.domain_set_autostart,
                  self.predict(autostart=autostart), name=name, autostart=autostart)

    def ensure_defined(self, name):
        pass

    def ensure_running(self, name):
        state = self.domain['state']
        if state == 'paused':
            self.step('resume', self.module.helper_or_fail.domain_resume, self.predict(state='running'), name=name)
        elif state not in ACTIVE_STATES:
            self.step('start', self.module.helper_or_fail.domain_start, self.predict(state='running'), name=name)

    def ensure_paused(self, name):
        state = self.domain['state']
        if state == 'running':
            self.step('suspend', self.module.helper_or_fail.domain_suspend, self.predict(state='paused'), name=name)
        elif state not in ACTIVE_STATES:
            self.step('start_paused', self.module.helper_or_fail.domain_start, self.predict(state='paused'), name=name, paused=True)

    def ensure_destroyed(self, name):
        if self.domain['state'] in ACTIVE_STATES:
            self.step('destroy', self.module.helper_or_fail.domain_destroy, self.predict(state='shutoff'), name=name)

    def ensure_restarted(self, name):
        """A new boot in a new QEMU, so a definition changed while the guest ran applies too: a
        graceful power-off, forced after shutdown_timeout, then a start."""
        if self.domain['state'] in ACTIVE_STATES:
            if not self.domain['persistent']:
                self.module.fail("domain '%s' is transient: it is gone once it stops, so it cannot be restarted; "
                                 "define it (give xml) first" % name, error_kind='transient')
            self.ensure_shutdown(name, force=True)
        self.ensure_running(name)

    def ensure_shutdown(self, name, force=None):
        state = self.domain['state']
        if state not in ACTIVE_STATES:
            return
        self.changed = True
        if self.module.check_mode:
            # The helper resumes a paused guest first; whether force is needed shows only then.
            self.actions.extend((['resume'] if state == 'paused' else []) + ['shutdown'])
            self.domain = self.predict(state='shutoff')
            return
        timeout = self.params['shutdown_timeout']
        force = self.params['force'] if force is None else force
        outcome = self.module.helper_or_fail.domain_shutdown(name=name, timeout=timeout, force=force)
        self.actions.extend(outcome['steps'])
        self.domain = outcome['domain']
        if not outcome['done']:
            self.module.fail("domain '%s' did not shut down within %d s (state %s): raise "
                             "shutdown_timeout, make sure the guest handles ACPI power-off or has a "
                             "guest agent, or set force=true to power it off"
                             % (name, timeout, self.domain['state']), error_kind='shutdown_timeout',
                             domain=self.domain, actions=self.actions, changed=True)

    def ensure_undefined(self, name):
        if self.domain is None:
            return
        remove_snapshots = self.params.get('remove_snapshots', False)
        snapshots = [s['name'] for s in self.module.helper_or_fail.snapshot_list(name=name)] if self.domain['persistent'] else []
        if snapshots and not remove_snapshots:
            # Before anything changes: libvirt would refuse the undefine after the destroy.
            self.module.fail("domain '%s' has snapshots (%s): libvirt keeps the definition of a domain that has any; "
                             "delete them first (embedvirt.libvirt.snapshot state=absent), or set "
                             "remove_snapshots=true to delete them with the domain" % (name, ', '.join(snapshots)),
                             error_kind='snapshots', snapshots=snapshots)
        if self.domain['state'] in ACTIVE_STATES:
            self.step('destroy', self.module.helper_or_fail.domain_destroy, self.predict(state='shutoff'), name=name)
        if self.domain is not None and self.domain['persistent']:
            if snapshots:
                self.actions.append('delete_snapshots')
            self.step('undefine', self.module.helper_or_fail.domain_undefine, None, name=name,
                      remove_snapshots=bool(snapshots), remove_tpm=self.params.get('remove_tpm', False))
        if self.module.check_mode:
            self.domain = None
