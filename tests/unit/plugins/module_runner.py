# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Run a module's main() in this process with a real AnsibleModule, as ansible-core's own unit
tests do, and return what the task would report."""

import contextlib
import io
import json

import pytest

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core before 2.19: the module reads its arguments from basic._ANSIBLE_ARGS
    from ansible.module_utils import basic

    @contextlib.contextmanager
    def patch_module_args(args):
        """Give AnsibleModule args, as ansible-core 2.19's patch_module_args does."""
        saved = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode()
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = saved


def run_module(main, root, check_mode=False, diff=False, **args):
    """The module's result (exit_json or fail_json alike: see 'failed') for args on root, with
    'warnings' the messages a user sees."""
    args = dict(args, root=root, _ansible_check_mode=check_mode, _ansible_diff=diff)
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main()
    result = json.loads(out.getvalue())
    # ansible-core 2.19 sends warnings as events; the task shows their messages.
    result['warnings'] = [w['event']['msg'] if isinstance(w, dict) else w for w in result.get('warnings', [])]
    return result
