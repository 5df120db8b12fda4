# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""embedvirt.libvirt.domain_info's addresses against a helper that speaks the real protocol."""

from ansible_collections.embedvirt.libvirt.plugins.module_utils._network import interface_xml
from ansible_collections.embedvirt.libvirt.plugins.modules import domain_info
from ansible_collections.embedvirt.libvirt.tests.unit.plugins.module_runner import run_module

ETH0 = {'name': 'eth0', 'hwaddr': '52:54:00:12:34:56',
        'addresses': [{'type': 'ipv4', 'address': '10.0.2.15', 'prefix': 24}]}


def domain_xml(name, network):
    """A domain with the network the instance module would give it."""
    devices, args = interface_xml(network, name)
    return ("<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><name>%s</name>"
            "<devices>%s</devices><qemu:commandline>%s</qemu:commandline></domain>"
            % (name, devices, ''.join("<qemu:arg value='%s'/>" % arg for arg in args)))


def by_name(result):
    return dict((domain['name'], domain) for domain in result['domains'])


def test_running_guests_get_their_interfaces_and_forwarded_ports(fake_helper):
    forwards = [{'host': 2222, 'guest': 22}, {'host': 8053, 'guest': 53, 'protocol': 'udp', 'address': '0.0.0.0'}]
    fake_helper.add_domain('web', state='running', interfaces=[ETH0],
                           xml=domain_xml('web', {'type': 'user', 'port_forwards': forwards}))
    fake_helper.add_domain('db', xml=domain_xml('db', {'type': 'user', 'port_forwards': forwards}))
    result = run_module(domain_info.main, fake_helper.root)
    domains = by_name(result)
    assert domains['web']['interfaces'] == [ETH0] and 'interfaces_error' not in domains['web']
    assert domains['web']['forwarded_ports'] == [
        {'host': 2222, 'guest': 22, 'protocol': 'tcp', 'address': '127.0.0.1'},
        {'host': 8053, 'guest': 53, 'protocol': 'udp', 'address': '0.0.0.0'}]
    # A guest that is off has no QEMU, so nothing is forwarded and nobody asked its agent.
    assert 'interfaces' not in domains['db'] and 'forwarded_ports' not in domains['db']
    assert fake_helper.args_of('domain_interfaces') == [{'name': 'web'}]
    assert fake_helper.changes() == []


def test_a_guest_whose_agent_does_not_answer_has_no_interfaces_and_says_why(fake_helper):
    fake_helper.add_domain('web', state='running')
    result = run_module(domain_info.main, fake_helper.root)
    web = by_name(result)['web']
    assert not result.get('failed') and web['interfaces'] == [] and web['forwarded_ports'] == []
    assert web['interfaces_error']['kind'] == 'agent_unavailable'
    assert 'does not answer' in web['interfaces_error']['message'] and web['interfaces_error']['hint']


def test_other_helper_errors_fail_the_task(fake_helper):
    fake_helper.add_domain('web', state='running', interfaces=[ETH0])
    fake_helper.refuse('domain_interfaces', 'internal', 'a bug in the helper')
    result = run_module(domain_info.main, fake_helper.root)
    assert result['failed'] and result['error_kind'] == 'internal'


def test_the_agent_query_can_be_switched_off(fake_helper):
    fake_helper.add_domain('web', state='running', interfaces=[ETH0],
                           xml=domain_xml('web', {'type': 'user', 'port_forwards': [{'host': 2222, 'guest': 22}]}))
    result = run_module(domain_info.main, fake_helper.root, interfaces=False)
    web = by_name(result)['web']
    assert 'interfaces' not in web and web['forwarded_ports'][0]['host'] == 2222
    assert 'domain_interfaces' not in fake_helper.ops()


def test_snapshots_are_listed_only_when_asked(fake_helper):
    fake_helper.add_domain('web', snapshots=['before', 'after'])
    fake_helper.add_domain('db')
    assert 'snapshots' not in run_module(domain_info.main, fake_helper.root)['domains'][0]
    assert fake_helper.args_of('snapshot_list') == []
    domains = by_name(run_module(domain_info.main, fake_helper.root, snapshots=True))
    assert [s['name'] for s in domains['web']['snapshots']] == ['before', 'after']
    assert domains['db']['snapshots'] == []
