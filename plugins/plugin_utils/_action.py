# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""The action of every module of this collection: the module, with the helper's code only when
it must start one.

A module's payload holds every module_utils it may import, and with pipelining Python reads a
payload from stdin a byte per read(2), about 0.5 ms a KB. The helper's code (the bundle, 60 KB
of payload) is needed only to start a root's helper, so it stays here: the module gets the
bundle's version (_helper_version), finds the helper running that version and does its work,
or, before it has done anything, fails with error_kind helper_code_needed; then it runs again
with the bundle (_helper_code). A module that always needs the bundle (root_dir writes it for
the boot unit) and an async task, whose result comes too late to answer, get it at once.
"""

import functools

from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

from ansible_collections.embedvirt.libvirt.plugins.module_utils._bundle import helper_bundle
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import ERROR_HELPER_CODE_NEEDED


@functools.lru_cache(maxsize=None)
def bundle():
    """(the helper's bundle as text, its version), made once per controller process."""
    data, version = helper_bundle()
    return data.decode('utf-8'), version


class EmbedvirtAction(ActionBase):
    """Runs the task's module, giving it the helper's code when it asks for it."""

    _supports_check_mode = True
    _supports_async = True
    # Modules that always need the bundle, not only to start a helper.
    ALWAYS_SEND_CODE = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # no effect since ansible-core 2.x; the connection's own is used
        wrap_async = self._task.async_val and not self._connection.has_native_async
        code, version = bundle()
        args = dict(self._task.args, _helper_version=version)
        if self.ALWAYS_SEND_CODE or self._task.async_val:
            args['_helper_code'] = code
        done = self._execute_module(module_args=args, task_vars=task_vars, wrap_async=wrap_async)
        if done.get('error_kind') == ERROR_HELPER_CODE_NEEDED and '_helper_code' not in args:
            args['_helper_code'] = code
            done = self._execute_module(module_args=args, task_vars=task_vars, wrap_async=wrap_async)
        result = merge_hash(result, done)
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
