# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""embedvirt.libvirt.secret (SecretManager) against a helper that speaks the real protocol."""

import base64
import json

from ansible_collections.embedvirt.libvirt.plugins.modules import secret
from ansible_collections.embedvirt.libvirt.tests.unit.plugins.module_runner import run_module

UUID = '0a81f5b2-8403-4b2f-b5f7-5f1ea2b46d4e'
VALUE = 'hunter2-ünïcode'


def run(fake, **args):
    return run_module(secret.main, fake.root, **args)


def test_create_with_a_value_then_nothing_to_do(fake_helper):
    result = run(fake_helper, uuid=UUID, value=VALUE, description='disk key')
    assert result['changed'] and result['actions'] == ['define', 'set value'] and result['value_changed']
    assert result['secret'] == {'uuid': UUID, 'usage_type': 'none', 'usage_id': None, 'description': 'disk key',
                                'private': True, 'ephemeral': False}
    assert fake_helper.secrets[UUID]['value'] == VALUE.encode('utf-8')
    fake_helper.requests.clear()
    again = run(fake_helper, uuid=UUID, value=VALUE, description='disk key')
    assert not again['changed'] and again['actions'] == [] and not again['value_changed']
    assert fake_helper.ops() == ['secret_get', 'secret_value_matches']


def test_the_value_is_never_in_the_result(fake_helper):
    result = run(fake_helper, uuid=UUID, value=VALUE, diff=True)
    assert 'hunter2' not in json.dumps(result)
    assert result['diff']['after'].endswith('value: (changed)\n')


def test_check_mode_predicts_and_changes_nothing(fake_helper):
    result = run(fake_helper, uuid=UUID, value=VALUE, check_mode=True)
    assert result['changed'] and result['actions'] == ['define', 'set value']
    assert result['secret']['uuid'] == UUID
    assert fake_helper.changes() == [] and fake_helper.secrets == {}


def test_a_new_value_only_sets_the_value(fake_helper):
    run(fake_helper, uuid=UUID, value=VALUE)
    result = run(fake_helper, uuid=UUID, value=base64.b64encode(b'\x00\xff').decode(), value_encoding='base64')
    assert result['changed'] and result['actions'] == ['set value']
    assert fake_helper.secrets[UUID]['value'] == b'\x00\xff'


def test_a_secret_is_found_by_its_usage(fake_helper):
    run(fake_helper, usage_type='ceph', usage_id='client.admin')
    assert fake_helper.args_of('secret_get') == [{'uuid': None, 'usage_type': 'ceph', 'usage_id': 'client.admin'}]
    fake_helper.requests.clear()
    assert not run(fake_helper, usage_type='ceph', usage_id='client.admin')['changed']
    assert len(fake_helper.secrets) == 1


def test_removal_then_nothing_to_do(fake_helper):
    run(fake_helper, uuid=UUID, value=VALUE)
    result = run(fake_helper, uuid=UUID, state='absent')
    assert result['changed'] and result['actions'] == ['undefine'] and result['secret'] is None
    assert fake_helper.args_of('secret_undefine') == [{'uuid': UUID}]
    assert not run(fake_helper, uuid=UUID, state='absent')['changed']


def test_bad_base64_fails_value_before_anything_changes(fake_helper):
    result = run(fake_helper, uuid=UUID, value='not base64!', value_encoding='base64')
    assert result['failed'] and result['error_kind'] == 'value' and 'value_encoding=text' in result['msg']
    assert fake_helper.changes() == []


def test_a_libvirt_error_reaches_the_task_with_its_kind_and_fix(fake_helper):
    fake_helper.refuse('secret_define', 'libvirt', 'operation failed: a secret with UUID x already defined',
                       'use that secret')
    result = run(fake_helper, uuid=UUID)
    assert result['failed'] and result['error_kind'] == 'libvirt'
    assert result['msg'] == 'operation failed: a secret with UUID x already defined. Fix: use that secret'


def test_ephemeral_secrets_are_refused_where_libvirt_crashes_check_mode_too(fake_helper):
    for check_mode in (True, False):
        result = run(fake_helper, usage_type='tls', usage_id='brief', ephemeral=True, check_mode=check_mode)
        assert result['failed'] and result['error_kind'] == 'unsupported'
        assert 'libvirt 9.0.0' in result['msg'] and 'use ephemeral=false' in result['msg']
    assert fake_helper.changes() == []


def test_ephemeral_secrets_are_defined_where_libvirt_holds_them(fake_helper):
    fake_helper.libvirt_version = '11.3.0'
    result = run(fake_helper, usage_type='tls', usage_id='brief', ephemeral=True)
    assert result['changed'] and result['actions'] == ['define'] and result['secret']['ephemeral']
