# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
name: domains
short_description: Guests of embedded libvirt roots as inventory hosts
version_added: 0.1.0
description:
  - One host per domain of each embedded root listed, reached with the
    P(embedvirt.libvirt.guest_agent#connection) connection.
  - Host variables - C(ansible_connection), C(ansible_embedvirt_root), C(ansible_embedvirt_domain),
    C(embedvirt_uuid), C(embedvirt_state), C(embedvirt_id), C(embedvirt_persistent), C(embedvirt_autostart),
    for a root on another host C(ansible_embedvirt_hypervisor), C(ansible_embedvirt_hypervisor_ssh_args)
    and C(ansible_embedvirt_hypervisor_python), and C(ansible_embedvirt_helper_python) when O(helper_python) is set.
  - Groups - C(embedvirt_<state>) (for example C(embedvirt_running)), plus what C(groups) and
    C(keyed_groups) make.
  - The file must end in C(embedvirt.yml) or C(embedvirt.yaml).
  - A domain whose name is a group of the inventory (C(all), C(ungrouped), C(embedvirt_<state>), a group
    of another source or one that O(groups) or O(keyed_groups) make) or one of Ansible's names of the
    controller (C(localhost), C(127.0.0.1), C(::1)) is left out, with a warning; the other domains and
    roots stay.
  - Every value that comes from libvirt (the host name, C(ansible_embedvirt_domain), C(embedvirt_uuid),
    C(embedvirt_state)) is marked unsafe, so a C({{) in a domain name stays text and is never templated.
  - Roots on other hosts are listed over SSH (see O(hypervisor)), and their hosts get the variables that
    make the connection go there too.
  - With O(connection=ssh), running guests that SSH can reach are hosts of the C(ssh) connection instead
    (see O(connection)).
author:
  - Embedvirt Developers (@embedvirt)
extends_documentation_fragment:
  - constructed
  - inventory_cache
  - embedvirt.libvirt.hypervisor
options:
  plugin:
    description: Name of this plugin.
    required: true
    type: str
    choices: [embedvirt.libvirt.domains]
  roots:
    description:
      - The embedded roots whose domains to list; absolute paths of roots that exist.
      - Each is a path, or a dictionary with C(path) and any of C(hypervisor), C(hypervisor_ssh_args),
        C(hypervisor_python) and C(helper_python), which override the options of the same name for that root.
    type: list
    elements: raw
    required: true
  states:
    description:
      - Only domains in one of these states (libvirt's names, such as V(running) or V(shutoff)).
    type: list
    elements: str
    default: []
  connection:
    description:
      - How Ansible reaches the guests.
      - V(guest_agent) - every guest through its guest agent
        (P(embedvirt.libvirt.guest_agent#connection)); no network needed.
      - V(ssh) - each running guest over SSH, with C(ansible_connection=ssh), C(ansible_host) and
        C(ansible_port). A guest whose user networking forwards a host port to its port 22 (as
        M(embedvirt.libvirt.instance) does with O(embedvirt.libvirt.instance#module:network.port_forwards))
        is reached through that port - on the forward's address (V(127.0.0.1) when it listens on every
        address) for a root on this machine; for a root on a O(hypervisor), on that host when the forward
        listens there on every address or one of its own, and through it (an SSH C(ProxyCommand) in
        C(ansible_ssh_common_args)) when the forward listens on its loopback only. Any other guest is
        reached at the first IPv4 address its guest agent reports (a guest on a bridge) that can be the
        guest's - never an unspecified, loopback, link-local, multicast, reserved or broadcast address,
        nor one of the hypervisor's or the controller's own addresses or the hypervisor's as its name
        resolves here (a guest reports what it likes). A running guest with neither keeps the guest
        agent connection, with a warning; guests that are not running keep it silently.
      - V(ssh) costs a request per running guest for its XML, plus a guest agent query for a guest without
        a forward to port 22 (milliseconds when the agent answers, at most 2 seconds when it is silent).
      - The SSH user, keys and host key checking are yours to set, with C(compose), group or host variables.
    type: str
    choices: [guest_agent, ssh]
    default: guest_agent
  stats:
    description:
      - Give each running guest its statistics as C(embedvirt_stats), as
        RV(embedvirt.libvirt.domain_info#module:domains[].stats) describes them, from one query per root; pick
        what you need with O(compose) (see the examples).
    type: bool
    default: false
'''

EXAMPLES = r'''
# guests.embedvirt.yml
plugin: embedvirt.libvirt.domains
roots:
  - /srv/vms
  - path: /srv/vms
    hypervisor: admin@vmhost1
    hypervisor_ssh_args: -i ~/.ssh/vms
states: [running]
keyed_groups:
  - key: embedvirt_autostart | string
    prefix: autostart

# ssh.embedvirt.yml: running guests over SSH (through forwarded ports or their own addresses)
plugin: embedvirt.libvirt.domains
roots: [/srv/vms]
states: [running]
connection: ssh
compose:
  ansible_user: "'debian'"

# stats.embedvirt.yml: running guests with their CPU time and the memory their balloon leaves them
plugin: embedvirt.libvirt.domains
roots: [/srv/vms]
states: [running]
stats: true
compose:
  cpu_seconds: embedvirt_stats.cpu_time / 1000000000
  memory_kib: embedvirt_stats.memory.current
'''

from ansible import constants as C
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var

import ipaddress
import shlex

from ansible_collections.embedvirt.libvirt.plugins.module_utils._client import HelperClientError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._network import (
    ANY_ADDRESS, forwarded_ports, guest_address_refusal, host_addresses, name_addresses)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import DOMAIN_STATES
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import RootError
from ansible_collections.embedvirt.libvirt.plugins.plugin_utils._hypervisor import helper_client

# Where a root is: per root in `roots`, else the file's option of the same name.
PLACEMENT = ('hypervisor', 'hypervisor_ssh_args', 'hypervisor_python', 'helper_python')
# The group of each state a domain can be in.
STATE_GROUPS = tuple('embedvirt_%s' % state for state in DOMAIN_STATES)


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = 'embedvirt.libvirt.domains'

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(('embedvirt.yml', 'embedvirt.yaml'))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache=cache)
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

    def roots(self):
        """Each configured root as a dict: path and where it is."""
        for entry in self.get_option('roots'):
            if isinstance(entry, str):
                entry = {'path': entry}
            if not isinstance(entry, dict) or not isinstance(entry.get('path'), str) \
                    or set(entry) - set(('path',) + PLACEMENT):
                raise AnsibleParserError(
                    'each item of roots must be a path or a dictionary with path and optionally %s; got %r'
                    % (', '.join(PLACEMENT), entry))
            yield dict(entry, **dict((key, entry.get(key, self.get_option(key))) for key in PLACEMENT))

    def list_domains(self):
        found = []
        for root in self.roots():
            try:
                client = helper_client(root['path'], root['hypervisor'], root['hypervisor_ssh_args'],
                                       root['hypervisor_python'], root['helper_python'])
                try:
                    stats = client.domain_stats() if self.get_option('stats') else {}
                    for domain in client.domain_list(states=self.get_option('states') or None):
                        if self.get_option('connection') == 'ssh' and domain['state'] == 'running':
                            domain = dict(domain, ssh=ssh_endpoint(client, domain['name'], root))
                        if domain['name'] in stats:
                            domain = dict(domain, stats=stats[domain['name']])
                        found.append(dict(domain, root=root))
                finally:
                    client.close()
            except (HelperClientError, RootError) as e:
                raise AnsibleParserError('cannot list the domains of root %s: %s' % (describe(root), to_native(e)))
        return found

    def populate(self, domains):
        strict = self.get_option('strict')
        seen = {}
        for domain in domains:
            root = domain['root']
            # Present when asked: the way to reach a running guest over SSH, or None.
            asked_ssh, endpoint = 'ssh' in domain, wrap_var(domain.get('ssh'))
            # What libvirt reports is data, never a template: a guest may be named 'x{{ 7 * 7 }}y'.
            domain = wrap_var(dict((key, value) for key, value in domain.items() if key not in ('root', 'ssh')))
            host = domain['name']
            where = describe(root)
            if host in seen:
                self.display.warning('domain %s is in roots %s and %s; keeping the first'
                                     % (host, seen[host], where))
                continue
            taken = self.name_taken(host)
            if taken:
                self.leave_out(host, where, taken)
                continue
            seen[host] = where
            self.inventory.add_host(host)
            hostvars = {
                'ansible_connection': 'embedvirt.libvirt.guest_agent',
                'ansible_embedvirt_root': root['path'],
                'ansible_embedvirt_domain': domain['name'],
                'embedvirt_uuid': domain['uuid'],
                'embedvirt_state': domain['state'],
                'embedvirt_id': domain['id'],
                'embedvirt_persistent': domain['persistent'],
                'embedvirt_autostart': domain['autostart'],
            }
            if 'stats' in domain:
                hostvars['embedvirt_stats'] = domain['stats']
            # What takes the connection to the root's helper: where it is, and its Python when given.
            placed = PLACEMENT if root['hypervisor'] else ('helper_python',)
            hostvars.update(('ansible_embedvirt_%s' % key, root[key]) for key in placed if root[key] is not None)
            if endpoint:
                hostvars.update(endpoint, ansible_connection='ssh')
            elif asked_ssh:
                self.display.warning('domain %s in root %s has no forward to its port 22 and its guest agent '
                                     'reports no address to reach it at: it keeps the guest agent connection'
                                     % (host, where))
            for key, value in hostvars.items():
                self.inventory.set_variable(host, key, value)
            group = self.inventory.add_group('embedvirt_%s' % domain['state'])
            self.inventory.add_child(group, host)
            # What compose, groups and keyed_groups see: the host's variables, inventory_hostname too.
            variables = self.inventory.get_host(host).get_vars()
            self._set_composite_vars(self.get_option('compose'), variables, host, strict=strict)
            try:
                self._add_host_to_composed_groups(self.get_option('groups'), variables, host, strict=strict)
                self._add_host_to_keyed_groups(self.get_option('keyed_groups'), variables, host, strict=strict)
            except AnsibleError:
                if host not in self.inventory.groups:
                    raise
            if host in self.inventory.groups:  # groups or keyed_groups made a group of its very name
                self.inventory.remove_host(self.inventory.get_host(host))
                del seen[host]
                self.leave_out(host, where, 'a group of the inventory')

    def name_taken(self, name):
        """What a domain's name already means to Ansible, so that it cannot be a host; or None."""
        if name in C.LOCALHOST:
            # A host of that name would be the implicit localhost: delegate_to: localhost would go into the guest.
            return "one of Ansible's names of the controller"
        if name in STATE_GROUPS or name in self.inventory.groups:  # all and ungrouped are always there
            return 'a group of the inventory'
        return None

    def leave_out(self, name, where, taken):
        """One guest's name never fails the whole source (every root, every user's guests): it is skipped."""
        self.display.warning('domain %s in root %s is left out of the inventory: its name is %s; rename the domain '
                             'to make it a host' % (name, where, taken))


def ssh_endpoint(client, name, root):
    """ansible_host (and ansible_port, ansible_ssh_common_args) that reach a running guest's SSH
    from the controller, or None."""
    detail = client.domain_get(name)
    forwards = [forward for forward in forwarded_ports(detail['xml'] if detail else '')
                if forward['guest'] == 22 and forward['protocol'] == 'tcp']
    if forwards:
        forward = forwards[0]
        address = forward['address']
        endpoint = {'ansible_port': forward['host']}
        if not root['hypervisor']:
            endpoint['ansible_host'] = '127.0.0.1' if address == ANY_ADDRESS else address
        elif address == ANY_ADDRESS:
            endpoint['ansible_host'] = root['hypervisor'].rsplit('@', 1)[-1]
        elif ipaddress.ip_address(address).is_loopback:
            # Only the hypervisor reaches its loopback: go through it as the helper does.
            endpoint['ansible_host'] = address
            endpoint['ansible_ssh_common_args'] = '-o ProxyCommand=%s' % shlex.quote(' '.join(
                ['ssh'] + [shlex.quote(arg) for arg in shlex.split(root['hypervisor_ssh_args'] or '')]
                + ['-W', '%h:%p', shlex.quote(root['hypervisor'])]))
        else:
            endpoint['ansible_host'] = address
        return endpoint
    try:
        interfaces = client.domain_interfaces(name)
    except HelperClientError as e:
        if e.kind in ('agent_unavailable', 'agent', 'agent_reply', 'not_running'):
            return None
        raise
    # The helper left out what is not the guest's; here also the controller's own addresses
    # and the hypervisor's as this controller reaches it (behind NAT it has others).
    own = host_addresses() | (name_addresses(root['hypervisor'].rsplit('@', 1)[-1]) if root['hypervisor'] else set())
    for interface in interfaces:
        for address in interface['addresses']:
            if address['type'] == 'ipv4' and not guest_address_refusal(address['address'], own):
                return {'ansible_host': address['address']}
    return None


def describe(root):
    """A configured root as messages name it: its path, and its host when not this one."""
    return root['path'] + (' on %s' % root['hypervisor'] if root['hypervisor'] else '')
