# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The domains inventory, loaded as Ansible loads it, against a helper that speaks the real protocol."""

import json

import pytest
import yaml

from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader

from ansible_collections.embedvirt.libvirt.plugins.inventory import domains
from ansible_collections.embedvirt.libvirt.plugins.module_utils._client import HelperClient
from ansible_collections.embedvirt.libvirt.plugins.module_utils._network import QEMU_NAMESPACE, host_addresses, interface_xml
from ansible.template import Templar

try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core before 2.19 templates every string that is not marked unsafe
    def trust_as_template(value):
        return value
from ansible.utils.display import Display

from ansible_collections.embedvirt.libvirt.tests.unit.plugins.fake_helper import FakeHelper

TEMPLATE_LIKE = 'x{{ 7 * 7 }}y'


def inventory(tmp_path, **config):
    """The inventory that a file guests.embedvirt.yml with config makes."""
    path = tmp_path / 'guests.embedvirt.yml'
    path.write_text(json.dumps(dict(plugin='embedvirt.libvirt.domains', **config)))  # JSON is YAML
    plugin = inventory_loader.get('embedvirt.libvirt.domains')
    assert plugin.verify_file(str(path))
    data = InventoryData()
    plugin.parse(data, DataLoader(), str(path), cache=False)
    return data


def host_vars(data, name):
    return data.get_host(name).get_vars()


def group_hosts(data, group):
    return sorted(host.name for host in data.groups[group].get_hosts())


@pytest.fixture
def guests(fake_helper):
    """The fake helper's root with a running guest web (autostart) and a guest db that is off."""
    fake_helper.add_domain('web', state='running', autostart=True)
    fake_helper.add_domain('db')
    return fake_helper


def test_each_domain_is_a_host_reached_through_the_guest_agent(guests, tmp_path):
    data = inventory(tmp_path, roots=[guests.root])
    web = host_vars(data, 'web')
    assert dict((key, web[key]) for key in web if key.startswith(('ansible_', 'embedvirt_'))) == {
        'ansible_connection': 'embedvirt.libvirt.guest_agent',
        'ansible_embedvirt_root': guests.root,
        'ansible_embedvirt_domain': 'web',
        'embedvirt_uuid': guests.domains['web']['uuid'],
        'embedvirt_state': 'running',
        'embedvirt_id': guests.domains['web']['id'],
        'embedvirt_persistent': True,
        'embedvirt_autostart': True,
    }
    assert host_vars(data, 'db')['embedvirt_id'] is None
    assert group_hosts(data, 'embedvirt_running') == ['web'] and group_hosts(data, 'embedvirt_shutoff') == ['db']
    assert guests.changes() == []


def test_states_are_passed_to_the_helper(guests, tmp_path):
    data = inventory(tmp_path, roots=[guests.root], states=['running'])
    assert guests.args_of('domain_list') == [{'names': None, 'states': ['running']}]
    assert sorted(data.hosts) == ['web']


def test_a_misspelt_state_fails_with_the_helpers_fix(guests, tmp_path):
    with pytest.raises(AnsibleParserError, match='unknown domain state.*runing.*use states among'):
        inventory(tmp_path, roots=[guests.root], states=['runing'])


def test_a_missing_root_fails_naming_it(fake_helper, tmp_path):
    missing = fake_helper.root + '-gone'
    with pytest.raises(AnsibleParserError, match="cannot list the domains of root %s: root '%s' does not exist"
                       % (missing, missing)):
        inventory(tmp_path, roots=[missing])


def test_a_root_entry_of_an_unknown_shape_fails_naming_what_is_allowed(fake_helper, tmp_path):
    with pytest.raises(AnsibleParserError, match='a path or a dictionary with path and optionally hypervisor'):
        inventory(tmp_path, roots=[{'path': fake_helper.root, 'hypervisr': 'admin@vmhost'}])


def test_a_name_that_looks_like_a_template_stays_text(fake_helper, tmp_path):
    fake_helper.add_domain(TEMPLATE_LIKE, state='running')
    data = inventory(tmp_path, roots=[fake_helper.root], compose={'label': "ansible_embedvirt_domain ~ '!'"})
    assert list(data.hosts) == [TEMPLATE_LIKE]
    variables = host_vars(data, TEMPLATE_LIKE)
    assert variables['label'] == TEMPLATE_LIKE + '!'
    templar = Templar(loader=DataLoader(), variables=variables)
    assert templar.template(trust_as_template('{{ ansible_embedvirt_domain }}')) == TEMPLATE_LIKE


def test_groups_and_keyed_groups_see_the_host_variables(guests, tmp_path):
    data = inventory(tmp_path, roots=[guests.root], groups={'up': "embedvirt_state == 'running'"},
                     keyed_groups=[{'key': 'embedvirt_state', 'prefix': 'state'}])
    assert group_hosts(data, 'up') == ['web']
    assert group_hosts(data, 'state_running') == ['web'] and group_hosts(data, 'state_shutoff') == ['db']


def test_the_documented_keyed_groups_work(guests, tmp_path):
    keyed_groups = yaml.safe_load(domains.EXAMPLES)['keyed_groups']
    data = inventory(tmp_path, roots=[guests.root], keyed_groups=keyed_groups)
    assert group_hosts(data, 'autostart_True') == ['web'] and group_hosts(data, 'autostart_False') == ['db']


def test_a_domain_in_two_roots_is_kept_from_the_first(guests, tmp_path):
    with FakeHelper() as other:
        other.add_domain('web', state='paused')
        other.add_domain('cache')
        data = inventory(tmp_path, roots=[guests.root, {'path': other.root}])
    assert sorted(data.hosts) == ['cache', 'db', 'web']
    assert host_vars(data, 'web')['ansible_embedvirt_root'] == guests.root
    assert host_vars(data, 'cache')['ansible_embedvirt_root'] == other.root


def test_only_files_named_embedvirt_yml_are_read(tmp_path):
    plugin = inventory_loader.get('embedvirt.libvirt.domains')
    for name, accepted in (('a.embedvirt.yml', True), ('a.embedvirt.yaml', True), ('a.yml', False)):
        (tmp_path / name).write_text('plugin: embedvirt.libvirt.domains\n')
        assert plugin.verify_file(str(tmp_path / name)) is accepted


def guest_xml(name, forwards):
    devices, args = interface_xml({'type': 'user', 'port_forwards': forwards}, name)
    return ("<domain xmlns:qemu='%s'><name>%s</name><devices>%s</devices><qemu:commandline>%s</qemu:commandline>"
            "</domain>" % (QEMU_NAMESPACE, name, devices, ''.join("<qemu:arg value='%s'/>" % arg for arg in args)))


def interfaces(*addresses):
    return [{'name': 'lo', 'hwaddr': '00:00:00:00:00:00',
             'addresses': [{'type': 'ipv4', 'address': '127.0.0.1', 'prefix': 8}]},
            {'name': 'eth0', 'hwaddr': '52:54:00:12:34:56',
             'addresses': [{'type': kind, 'address': address, 'prefix': 24} for kind, address in addresses]}]


def ssh_vars(data, name):
    variables = host_vars(data, name)
    keys = ('ansible_connection', 'ansible_host', 'ansible_port', 'ansible_ssh_common_args')
    return dict((key, variables[key]) for key in keys if key in variables)


def test_connection_ssh_reaches_guests_through_their_forward_or_their_agents_address(fake_helper, tmp_path):
    fake_helper.add_domain('fwd', state='running', interfaces=interfaces(('ipv4', '10.0.2.15')),
                           xml=guest_xml('fwd', [{'host': 8080, 'guest': 80}, {'host': 2222, 'guest': 22}]))
    fake_helper.add_domain('anywhere', state='running', xml=guest_xml('anywhere', [
        {'host': 2223, 'guest': 22, 'address': '0.0.0.0'}]))
    fake_helper.add_domain('bridged', state='running', interfaces=interfaces(
        ('ipv6', 'fe80::1'), ('ipv4', '169.254.3.4'), ('ipv4', '192.0.2.7')))
    fake_helper.add_domain('silent', state='running')  # no forward, no agent
    fake_helper.add_domain('off', xml=guest_xml('off', [{'host': 2224, 'guest': 22}]))
    data = inventory(tmp_path, roots=[fake_helper.root], connection='ssh')
    assert ssh_vars(data, 'fwd') == {'ansible_connection': 'ssh', 'ansible_host': '127.0.0.1', 'ansible_port': 2222}
    assert ssh_vars(data, 'anywhere') == {'ansible_connection': 'ssh', 'ansible_host': '127.0.0.1', 'ansible_port': 2223}
    assert ssh_vars(data, 'bridged') == {'ansible_connection': 'ssh', 'ansible_host': '192.0.2.7'}
    assert ssh_vars(data, 'silent') == {'ansible_connection': 'embedvirt.libvirt.guest_agent'}
    assert ssh_vars(data, 'off') == {'ansible_connection': 'embedvirt.libvirt.guest_agent'}
    # The agent is asked only when no forward reaches port 22; a guest that is off is never asked.
    assert sorted(args['name'] for args in fake_helper.args_of('domain_interfaces')) == ['bridged', 'silent']
    assert sorted(args['name'] for args in fake_helper.args_of('domain_get')) == ['anywhere', 'bridged', 'fwd', 'silent']
    assert fake_helper.changes() == []


def test_connection_ssh_warns_about_a_running_guest_it_cannot_reach(fake_helper, tmp_path, monkeypatch):
    fake_helper.add_domain('silent', state='running')
    warnings = []
    monkeypatch.setattr(Display(), 'warning', lambda msg, *args, **kwargs: warnings.append(msg))
    inventory(tmp_path, roots=[fake_helper.root], connection='ssh')
    assert warnings == ['domain silent in root %s has no forward to its port 22 and its guest agent reports no '
                        'address to reach it at: it keeps the guest agent connection' % fake_helper.root]


def test_the_default_connection_asks_nothing_more(guests, tmp_path):
    inventory(tmp_path, roots=[guests.root])
    assert guests.ops() == ['domain_list']


@pytest.mark.parametrize('address, expected', [
    ('0.0.0.0', {'ansible_host': 'vmhost1', 'ansible_port': 2222}),
    ('198.51.100.4', {'ansible_host': '198.51.100.4', 'ansible_port': 2222}),
    ('127.0.0.1', {'ansible_host': '127.0.0.1', 'ansible_port': 2222,
                   'ansible_ssh_common_args': "-o ProxyCommand='ssh -p 2200 -i '\"'\"'/k y'\"'\"' -W %h:%p admin@vmhost1'"}),
])
def test_a_forward_on_a_remote_hypervisor_is_reached_on_it_or_through_it(fake_helper, address, expected):
    fake_helper.add_domain('web', state='running', xml=guest_xml('web', [{'host': 2222, 'guest': 22, 'address': address}]))
    root = {'path': fake_helper.root, 'hypervisor': 'admin@vmhost1', 'hypervisor_ssh_args': "-p 2200 -i '/k y'"}
    client = HelperClient(fake_helper.root, create=False)
    try:
        assert domains.ssh_endpoint(client, 'web', root) == expected
    finally:
        client.close()


def test_connection_ssh_never_takes_an_address_that_cannot_be_the_guests(fake_helper, tmp_path):
    # The helper leaves these out already (_network.guest_interfaces); the inventory checks again,
    # with the controller's own addresses.
    controller = sorted(str(ip) for ip in host_addresses() if ip.version == 4 and not ip.is_loopback)
    fake_helper.add_domain('hostile', state='running', interfaces=interfaces(
        ('ipv4', '0.0.0.0'), ('ipv4', '224.0.0.1'), ('ipv4', '255.255.255.255'), ('ipv6', '::ffff:127.0.0.1'),
        *(('ipv4', address) for address in controller)))
    data = inventory(tmp_path, roots=[fake_helper.root], connection='ssh')
    assert ssh_vars(data, 'hostile') == {'ansible_connection': 'embedvirt.libvirt.guest_agent'}


def test_a_guest_on_a_remote_hypervisor_cannot_claim_the_hypervisors_address(fake_helper):
    fake_helper.add_domain('web', state='running', interfaces=interfaces(('ipv4', '198.51.100.9'), ('ipv4', '10.0.2.15')))
    root = {'path': fake_helper.root, 'hypervisor': 'admin@198.51.100.9', 'hypervisor_ssh_args': None}
    client = HelperClient(fake_helper.root, create=False)
    try:
        assert domains.ssh_endpoint(client, 'web', root) == {'ansible_host': '10.0.2.15'}
    finally:
        client.close()


def test_a_name_that_is_a_group_or_the_controller_leaves_out_that_guest_only(fake_helper, tmp_path, monkeypatch):
    taken = ['all', 'ungrouped', 'embedvirt_running', 'embedvirt_paused', 'localhost', '127.0.0.1', 'autostart_True']
    for name in taken + ['web']:
        fake_helper.add_domain(name, state='running', autostart=True)
    warnings = []
    monkeypatch.setattr(Display(), 'warning', lambda msg, *args, **kwargs: warnings.append(msg))
    data = inventory(tmp_path, roots=[fake_helper.root],
                     keyed_groups=[{'key': 'embedvirt_autostart | string', 'prefix': 'autostart'}])
    data.reconcile_inventory()
    assert sorted(data.hosts) == ['web'] and data.localhost is None
    assert group_hosts(data, 'embedvirt_running') == group_hosts(data, 'autostart_True') == ['web']
    assert sorted(warnings) == sorted(
        'domain %s in root %s is left out of the inventory: its name is %s; rename the domain to make it a host'
        % (name, fake_helper.root, "one of Ansible's names of the controller" if name in ('localhost', '127.0.0.1')
           else 'a group of the inventory') for name in taken)
