# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


import errno

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import (
    EmbedvirtModule, Manager, ModuleOperations, describe_os_error)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import EmbedRoot


class Failed(Exception):
    def __init__(self, msg, result):
        super(Failed, self).__init__(msg)
        self.result = result


class FakeAnsibleModule:
    check_mode = True

    def __init__(self):
        self.exited = None

    def fail_json(self, msg, **result):
        raise Failed(msg, result)

    def exit_json(self, **result):
        self.exited = result


class FakeClient:
    root = EmbedRoot('/tmp/evt-missing')
    notices = []

    def close(self):
        pass


def module_on_missing_root(read_only):
    """An EmbedvirtModule as its constructor leaves it for a missing root (no AnsibleModule needed)."""
    module = EmbedvirtModule.__new__(EmbedvirtModule)
    module.module = FakeAnsibleModule()
    module.params = {'root': '/tmp/evt-missing'}
    module.check_mode = True
    module.undo = []
    module.read_only = read_only
    module.client = FakeClient()
    module.root_missing = True
    module.predicted_from_empty_root = False
    module.helper_or_fail = ModuleOperations(module)
    return module


def test_read_only_module_fails_root_missing_and_says_how_to_create_it():
    module = module_on_missing_root(read_only=True)
    with pytest.raises(Failed) as e:
        module.helper_or_fail.domain_list()
    assert e.value.result['error_kind'] == 'root_missing'
    assert 'root_dir' in str(e.value) and '/tmp/evt-missing' in str(e.value)


def test_check_mode_reads_answer_as_an_empty_root_and_the_result_says_it_would_be_created():
    module = module_on_missing_root(read_only=False)
    plan = module.helper_or_fail.domain_plan(name='web', xml='<domain/>')
    assert plan == {'current': None, 'wanted_xml': '<domain/>', 'define_xml': '<domain/>'}
    assert module.helper_or_fail.secret_get(uuid=None) is None
    assert module.helper_or_fail.domain_clones(name='web') == []  # a start or autostart asks first
    module.exit(changed=True, actions=['define'])
    assert module.module.exited['actions'] == ['create root /tmp/evt-missing', 'define']
    assert 'does not exist' in module.module.exited['msg']


def test_check_mode_on_a_missing_root_with_nothing_to_do_is_unchanged():
    module = module_on_missing_root(read_only=False)
    module.helper_or_fail.domain_plan(name='web', xml=None)
    module.exit(changed=False, actions=[])
    assert module.module.exited['actions'] == []
    assert 'nothing to do' in module.module.exited['msg']


def test_a_change_that_an_empty_root_cannot_answer_fails_root_missing():
    module = module_on_missing_root(read_only=False)
    with pytest.raises(Failed) as e:
        module.helper_or_fail.domain_start(name='web')
    assert e.value.result['error_kind'] == 'root_missing'


@pytest.mark.parametrize('error, kind', [
    (PermissionError(errno.EACCES, 'Permission denied', '/srv/vms/log'), 'os'),
    (ValueError('bad'), 'value'),
])
def test_a_manager_run_that_raises_fails_with_an_error_kind(error, kind):
    class Exploding(Manager):
        def run(self):
            raise error

    module = module_on_missing_root(read_only=False)
    with pytest.raises(Failed) as e:
        Exploding(module).run()
    assert e.value.result['error_kind'] == kind
    assert '[Errno' not in str(e.value)


def test_os_error_names_root_path_errno_and_fix():
    text = describe_os_error(OSError(errno.EROFS, 'Read-only file system', 'helper.lock'), '/srv/vms')
    assert text.startswith("root /srv/vms: 'helper.lock': Read-only file system (EROFS). Fix: remount")
    text = describe_os_error(OSError(errno.EEXIST, 'File exists', '/a', None, '/b'), '/srv/vms')
    assert "'/a' and '/b'" in text and 'move it aside' in text
    assert 'a system call failed' in describe_os_error(OSError(errno.EIO, 'I/O error'), '/srv/vms')
