# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What every module of this collection shares: the root options and the helper client."""


import errno
import hashlib
import os
import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.embedvirt.libvirt.plugins.module_utils._client import HelperClient, HelperClientError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import (
    ERROR_HELPER_CODE_NEEDED, ERROR_PROTOCOL, Operations)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import AccountError, RootError

# Matches the doc fragment embedvirt.libvirt.root.
ROOT_ARGUMENT_SPEC = dict(
    root=dict(type='path', required=True, fallback=(env_fallback, ['EMBEDVIRT_ROOT'])),
    helper_idle_timeout=dict(type='int'),
    helper_python=dict(type='path', fallback=(env_fallback, ['EMBEDVIRT_HELPER_PYTHON'])),
    # Set by the collection's action (plugin_utils/_action.py), never by a playbook.
    _helper_version=dict(type='str'),
    _helper_code=dict(type='str', no_log=True),
)

# How a check-mode run answers its reads when the root does not exist yet: as the empty root
# a real run would create, so the run predicts the same changes without creating anything.
EMPTY_ROOT_READS = {
    Operations.domain_plan.operation: lambda args: dict(current=None, wanted_xml=args['xml'], define_xml=args['xml']),
    Operations.domain_list.operation: lambda args: [],
    Operations.domain_disks.operation: lambda args: [],
    Operations.domain_clones.operation: lambda args: [],
    Operations.secret_get.operation: lambda args: None,
    Operations.domain_get.operation: lambda args: None,
}

# The fix for an OSError no layer below expected, by errno.
OS_ERROR_FIXES = {
    errno.EACCES: 'give that path to the owner of the root with a mode that lets the owner use it, or run '
                  'the task as the owner or as root',
    errno.ENOSPC: 'free space on that filesystem',
    errno.EDQUOT: "free space or raise the owner's quota on that filesystem",
    errno.EROFS: 'remount that filesystem read-write, or use a root on another one',
    errno.ENOTDIR: 'something that is not a directory is in the way: move it aside (nothing is removed for you)',
}
OS_ERROR_FIXES[errno.EPERM] = OS_ERROR_FIXES[errno.EACCES]
OS_ERROR_FIXES[errno.EEXIST] = OS_ERROR_FIXES[errno.EISDIR] = OS_ERROR_FIXES[errno.ENOTDIR]


class EmbedvirtModule:
    """An AnsibleModule bound to one root's helper; every failure ends in fail_json."""

    def __init__(self, argument_spec, read_only=False, connect_first=True, **kwargs):
        """read_only: the module only reads (domain_info); it never creates a missing root.
        connect_first: the module calls the helper; without the helper's code, it asks for it
        before doing anything when the helper must start (see require_running_helper)."""
        spec = dict(ROOT_ARGUMENT_SPEC)
        spec.update(argument_spec)
        self.module = AnsibleModule(argument_spec=spec, **kwargs)
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.diff_mode = self.module._diff
        self.undo = []
        timeout = self.params['helper_idle_timeout']
        if timeout is not None and timeout < 0:
            self.fail('helper_idle_timeout is %d: give a number of seconds, or 0 to keep the '
                      'helper running' % timeout)
        # Only a run that may change things creates a missing root (check mode never does).
        self.read_only = read_only
        creates_root = not (read_only or self.check_mode)
        # Two ways to call the helper: client (HelperClient) raises HelperClientError, for a
        # caller that handles a failure; helper_or_fail fails the task.
        self.client = self.guard(HelperClient, self.params['root'], idle_timeout=timeout,
                                 python=self.params['helper_python'], create=creates_root and fill_new_root,
                                 helper_code=self.helper_code())
        self.root_missing = not creates_root and not os.path.lexists(self.client.root.path)
        self.predicted_from_empty_root = False
        self.helper_or_fail = ModuleOperations(self)
        if connect_first and self.client.bundle is None and not self.root_missing:
            self.require_running_helper()

    def helper_code(self):
        """(the helper's bundle or None, its version) as the module's action gave them, or None
        (the module runs without it: a unit test)."""
        version, code = self.params['_helper_version'], self.params['_helper_code']
        if version is None:
            return None
        bundle = None if code is None else code.encode('utf-8')
        if bundle is not None and hashlib.sha256(bundle).hexdigest() != version:
            self.fail("the helper's code given to this task is not of version %s: report this with the task's "
                      'output (-vvv)' % version, error_kind=ERROR_PROTOCOL)
        return bundle, version

    def require_running_helper(self):
        """Connect to the root's helper, or, when it must start (or be replaced), fail at once
        for the helper's code: the module's action runs the task again with it. Nothing has been
        done yet, so running again is safe."""
        if self.guard(self.client.current) is None:
            self.fail("the helper of %s must start: this task runs again with the helper's code"
                      % self.client.root.path, error_kind=ERROR_HELPER_CODE_NEEDED)

    def fail(self, msg, **result):
        """Fail the task, first undoing what undo callbacks were registered for."""
        self.module.fail_json(msg=self.undone(msg), **result)

    def undone(self, msg):
        """Run the undo callbacks registered; msg, with what they undid."""
        while self.undo:
            what, function = self.undo.pop()
            try:
                function()
                msg += ' (%s)' % what
            except Exception as e:  # pylint: disable=broad-except
                msg += ' (could not undo: %s: %s)' % (what, e)
        return msg

    def on_failure_undo(self, what, function):
        """Register function to run if the task fails later; what says what it undoes."""
        self.undo.append((what, function))

    def guard(self, function, *args, **kwargs):
        """Run function, turning the errors of the lower layers into fail_json."""
        try:
            return function(*args, **kwargs)
        except RootError as e:
            self.fail(str(e), error_kind='root')
        except AccountError as e:
            self.fail(str(e), error_kind='account')
        except HelperClientError as e:
            self.fail(str(e), error_kind=e.kind)
        except OSError as e:
            self.fail(describe_os_error(e, self.params['root']), error_kind='os', error_path=e.filename, exception=traceback.format_exc())
        except ValueError as e:
            self.fail('unexpected value: %s. Fix: if it names none of your options, report it with this '
                      "task's traceback (-vvv)" % e, error_kind='value', exception=traceback.format_exc())

    # What the managers need of AnsibleModule: they reach Ansible only through this wrapper.
    def warn(self, msg):
        self.module.warn(msg)

    def get_bin_path(self, name):
        """The path of a program the module cannot work without; the task fails naming it when missing."""
        return self.module.get_bin_path(name, required=True)

    def run_command(self, args, **kwargs):
        return self.module.run_command(args, **kwargs)

    def call_missing_root(self, op, args):
        """Answer a read of check mode as the empty root would; anything else fails root_missing."""
        if self.read_only or op not in EMPTY_ROOT_READS:
            self.fail("root '%s' does not exist: create it first (the embedvirt.libvirt.root role or the "
                      "root_dir module), or correct the path" % self.client.root.path, error_kind='root_missing')
        self.predicted_from_empty_root = True
        return EMPTY_ROOT_READS[op](args)

    def exit(self, **result):
        self.client.close()
        for notice in self.client.notices:
            self.module.warn(notice)
        if self.predicted_from_empty_root:
            path = self.client.root.path
            if result.get('changed'):
                result['actions'] = ['create root %s' % path] + result.get('actions', [])
            result['msg'] = "root '%s' does not exist%s" % (
                path, ': a run without check mode creates it' if result.get('changed') else '; nothing to do')
        self.module.exit_json(**result)


class ModuleOperations(Operations):
    """The helper's operations as modules call them (module.helper_or_fail.domain_plan(...)): a
    failure fails the task; a root that does not exist yet answers check mode's reads as the empty root
    a real run would create."""

    def __init__(self, module):
        self.module = module

    def request(self, op, args):
        if self.module.root_missing:
            return self.module.call_missing_root(op, args)
        return self.module.guard(self.module.client.request, op, args)


class ModuleView:
    """The module as a manager of another module sees it (the instance module runs the
    domain and volume managers): the same module, with that manager's parameters."""

    def __init__(self, module, params):
        self.params = params
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)


class Manager:
    """What the modules' manager classes share: whether the task changed something and the
    actions it took (or, in check mode, would take).

    A subclass's run() goes through EmbedvirtModule.guard, so an error no layer expected
    still fails the task with an error_kind.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get('run')
        if run is not None:
            cls.run = lambda self: self.module.guard(run, self)

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.changed = False
        self.actions = []

    def plan(self, action):
        """Plan an action: record it, and say whether to carry it out now (not in check mode)."""
        self.changed = True
        self.actions.append(action)
        return not self.module.check_mode

    def refuse(self, problem):
        """Fail the task with problem, an (error kind, problem, fix) of a rule the helper
        checks too (before anything changes, in check mode too), unless it is None."""
        if problem:
            self.module.fail('%s. Fix: %s' % problem[1:], error_kind=problem[0])


def fill_new_root(rootdir):
    """What a module writes into a root it has just made, as the root role would: qemu.conf, so
    that the first guest starts (as uid 0, libvirt's own defaults want the system virtlogd), and
    the marker that lets root_dir (and the role) purge it later. What the task should tell.
    Imported here: compiling them would cost every task (AnsiballZ ships sources), and only the
    first task on a root runs this."""
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.embedvirt.libvirt.plugins.module_utils import _marker, _qemu_conf
    settings = _qemu_conf.write_default(rootdir)
    _marker.write_marker(rootdir, 'persistent', replace=False)
    return _qemu_conf.warnings(rootdir.path, settings, False) if settings and rootdir.uid == 0 else []


def describe_os_error(e, root):
    """An OSError as a sentence that names the path and the fix, not '[Errno N] ...'.

    The root is named too: a file opened relative to a directory descriptor has only its
    own name in e.filename.
    """
    name = errno.errorcode.get(e.errno, 'errno %s' % e.errno)
    paths = ' and '.join("'%s'" % p for p in (e.filename, e.filename2) if p is not None)
    fix = OS_ERROR_FIXES.get(e.errno, 'check the owner, mode and type of that path')
    return 'root %s: %s: %s (%s). Fix: %s' % (root, paths or 'a system call failed', e.strerror or e, name, fix)
