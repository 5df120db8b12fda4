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
from ansible.template import Templar, trust_as_template

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
