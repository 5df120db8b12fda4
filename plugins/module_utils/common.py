# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What every module of this collection shares: the root options and the helper client."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.embedvirt.libvirt.plugins.module_utils.client import (
    FILELOCK_IMPORT_ERROR, HAS_FILELOCK, HelperClient, HelperClientError)
from ansible_collections.embedvirt.libvirt.plugins.module_utils.root import RootError

# Matches the doc fragment embedvirt.libvirt.root.
ROOT_ARGUMENT_SPEC = dict(
    root=dict(type='path', required=True, fallback=(env_fallback, ['EMBEDVIRT_ROOT'])),
    helper_idle_timeout=dict(type='int'),
)


class EmbedvirtModule:
    """An AnsibleModule bound to one root's helper; every failure ends in fail_json."""

    def __init__(self, argument_spec, **kwargs):
        spec = dict(ROOT_ARGUMENT_SPEC)
        spec.update(argument_spec)
        self.module = AnsibleModule(argument_spec=spec, **kwargs)
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.undo = []
        if not HAS_FILELOCK:
            self.module.fail_json(msg=missing_required_lib('filelock'), exception=str(FILELOCK_IMPORT_ERROR))
        timeout = self.params['helper_idle_timeout']
        if timeout is not None and timeout < 0:
            self.fail('helper_idle_timeout is %d: give a number of seconds, or 0 to keep the '
                      'helper running' % timeout)
        try:
            self.client = HelperClient(self.params['root'], idle_timeout=timeout)
        except RootError as e:
            self.fail(str(e), error_kind='root')

    def fail(self, msg, **result):
        """Fail the task, first undoing what undo callbacks were registered for."""
        while self.undo:
            what, function = self.undo.pop()
            try:
                function()
                msg += ' (%s)' % what
            except Exception as e:  # pylint: disable=broad-except
                msg += ' (could not undo: %s: %s)' % (what, e)
        self.module.fail_json(msg=msg, **result)

    def on_failure_undo(self, what, function):
        """Register function to run if the task fails later; what says what it undoes."""
        self.undo.append((what, function))

    def guard(self, function, *args, **kwargs):
        """Run function, turning the errors of the lower layers into fail_json."""
        try:
            return function(*args, **kwargs)
        except RootError as e:
            self.fail(str(e), error_kind='root')
        except HelperClientError as e:
            self.fail(str(e), error_kind=e.kind)

    def call(self, op, **args):
        return self.guard(self.client.call, op, **args)

    def exit(self, **result):
        self.client.close()
        self.module.exit_json(**result)


class Manager:
    """What the modules' manager classes share: whether the task changed something and the
    actions it took (or, in check mode, would take)."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.changed = False
        self.actions = []

    def act(self, action):
        """Record an action; whether to carry it out (not in check mode)."""
        self.changed = True
        self.actions.append(action)
        return not self.module.check_mode
