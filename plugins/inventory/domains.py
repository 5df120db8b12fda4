# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: domains
short_description: Guests of embedded libvirt roots as inventory hosts
version_added: 0.1.0
description:
  - One host per domain of each embedded root listed, reached with the
    P(embedvirt.libvirt.guest_agent#connection) connection.
  - Host variables - C(ansible_connection), C(ansible_embedvirt_root), C(ansible_embedvirt_domain),
    C(embedvirt_uuid), C(embedvirt_state), C(embedvirt_id), C(embedvirt_persistent), C(embedvirt_autostart).
  - Groups - C(embedvirt_<state>) (for example C(embedvirt_running)), plus what C(groups) and
    C(keyed_groups) make.
  - The file must end in C(embedvirt.yml) or C(embedvirt.yaml). The roots must be on the controller.
author:
  - Embedvirt Developers (@embedvirt)
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: Name of this plugin.
    required: true
    type: str
    choices: [embedvirt.libvirt.domains]
  roots:
    description:
      - The embedded roots whose domains to list.
    type: list
    elements: path
    required: true
  states:
    description:
      - Only domains in one of these states (libvirt's names, such as V(running) or V(shutoff)).
    type: list
    elements: str
    default: []
'''

EXAMPLES = r'''
# guests.embedvirt.yml
plugin: embedvirt.libvirt.domains
roots:
  - /srv/vms
states: [running]
keyed_groups:
  - key: embedvirt_autostart
    prefix: autostart
'''

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.embedvirt.libvirt.plugins.module_utils.client import HelperClient, HelperClientError
from ansible_collections.embedvirt.libvirt.plugins.module_utils.root import RootError


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = 'embedvirt.libvirt.domains'

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and path.endswith(('embedvirt.yml', 'embedvirt.yaml'))

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option('cache') and cache
        domains = None
        if use_cache:
            try:
                domains = self._cache[cache_key]
            except KeyError:
                pass
        if domains is None:
            domains = self.list_domains()
            if self.get_option('cache'):
                self._cache[cache_key] = domains
        self.populate(domains)

    def list_domains(self):
        found = []
        for root in self.get_option('roots'):
            try:
                client = HelperClient(root)
                for domain in client.call('domain_list', states=self.get_option('states') or None):
                    found.append(dict(domain, root=root))
                client.close()
            except (HelperClientError, RootError) as e:
                raise AnsibleParserError('cannot list the domains of root %s: %s' % (root, to_native(e)))
        return found

    def populate(self, domains):
        strict = self.get_option('strict')
        seen = {}
        for domain in domains:
            host = domain['name']
            if host in seen:
                self.display.warning('domain %s is in roots %s and %s; keeping the first'
                                     % (host, seen[host], domain['root']))
                continue
            seen[host] = domain['root']
            self.inventory.add_host(host)
            hostvars = {
                'ansible_connection': 'embedvirt.libvirt.guest_agent',
                'ansible_embedvirt_root': domain['root'],
                'ansible_embedvirt_domain': domain['name'],
                'embedvirt_uuid': domain['uuid'],
                'embedvirt_state': domain['state'],
                'embedvirt_id': domain['id'],
                'embedvirt_persistent': domain['persistent'],
                'embedvirt_autostart': domain['autostart'],
            }
            for key, value in hostvars.items():
                self.inventory.set_variable(host, key, value)
            group = self.inventory.add_group('embedvirt_%s' % domain['state'])
            self.inventory.add_child(group, host)
            # What compose, groups and keyed_groups see: the host's variables, inventory_hostname too.
            variables = self.inventory.get_host(host).get_vars()
            self._set_composite_vars(self.get_option('compose'), variables, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option('groups'), variables, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option('keyed_groups'), variables, host, strict=strict)
