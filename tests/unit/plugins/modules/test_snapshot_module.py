# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""embedvirt.libvirt.snapshot (SnapshotManager) against a helper that speaks the real protocol."""

import pytest

from ansible_collections.embedvirt.libvirt.plugins.modules import snapshot
from ansible_collections.embedvirt.libvirt.tests.unit.plugins.module_runner import run_module


def run(fake, **args):
    return run_module(snapshot.main, fake.root, **args)


def test_check_mode_predicts_a_memory_snapshot_of_a_running_guest_and_sends_nothing(fake_helper):
    fake_helper.add_domain('web', state='running', snapshots=['base'])
    result = run(fake_helper, domain='web', name='s1', check_mode=True, diff=True)
    assert result['changed'] and result['actions'] == ['create']
    assert result['snapshot']['memory'] and result['snapshot']['parent'] == 'base' and result['snapshot']['current']
    assert [s['current'] for s in result['snapshots']] == [False, True]
    assert result['diff']['after'] == 'base: disks\ns1: memory, parent base, current\n'
    assert fake_helper.changes() == [] and fake_helper.domains['web']['snapshots'] == ['base']


def test_create_is_idempotent_by_name_and_quiesce_means_a_disk_snapshot(fake_helper):
    fake_helper.add_domain('web', state='running')
    result = run(fake_helper, domain='web', name='s1', quiesce=True, description='nightly')
    assert result['changed'] and result['snapshot']['name'] == 's1'
    assert fake_helper.args_of('snapshot_create') == [dict(name='web', snapshot='s1', description='nightly', memory=False,
                                                           quiesce=True, timeout=60)]
    fake_helper.requests.clear()
    again = run(fake_helper, domain='web', name='s1', memory=True)
    assert not again['changed'] and again['actions'] == [] and fake_helper.changes() == []


def test_absent_deletes_once_and_check_mode_reparents_the_children(fake_helper):
    fake_helper.add_domain('web', snapshots=['a', 'b', 'c'])
    predicted = run(fake_helper, domain='web', name='b', state='absent', check_mode=True)
    assert [(s['name'], s['parent']) for s in predicted['snapshots']] == [('a', None), ('c', 'a')]
    assert fake_helper.changes() == []
    assert run(fake_helper, domain='web', name='b', state='absent')['actions'] == ['delete']
    assert fake_helper.domains['web']['snapshots'] == ['a', 'c']
    assert not run(fake_helper, domain='web', name='b', state='absent')['changed']


def test_reverted_always_reverts_and_a_missing_snapshot_or_domain_fails(fake_helper):
    fake_helper.add_domain('web', state='running', snapshots=['a'])
    for _round in range(2):
        assert run(fake_helper, domain='web', name='a', state='reverted')['actions'] == ['revert']
    missing = run(fake_helper, domain='web', name='zz', state='reverted')
    assert missing['failed'] and missing['error_kind'] == 'no_snapshot' and 'snapshots=true' in missing['msg']
    no_domain = run(fake_helper, domain='db', name='a')
    assert no_domain['failed'] and no_domain['error_kind'] == 'no_domain'
    assert len(fake_helper.args_of('snapshot_revert')) == 2


UEFI = "<domain type='qemu'><name>web</name><os firmware='efi'><type>hvm</type></os></domain>"
PFLASH = ("<domain type='qemu'><name>web</name><os><type>hvm</type><loader readonly='yes' type='pflash'>"
          "/usr/share/OVMF/OVMF_CODE_4M.fd</loader></os></domain>")


@pytest.mark.parametrize('state, xml, args, kind, says', [
    ('shutoff', None, dict(memory=True), 'memory', 'start the guest first'),
    ('running', None, dict(name='two words'), 'name', 'give 1 to 100 letters'),
    ('running', None, dict(name='../s1'), 'name', 'give 1 to 100 letters'),
    ('running', None, dict(quiesce=True, memory=True), 'quiesce', 'set quiesce=false'),
    ('shutoff', None, dict(quiesce=True), 'quiesce', 'set quiesce=false'),
    ('running', UEFI, {}, 'memory', 'boots UEFI firmware'),
    ('paused', PFLASH, dict(memory=True), 'memory', 'boots UEFI firmware'),
])
def test_check_mode_refuses_what_the_helper_would_and_sends_nothing(fake_helper, state, xml, args, kind, says):
    fake_helper.add_domain('web', state=state, xml=xml)
    result = run(fake_helper, **dict(dict(domain='web', name='s1', check_mode=True), **args))
    assert result['failed'] and result['error_kind'] == kind
    assert says in result['msg'] and '. Fix: ' in result['msg']
    assert fake_helper.changes() == [] and 'snapshots' not in fake_helper.domains['web']


def test_a_disk_snapshot_of_a_uefi_guest_is_taken(fake_helper):
    fake_helper.add_domain('web', state='running', xml=UEFI)
    result = run(fake_helper, domain='web', name='s1', memory=False)
    assert result['changed'] and fake_helper.args_of('snapshot_create')[0]['memory'] is False
