#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
module: domain_info
short_description: List the guests of an embedded libvirt root, with versions and helper status
version_added: 0.1.0
description:
  - Lists the domains (guests) that the embedded QEMU driver of a root knows, running or defined,
    through the root's helper process (started when none runs).
  - Also returns the libvirt and QEMU versions and the helper's status.
  - It never creates a root. On a root that does not exist it fails with C(error_kind=root_missing)
    and starts no helper.
options:
  name:
    description:
      - Only domains with one of these names.
    type: list
    elements: str
    aliases: [names]
  state:
    description:
      - Only domains in one of these states.
    type: list
    elements: str
    choices: [nostate, running, blocked, paused, shutdown, shutoff, crashed, pmsuspended]
    aliases: [states]
  interfaces:
    description:
      - Ask the guest agent of each running domain for its network interfaces and addresses
        (RV(domains[].interfaces)).
      - One agent query per running domain; it takes milliseconds when the agent answers, nothing
        when the domain has no agent channel or its agent has not connected, and at most 2 seconds
        when a connected agent is silent. V(false) skips it, for example to list many guests that
        have no agent.
    type: bool
    default: true
  snapshots:
    description:
      - Also list each domain's snapshots (RV(domains[].snapshots)); see M(embedvirt.libvirt.snapshot).
    type: bool
    default: false
  stats:
    description:
      - Also return each running domain's statistics (RV(domains[].stats)), from one query of libvirt for all
        of them (C(getAllDomainStats)), as a monitoring task polls them.
    type: bool
    default: false
extends_documentation_fragment:
  - embedvirt.libvirt.root
  - embedvirt.libvirt.attributes
  - embedvirt.libvirt.attributes.actiongroup_libvirt
attributes:
  check_mode:
    support: full
    details: Runs normally; it changes nothing except starting the helper of an existing root when
      none runs.
  diff_mode:
    support: none
  idempotent:
    support: full
author:
  - Embedvirt Developers (@embedvirt)
'''

EXAMPLES = r'''
- name: List every guest of /srv/vms
  embedvirt.libvirt.domain_info:
    root: /srv/vms
  register: vms

- name: Only running guests called web or db
  embedvirt.libvirt.domain_info:
    root: /srv/vms
    name: [web, db]
    state: running
  register: running

- name: The address of web, from its guest agent
  ansible.builtin.debug:
    msg: >-
      {{ (running.domains | selectattr('name', '==', 'web') | first).interfaces
         | rejectattr('name', '==', 'lo') | map(attribute='addresses') | flatten
         | selectattr('type', '==', 'ipv4') | map(attribute='address') | first }}

- name: CPU time, memory and disk I/O of every running guest, from one query
  embedvirt.libvirt.domain_info:
    root: /srv/vms
    state: running
    interfaces: false
    stats: true
  register: load

- name: Bytes each guest wrote to its first disk
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.stats.disks[0].write_bytes }}"
  loop: "{{ load.domains }}"
  loop_control:
    label: "{{ item.name }}"

- name: The host port that reaches SSH in web (user networking)
  ansible.builtin.debug:
    msg: >-
      {{ (running.domains | selectattr('name', '==', 'web') | first).forwarded_ports
         | selectattr('guest', '==', 22) | map(attribute='host') | first }}
'''

RETURN = r'''
domains:
  description: The domains that match, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Domain name.
      type: str
      sample: web
    uuid:
      description: Domain UUID.
      type: str
    id:
      description: Id of a running domain, null when it is not running.
      type: int
    state:
      description: One of nostate, running, blocked, paused, shutdown, shutoff, crashed, pmsuspended.
      type: str
      sample: running
    state_reason:
      description: libvirt's reason code for the state.
      type: int
    persistent:
      description: Whether the domain has a stored definition (false for transient guests).
      type: bool
    autostart:
      description: Whether the domain starts when the root's helper starts.
      type: bool
    interfaces:
      description:
        - The guest's network interfaces as its guest agent reports them (the loopback too), sorted
          by name; empty when the agent does not answer (RV(domains[].interfaces_error) says why).
        - What the guest reports is the guest's word, so it is checked - at most 64 interfaces of 64
          addresses each, names cut at 256 characters, and only the addresses that can be the guest's -
          never an unspecified, loopback, link-local, multicast, reserved or broadcast address (also
          IPv4-mapped) nor one of the hypervisor's own; the loopback interface is listed without its
          addresses.
      returned: for running domains, unless O(interfaces=false)
      type: list
      elements: dict
      contains:
        name:
          description: The interface's name in the guest.
          type: str
          sample: eth0
        hwaddr:
          description: Its MAC address.
          type: str
          sample: "52:54:00:12:34:56"
        addresses:
          description: Its addresses, each with C(type) (V(ipv4) or V(ipv6)), C(address) and C(prefix).
          type: list
          elements: dict
          sample: [{type: ipv4, address: 10.0.2.15, prefix: 24}]
    interfaces_error:
      description:
        - Why RV(domains[].interfaces) is empty - C(kind) (V(agent_unavailable) when the domain has no
          agent channel or its agent does not answer, for example while the guest boots), C(message) and
          C(hint) (the fix).
      returned: for running domains whose agent did not answer
      type: dict
      sample: {kind: agent_unavailable, message: "the guest agent of domain 'web' does not answer: ...", hint: "..."}
    forwarded_ports:
      description:
        - The host ports QEMU's user networking forwards into the guest (the C(hostfwd) of a C(-netdev user)
          in the domain's C(<qemu:commandline>), as M(embedvirt.libvirt.instance) writes them), each with
          C(host), C(guest), C(protocol) and C(address) (the host address it listens on; V(0.0.0.0) is every one).
      returned: for running domains
      type: list
      elements: dict
      sample: [{host: 2222, guest: 22, protocol: tcp, address: 127.0.0.1}]
    snapshots:
      description:
        - The domain's snapshots, oldest first, each with C(name), C(description), C(creation_time) (seconds
          since the epoch), C(parent), C(state) (the guest state it holds), C(memory) (whether it holds the
          guest's memory) and C(current) (see RV(embedvirt.libvirt.snapshot#module:snapshot)).
      returned: when O(snapshots=true)
      type: list
      elements: dict
      sample: [{name: before-upgrade, description: null, creation_time: 1795662298, parent: null, state: running,
                memory: true, current: true}]
    stats:
      description:
        - The domain's statistics as libvirt counts them since its QEMU started. A counter libvirt does not
          have for the guest is left out.
        - C(memory.available), C(memory.unused) and C(memory.usable) come from the guest's balloon driver,
          and are the guest's word.
        - C(interfaces) lists the NICs libvirt knows, with counters for bridge and tap cards (read from the host's
          tap device) and none for passt cards; slirp user networking, which runs inside QEMU from its command
          line, is not listed.
      returned: for running domains, when O(stats=true)
      type: dict
      contains:
        cpu_time:
          description: CPU time the guest used, in nanoseconds.
          type: int
        vcpus:
          description: Virtual CPUs the guest has now.
          type: int
        max_vcpus:
          description: Virtual CPUs it may have.
          type: int
        memory:
          description:
            - Memory in KiB, C(current) (what the balloon leaves the guest), C(maximum), and from the guest
              C(available), C(unused), C(usable); C(rss), what QEMU uses on the host.
          type: dict
          sample: {current: 1048576, maximum: 1048576, available: 1004520, unused: 730128, usable: 800812, rss: 412340}
        disks:
          description:
            - Per disk, C(name) (its target), C(path), C(read_bytes), C(write_bytes), C(read_requests),
              C(write_requests), C(allocation) (bytes the image holds on the host) and C(capacity) (its virtual
              size).
          type: list
          elements: dict
          sample: [{name: vda, path: /srv/vms/images/web.qcow2, read_bytes: 181203456, write_bytes: 14680064,
                    read_requests: 7012, write_requests: 1370, allocation: 52559872, capacity: 4294967296}]
        interfaces:
          description: Per NIC libvirt knows, C(name), C(rx_bytes), C(tx_bytes), C(rx_packets), C(tx_packets),
            C(rx_errors), C(tx_errors).
          type: list
          elements: dict
versions:
  description: Versions of the software serving the root.
  returned: always
  type: dict
  contains:
    libvirt:
      description: libvirt library version.
      type: str
      sample: 9.0.0
    qemu:
      description: QEMU version as libvirt reports it.
      type: str
      sample: 7.2.0
    python_libvirt:
      description: Version of the libvirt Python bindings.
      type: str
helper:
  description: Status of the root's helper; see M(embedvirt.libvirt.helper).
  returned: always
  type: dict
error_kind:
  description:
    - Why the task failed. V(root_missing) - the root does not exist (create it with the
      C(embedvirt.libvirt.root) role or M(embedvirt.libvirt.root_dir), or correct the path);
      V(root) - the root path breaks a rule; V(os) - a file operation failed (RV(error_path) names the
      file); V(value) - an unexpected value; others come from the helper.
  returned: failure
  type: str
  sample: root_missing
error_path:
  description: The file an V(os) error was about.
  returned: when RV(error_kind=os)
  type: str
  sample: /srv/vms/log/embedvirt
'''

from ansible_collections.embedvirt.libvirt.plugins.module_utils._client import HelperClientError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import EmbedvirtModule
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import DOMAIN_STATES

# What a guest agent that cannot say anything reports; any other error fails the task.
QUIET_AGENT_KINDS = ('agent_unavailable', 'not_running', 'no_domain')


def main():
    module = EmbedvirtModule(
        dict(
            name=dict(type='list', elements='str', aliases=['names']),
            state=dict(type='list', elements='str', choices=list(DOMAIN_STATES), aliases=['states']),
            interfaces=dict(type='bool', default=True),
            snapshots=dict(type='bool', default=False),
            stats=dict(type='bool', default=False),
        ),
        read_only=True,
        supports_check_mode=True,
    )
    domains = module.helper_or_fail.domain_list(names=module.params['name'], states=module.params['state'])
    running = [domain['name'] for domain in domains if domain['state'] == 'running']
    stats = module.helper_or_fail.domain_stats(names=running) if module.params['stats'] and running else {}
    for domain in domains:
        if domain['name'] in stats:
            domain['stats'] = stats[domain['name']]
        if domain['state'] == 'running':
            add_network(module, domain)
        if module.params['snapshots']:
            domain['snapshots'] = module.helper_or_fail.snapshot_list(name=domain['name'])
    versions = module.helper_or_fail.versions()
    helper = dict(module.helper_or_fail.helper_status(), running=True)
    module.exit(changed=False, domains=domains, versions=versions, helper=helper)


def add_network(module, domain):
    """A running domain's forwarded ports (from its definition, as domain_get gives it) and, when
    asked, its interfaces. _network is imported here: a listing without running guests never
    compiles it (AnsiballZ ships sources, and every task pays for what it compiles)."""
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.embedvirt.libvirt.plugins.module_utils._network import forwarded_ports
    detail = module.helper_or_fail.domain_get(domain['name'])
    domain['forwarded_ports'] = forwarded_ports(detail['xml']) if detail else []
    if not module.params['interfaces']:
        return
    try:
        domain['interfaces'] = module.client.domain_interfaces(domain['name'])
    except HelperClientError as e:
        # A guest still booting or without an agent is a normal sight in a listing.
        if e.kind not in QUIET_AGENT_KINDS:
            module.fail(str(e), error_kind=e.kind)
        domain['interfaces'] = []
        domain['interfaces_error'] = {'kind': e.kind, 'message': e.args[0], 'hint': e.hint}


if __name__ == '__main__':
    main()
