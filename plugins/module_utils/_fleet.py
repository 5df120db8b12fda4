# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Many guests of one root converged in one task (the instances module): each guest is what
embedvirt.libvirt.instance makes of its options, carried out by that module's own manager in a
thread of its own with its own connection to the root's helper, which serves them at once.

Guests go in waves, each bounded by `parallel`: first one guest per base image (so that an
image is fetched once, not by every guest that needs it), then the other guests, then linked
clones (whose templates may be in the waves before). A guest that fails does not stop the
others unless stop_on_failure; the task fails at the end naming every guest that failed.
"""

import concurrent.futures

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.embedvirt.libvirt.plugins.module_utils._client import HelperClient
from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import (
    ROOT_ARGUMENT_SPEC, EmbedvirtModule, Manager, ModuleOperations)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._instance import (
    ARGUMENT_SPEC, MUTUALLY_EXCLUSIVE, InstanceManager, recorded_options)

# What a guest that failed said, in the task's message.
MESSAGE_CHARACTERS = 300


class GuestFailed(Exception):
    """One guest's task failed: its message and result (error_kind...)."""

    def __init__(self, msg, result):
        super().__init__(msg)
        self.result = dict(result, msg=msg)


class GuestModule(EmbedvirtModule):
    """The instances module as one guest's InstanceManager sees it: that guest's options, a
    connection of its own to the root's helper, its own undo and warnings; a failure raises
    GuestFailed instead of ending the task."""

    # pylint: disable-next=super-init-not-called
    def __init__(self, fleet_module, params):
        self.module = fleet_module.module
        self.params = params
        self.check_mode = fleet_module.check_mode
        self.diff_mode = fleet_module.diff_mode
        self.read_only = False
        self.undo = []
        self.warnings = []
        client = fleet_module.client
        self.client = HelperClient(params['root'], idle_timeout=params['helper_idle_timeout'],
                                   python=params['helper_python'], helper_code=(client.bundle, client.version))
        self.root_missing = fleet_module.root_missing
        self.predicted_from_empty_root = False
        self.helper_or_fail = ModuleOperations(self)

    def fail(self, msg, **result):
        raise GuestFailed(self.undone(msg), result)

    def warn(self, msg):
        self.warnings.append(msg)

    # AnsibleModule's own would end the whole task from this guest's thread (fail_json).
    def get_bin_path(self, name):
        path = self.module.get_bin_path(name)
        if path is None:
            self.fail('%s is not installed on the hypervisor: install it (the host role does)' % name,
                      error_kind='os')
        return path

    def run_command(self, args, **kwargs):
        try:
            return self.module.run_command(args, handle_exceptions=False, **kwargs)
        except OSError as e:
            self.fail('cannot run %s: %s' % (args[0], e), error_kind='os')

    def close(self):
        self.client.close()


class FleetManager(Manager):
    """The guests of one task, converged in parallel; with exclusive, the root's other instances removed."""

    def __init__(self, module):
        super().__init__(module)
        self.results = {}
        self.failed = {}
        self.not_started = []
        self.removed = []
        self.kept = []
        self.attempted = 0

    def run(self):
        guests = self.guest_params()
        if self.params['exclusive'] and not guests:
            self.module.fail('guests is empty and exclusive is true, which would remove every instance of root %s: '
                             'list the guests to keep, or leave exclusive out' % self.params['root'], error_kind='value')
        before = sorted(domain['name'] for domain in self.module.helper_or_fail.domain_list())
        for wave in self.waves(guests):
            self.converge(wave)
        if self.params['exclusive'] and not self.failed:
            self.remove_unlisted(set(guest['name'] for guest in guests), before)
        elif self.params['exclusive']:
            self.module.warn('exclusive: nothing was removed, as guests failed')
        if self.failed:
            self.module.fail('%d of %d guests failed: %s. Fix: see each one in failures; the others were converged'
                             % (len(self.failed), self.attempted,
                                '; '.join('%s (%s): %s' % (name, result.get('error_kind', 'error'),
                                                           result['msg'][:MESSAGE_CHARACTERS])
                                          for name, result in sorted(self.failed.items()))),
                             error_kind='guests', **self.result(before))
        return self.result(before)

    def result(self, before):
        after = sorted(set(before) - set(self.removed) | set(self.results))
        result = dict(changed=self.changed, guests=self.results, failures=self.failed, removed=self.removed,
                      kept=self.kept, not_started=self.not_started)
        if self.module.diff_mode:
            result['diff'] = dict(before_header='guests of %s' % self.params['root'], after_header='guests of %s'
                                  % self.params['root'], before=''.join(name + '\n' for name in before),
                                  after=''.join(name + '\n' for name in after))
        return result

    # --- the guests' options ---------------------------------------------------------------
    def guest_params(self):
        """Each guest's options (defaults, then its own), checked as the instance module checks
        them, with the task's root options; the task fails naming every guest that is wrong."""
        validator = ArgumentSpecValidator(ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE)
        root_options = dict((key, self.params[key]) for key in ROOT_ARGUMENT_SPEC)
        guests, problems, names = [], [], set()
        for number, given in enumerate(self.params['guests']):
            if isinstance(given, str):
                given = dict(name=given)
            if not isinstance(given, dict):
                problems.append('#%d: %r is neither a name nor a dict of options' % (number + 1, given))
                continue
            merged = dict(self.params['defaults'] or {}, **given)
            checked = validator.validate(merged)
            name = merged.get('name') or '#%d' % (number + 1)
            if checked.error_messages:
                problems.append('%s: %s' % (name, '; '.join(checked.error_messages)))
                continue
            if name in names:
                problems.append('%s: listed twice' % name)
            names.add(name)
            guests.append(dict(checked.validated_parameters, **root_options))
        if problems:
            self.module.fail('guests: %s. Fix: give each guest the options of embedvirt.libvirt.instance, once'
                             % ' | '.join(problems), error_kind='value')
        return guests

    @staticmethod
    def waves(guests):
        """The guests in the order they can go: one per base image, the rest, the linked clones."""
        pioneers, others, clones, images = [], [], [], set()
        for guest in guests:
            if guest['clone_from']:
                clones.append(guest)
            elif guest['image'] and guest['image'] not in images:
                images.add(guest['image'])
                pioneers.append(guest)
            else:
                others.append(guest)
        return [wave for wave in (pioneers, others, clones) if wave]

    # --- converging ------------------------------------------------------------------------
    def converge(self, guests):
        """Each guest's InstanceManager, at most `parallel` at a time."""
        pending = list(guests)
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.params['parallel']) as pool:
            running = {}
            while pending or running:
                while pending and len(running) < self.params['parallel'] and not self.stopping():
                    guest = pending.pop(0)
                    running[pool.submit(self.one, guest)] = guest['name']
                if not running:
                    self.not_started.extend(guest['name'] for guest in pending)
                    return
                done, dummy = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    self.record(running.pop(future), future.result())

    def stopping(self):
        return self.params['stop_on_failure'] and bool(self.failed)

    def one(self, params):
        """(result, failure, warnings) of one guest's task, on its own connection."""
        guest = GuestModule(self.module, params)
        try:
            return InstanceManager(guest).run(), None, guest.warnings
        except GuestFailed as e:
            return None, e.result, guest.warnings
        except (Exception, SystemExit) as e:  # pylint: disable=broad-except
            # A bug: this guest fails with what it was, its undo done; the others go on.
            msg = guest.undone('failed: %s: %s. Fix: this is a bug, report it with the output of -vvv'
                               % (type(e).__name__, e))
            return None, dict(msg=msg, error_kind='internal'), guest.warnings
        finally:
            guest.close()

    def record(self, name, outcome):
        result, failure, warnings = outcome
        self.attempted += 1
        for warning in warnings:
            self.module.warn('%s: %s' % (name, warning))
        if failure is not None:
            self.failed[name] = failure
            return
        self.results[name] = result
        if result['changed']:
            self.changed = True
            self.actions.extend('%s: %s' % (name, action) for action in result['actions'])

    # --- exclusive -------------------------------------------------------------------------
    def remove_unlisted(self, listed, before):
        """Undefine, as instance state=undefined does, the root's instances this task does not
        list: linked clones first, then what they were built on. A template that keeps clones,
        and a domain another module defined, stay (kept, with the reason)."""
        unlisted = [name for name in before if name not in listed]
        if not unlisted:
            return
        details = dict((name, self.module.helper_or_fail.domain_get(name=name)) for name in unlisted)
        instances = [name for name in unlisted if details[name] and recorded_options(details[name]['xml'])]
        self.kept.extend(dict(name=name, reason='not an instance (another module defined it)')
                         for name in unlisted if name not in instances)
        # Clones first, then what they were built on (a clone of a clone before its source). What
        # keeps a clone (one listed, or one that failed to go) stays.
        clones = dict((name, self.module.helper_or_fail.domain_clones(name=name)) for name in instances)
        waiting = list(instances)
        while waiting:
            progress = False
            for name in list(waiting):
                if [user for user in clones[name] if user in waiting]:
                    continue  # its clones go first
                waiting.remove(name)
                progress = True
                self.remove(name, clones[name])
            if not progress:  # only if libvirt's clones made a cycle: never loop for ever
                for name in waiting:
                    self.kept.append(dict(name=name, reason='a source of linked clones that were not removed'))
                return

    def remove(self, name, users):
        """Undefine one unlisted instance whose unlisted clones went (or would go) before it."""
        kept = [user for user in users if user not in self.removed]
        if self.stopping():
            self.not_started.append(name)
        elif kept:
            self.kept.append(dict(name=name, reason='the source of the linked clones %s' % ', '.join(kept)))
        elif users and self.module.check_mode:
            # Its clones go first, which check mode only predicts: so is its own removal.
            self.plan('%s: undefine (after its clones)' % name)
            self.removed.append(name)
        else:
            self.record(name, self.one(self.params_of_removal(name)))
            if name not in self.failed:
                self.results.pop(name)
                self.removed.append(name)

    def params_of_removal(self, name):
        params = dict((key, spec.get('default')) for key, spec in ARGUMENT_SPEC.items())
        params.update((key, self.params[key]) for key in ROOT_ARGUMENT_SPEC)
        params.update(name=name, state='undefined')
        return params
