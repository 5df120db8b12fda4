# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""embedvirt.libvirt.domain (DomainManager) against a helper that speaks the real protocol."""

from ansible_collections.embedvirt.libvirt.plugins.modules import domain
from ansible_collections.embedvirt.libvirt.tests.unit.plugins.module_runner import run_module

# A definition with the blank text libvirt drops when it stores one.
XML = '<domain type="qemu">\n  <name>web</name>\n  <memory unit="MiB">64</memory>\n</domain>\n'


def run(fake, **args):
    return run_module(domain.main, fake.root, **args)


def test_define_then_nothing_to_do(fake_helper):
    result = run(fake_helper, xml=XML)
    assert result['changed'] and result['actions'] == ['define']
    assert result['domain']['state'] == 'shutoff' and result['domain']['persistent']
    assert fake_helper.args_of('domain_define') == [{'xml': XML}]
    # The second run compares with libvirt's stored form, not with the text given.
    fake_helper.requests.clear()
    again = run(fake_helper, xml=XML)
    assert not again['changed'] and again['actions'] == []
    assert fake_helper.changes() == []


def test_check_mode_predicts_and_changes_nothing(fake_helper):
    result = run(fake_helper, xml=XML, state='running', autostart=True, check_mode=True)
    assert result['changed'] and result['actions'] == ['define', 'autostart', 'start']
    assert result['domain']['state'] == 'running' and result['domain']['autostart']
    # Reading only: whether it is a source of linked clones, which would refuse the start.
    assert fake_helper.ops() == ['domain_plan', 'domain_clones'] and fake_helper.domains == {}


def test_diff_shows_state_first(fake_helper):
    fake_helper.add_domain('web', state='paused')
    result = run(fake_helper, name='web', state='running', diff=True)
    assert result['actions'] == ['resume']
    diff = result['diff']
    assert diff['before'].startswith('state: paused\n') and diff['after'].startswith('state: running\n')
    assert (diff['before_header'], diff['after_header']) == ('web (before)', 'web (after)')


def test_paused_from_shutoff_starts_paused(fake_helper):
    fake_helper.add_domain('web')
    result = run(fake_helper, name='web', state='paused')
    assert result['actions'] == ['start_paused'] and result['domain']['state'] == 'paused'
    assert fake_helper.args_of('domain_start') == [{'name': 'web', 'paused': True}]


def test_undefine_a_running_domain_destroys_it_first_and_is_idempotent(fake_helper):
    fake_helper.add_domain('web', state='running')
    result = run(fake_helper, name='web', state='undefined')
    assert result['changed'] and result['actions'] == ['destroy', 'undefine'] and result['domain'] is None
    assert fake_helper.domains == {}
    assert not run(fake_helper, name='web', state='undefined')['changed']


def test_undefine_with_snapshots_is_refused_before_anything_changes_unless_asked(fake_helper):
    fake_helper.add_domain('web', state='running', snapshots=['s1', 's2'])
    result = run(fake_helper, name='web', state='undefined')
    assert result['failed'] and result['error_kind'] == 'snapshots' and 's1, s2' in result['msg'] and 'remove_snapshots' in result['msg']
    assert fake_helper.changes() == [] and fake_helper.domains['web']['state'] == 'running'
    predicted = run(fake_helper, name='web', state='undefined', remove_snapshots=True, check_mode=True)
    assert predicted['actions'] == ['destroy', 'delete_snapshots', 'undefine'] and fake_helper.changes() == []
    result = run(fake_helper, name='web', state='undefined', remove_snapshots=True)
    assert result['actions'] == ['destroy', 'delete_snapshots', 'undefine'] and fake_helper.domains == {}
    assert fake_helper.args_of('domain_undefine') == [{'name': 'web', 'remove_snapshots': True, 'remove_tpm': False}]


def test_redefining_a_running_domain_warns_when_it_takes_effect(fake_helper):
    fake_helper.add_domain('web', state='running', xml='<domain type="qemu"><name>web</name></domain>')
    result = run(fake_helper, xml=XML)
    assert result['actions'] == ['redefine']
    assert any('takes effect at its next start' in w for w in result['warnings'])


def test_a_missing_domain_without_xml_fails_no_domain_with_the_fix(fake_helper):
    result = run(fake_helper, name='ghost', state='running')
    assert result['failed'] and result['error_kind'] == 'no_domain'
    assert "'ghost' is not defined" in result['msg'] and 'give xml to define it' in result['msg']
    assert fake_helper.changes() == []


def test_a_name_the_xml_contradicts_never_reaches_the_helper(fake_helper):
    result = run(fake_helper, name='db', xml=XML)
    assert result['failed'] and result['error_kind'] == 'xml' and 'make them agree' in result['msg']
    assert fake_helper.requests == []


def test_autostart_of_a_transient_domain_fails_transient(fake_helper):
    fake_helper.add_domain('web', state='running', persistent=False)
    result = run(fake_helper, name='web', state='running', autostart=True)
    assert result['failed'] and result['error_kind'] == 'transient' and 'define it (give xml)' in result['msg']
    assert fake_helper.changes() == []


def test_a_libvirt_error_reaches_the_task_with_its_kind_and_fix(fake_helper):
    fake_helper.add_domain('web')
    fake_helper.refuse('domain_start', 'libvirt', 'internal error: qemu unexpectedly closed the monitor',
                       'see log/qemu/web.log in the root')
    result = run(fake_helper, name='web', state='running')
    assert result['failed'] and result['error_kind'] == 'libvirt'
    assert result['msg'] == ('internal error: qemu unexpectedly closed the monitor. '
                             'Fix: see log/qemu/web.log in the root')


def test_a_definition_this_task_made_goes_again_when_a_later_step_fails(fake_helper):
    fake_helper.refuse('domain_start', 'libvirt', 'unsupported configuration: no such emulator')
    result = run(fake_helper, xml=XML, state='running')
    assert result['failed'] and result['error_kind'] == 'libvirt'
    assert 'the definition this task made was removed again' in result['msg']
    assert fake_helper.ops() == ['domain_plan', 'domain_clones', 'domain_define', 'domain_start', 'domain_undefine']
    assert fake_helper.domains == {}


def test_a_guest_that_ignores_shutdown_fails_shutdown_timeout_unless_forced(fake_helper):
    fake_helper.add_domain('web', state='running', ignores_shutdown=True)
    result = run(fake_helper, name='web', state='shutdown', shutdown_timeout=5)
    assert result['failed'] and result['error_kind'] == 'shutdown_timeout'
    assert 'within 5 s' in result['msg'] and 'force=true' in result['msg']
    assert result['changed'] and result['actions'] == ['shutdown']
    assert fake_helper.args_of('domain_shutdown') == [{'name': 'web', 'timeout': 5, 'force': False}]
    forced = run(fake_helper, name='web', state='shutdown', force=True)
    assert forced['actions'] == ['shutdown', 'destroy'] and forced['domain']['state'] == 'shutoff'


def test_restarted_powers_off_forced_after_the_timeout_then_starts_and_starts_a_guest_that_is_off(fake_helper):
    fake_helper.add_domain('web', state='running', ignores_shutdown=True)
    result = run(fake_helper, name='web', state='restarted', shutdown_timeout=5)
    assert result['changed'] and result['actions'] == ['shutdown', 'destroy', 'start']
    assert result['domain']['state'] == 'running'
    assert fake_helper.args_of('domain_shutdown') == [{'name': 'web', 'timeout': 5, 'force': True}]
    fake_helper.set_state('web', 'shutoff')
    off = run(fake_helper, name='web', state='restarted')
    assert off['changed'] and off['actions'] == ['start']
    checked = run(fake_helper, name='web', state='restarted', check_mode=True)
    assert checked['changed'] and checked['actions'] == ['shutdown', 'start']


def test_a_transient_domain_is_not_restarted(fake_helper):
    fake_helper.add_domain('web', state='running', persistent=False)
    result = run(fake_helper, name='web', state='restarted')
    assert result['failed'] and result['error_kind'] == 'transient' and not result.get('changed')
    assert fake_helper.changes() == []
