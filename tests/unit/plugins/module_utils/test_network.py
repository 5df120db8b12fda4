# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""_network: a guest's card, QEMU's port forwards and whether their host ports are free."""

import ipaddress
import socket
from xml.etree import ElementTree

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils._network import (
    GUEST_ADDRESSES_MAX, GUEST_INTERFACES_MAX, GUEST_NAME_MAX, QEMU_NAMESPACE, check_ports_free, forwarded_ports,
    guest_address_refusal, guest_interfaces, host_addresses, interface_xml, interfaces_xml, name_addresses, stable_mac)
from ansible_collections.embedvirt.libvirt.plugins.module_utils import _network


def domain(devices='', args=()):
    return ("<domain xmlns:qemu='%s'><devices>%s</devices><qemu:commandline>%s</qemu:commandline></domain>"
            % (QEMU_NAMESPACE, devices, ''.join("<qemu:arg value='%s'/>" % arg for arg in args)))


def test_user_networking_forwards_through_qemus_command_line():
    devices, args = interface_xml({'type': 'user', 'port_forwards': [
        {'host': 2222, 'guest': 22}, {'host': '8053', 'guest': 53, 'protocol': 'udp', 'address': '0.0.0.0'}]}, 'web')
    mac = stable_mac('web')
    assert devices == ''
    assert args == ['-netdev', 'user,id=embedvirt-net0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp:0.0.0.0:8053-:53',
                    '-device', 'virtio-net-pci,netdev=embedvirt-net0,mac=%s,addr=0x14' % mac]


def test_each_card_has_its_own_netdev_slot_and_mac_and_keeps_them():
    elements, args = interfaces_xml([{'type': 'user', 'port_forwards': [{'host': 2222, 'guest': 22}]},
                                     {'type': 'none'}, {'type': 'bridge', 'bridge': 'br0'}, {'type': 'user'}], 'web')
    assert len(elements) == 1 and 'mac address=\'%s\'' % stable_mac('web/2') in elements[0].replace('"', "'")
    assert args == ['-netdev', 'user,id=embedvirt-net0,hostfwd=tcp:127.0.0.1:2222-:22',
                    '-device', 'virtio-net-pci,netdev=embedvirt-net0,mac=%s,addr=0x14' % stable_mac('web'),
                    '-netdev', 'user,id=embedvirt-net3',
                    '-device', 'virtio-net-pci,netdev=embedvirt-net3,mac=%s,addr=0x17' % stable_mac('web/3')]
    assert len(set([stable_mac('web')] + [stable_mac('web/%d' % index) for index in range(1, 8)])) == 8
    with pytest.raises(ValueError, match='networks has 9 cards, more than the 8'):
        interfaces_xml([{'type': 'user'}] * 9, 'web')


def test_the_mac_is_stable_per_name_unicast_and_can_be_given():
    assert stable_mac('web') == stable_mac('web') != stable_mac('db')
    assert stable_mac('web').startswith('52:54:00:')
    _devices, args = interface_xml({'type': 'user', 'mac': '52:54:00:AB:CD:EF'}, 'web')
    assert 'mac=52:54:00:ab:cd:ef,' in args[3]
    with pytest.raises(ValueError, match="mac '53:54:00:ab:cd:ef' is not a unicast MAC address: give six hex"):
        interface_xml({'type': 'user', 'mac': '53:54:00:ab:cd:ef'}, 'web')


def test_bridge_and_tap_are_libvirt_interfaces():
    devices, args = interface_xml({'type': 'bridge', 'bridge': 'br0'}, 'web')
    tree = ElementTree.fromstring(devices)
    assert args == [] and tree.get('type') == 'bridge' and tree.find('source').get('bridge') == 'br0'
    assert tree.find('mac').get('address') == stable_mac('web') and tree.find('model').get('type') == 'virtio'
    devices, args = interface_xml({'type': 'tap', 'tap': 'tap0'}, 'web')
    target = ElementTree.fromstring(devices).find('target')
    assert ElementTree.fromstring(devices).get('type') == 'ethernet'
    assert (target.get('dev'), target.get('managed')) == ('tap0', 'no')


def test_none_is_no_card():
    assert interface_xml({'type': 'none'}, 'web') == ('', []) == interface_xml(None, 'web')


@pytest.mark.parametrize('network, says', [
    ({'type': 'slirp'}, "network type 'slirp' is unknown: use one of none, user, bridge, tap"),
    ({'type': 'bridge', 'port_forwards': [{'host': 2222, 'guest': 22}]}, "port_forwards need network type 'user'"),
    ({'type': 'bridge'}, "network type 'bridge' needs bridge: the name of an existing host bridge device"),
    ({'type': 'tap', 'tap': '../x'}, "network type 'tap' needs tap"),
    ({'type': 'user', 'port_forwards': [{'host': 70000, 'guest': 22}]}, 'host must be a port number from 1 to 65535'),
    ({'type': 'user', 'port_forwards': [{'host': 2222, 'guest': 'ssh'}]}, 'guest must be a port number'),
    ({'type': 'user', 'port_forwards': [{'host': True, 'guest': 22}]}, 'host must be a port number'),
    ({'type': 'user', 'port_forwards': [{'host': 2222, 'guest': 22, 'protocol': 'sctp'}]}, 'protocol must be tcp or udp'),
    ({'type': 'user', 'port_forwards': [{'host': 2222, 'guest': 22, 'address': '::1'}]}, 'forwards IPv4 only'),
    ({'type': 'user', 'port_forwards': [{'host': 2222, 'guest': 22, 'adress': '0.0.0.0'}]}, 'a dictionary with host, guest'),
    ({'type': 'user', 'port_forwards': [{'host': 2222, 'guest': 22}, {'host': 2222, 'guest': 80, 'address': '0.0.0.0'}]},
     r'host port 2222 \(tcp\) is forwarded twice'),
])
def test_bad_networks_name_the_fix(network, says):
    with pytest.raises(ValueError, match=says):
        interface_xml(network, 'web')


def test_the_same_host_port_for_tcp_and_udp_is_fine():
    _devices, args = interface_xml({'type': 'user', 'port_forwards': [
        {'host': 5353, 'guest': 53}, {'host': 5353, 'guest': 53, 'protocol': 'udp'}]}, 'web')
    assert args[1].count('hostfwd=') == 2


def test_forwarded_ports_read_back_what_interface_xml_writes():
    forwards = [{'host': 2222, 'guest': 22, 'protocol': 'tcp', 'address': '127.0.0.1'},
                {'host': 8053, 'guest': 53, 'protocol': 'udp', 'address': '0.0.0.0'}]
    _devices, args = interface_xml({'type': 'user', 'port_forwards': forwards}, 'web')
    assert forwarded_ports(domain(args=args)) == forwards


def test_forwarded_ports_of_hand_written_command_lines():
    xml = domain(args=['-nic', 'user,model=virtio,hostfwd=::2222-:22,hostfwd=udp::6000-10.0.2.15:6000',
                       '-netdev', 'tap,id=t,hostfwd=tcp::1-:1', '-device', 'e1000',
                       '-netdev', 'user,hostfwd=tcp:{{x}}:2-:2'])
    assert forwarded_ports(xml) == [{'host': 2222, 'guest': 22, 'protocol': 'tcp', 'address': '0.0.0.0'},
                                    {'host': 6000, 'guest': 6000, 'protocol': 'udp', 'address': '0.0.0.0'}]


def test_a_port_forward_libvirt_ignores_is_not_reported():
    # libvirt 9.0 keeps <portForward> without passt, but QEMU never binds it.
    xml = domain(devices="<interface type='user'><portForward proto='tcp'><range start='2222' to='22'/>"
                         "</portForward></interface>")
    assert forwarded_ports(xml) == [] and forwarded_ports('not xml') == []


def test_check_ports_free_names_a_taken_port_and_the_fix():
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=r'host port %d \(tcp\) on 127.0.0.1 is already in use .*'
                                             'choose another host port in port_forwards' % port):
            check_ports_free([{'host': port, 'guest': 22}])
        # The same number for UDP is another port.
        check_ports_free([{'host': port, 'guest': 22, 'protocol': 'udp'}])
    check_ports_free([{'host': port, 'guest': 22}])


def test_check_ports_free_names_an_address_that_is_not_here():
    with pytest.raises(ValueError, match='192.0.2.1 is not an address of this host'):
        check_ports_free([{'host': 2222, 'guest': 22, 'address': '192.0.2.1'}])


OWN = {ipaddress.ip_address('198.51.100.1'), ipaddress.ip_address('2001:db8::1')}


@pytest.mark.parametrize('address, refusal', [
    ('10.0.2.15', None),
    ('192.0.2.7', None),
    ('2001:db8::7', None),
    ('0.0.0.0', 'unspecified'),
    ('0.1.2.3', 'unspecified'),
    ('::', 'unspecified'),
    ('127.0.0.1', 'loopback'),
    ('127.0.0.2', 'loopback'),
    ('::1', 'loopback'),
    ('169.254.1.1', 'link-local'),
    ('fe80::1', 'link-local'),
    ('fe80::1%eth0', 'scoped to an interface'),
    ('2001:db8::7%eth0', 'scoped to an interface'),
    ('224.0.0.1', 'multicast'),
    ('239.255.255.250', 'multicast'),
    ('ff02::1', 'multicast'),
    ('240.0.0.1', 'reserved'),
    ('255.255.255.255', 'reserved'),
    ('::ffff:127.0.0.1', 'loopback'),
    ('::ffff:169.254.1.1', 'link-local'),
    ('::ffff:0.0.0.0', 'unspecified'),
    ('::ffff:10.0.2.15', 'reserved'),
    ('::127.0.0.1', 'reserved'),
    ('::ffff:198.51.100.1', 'an address of the hypervisor or the controller'),
    ('198.51.100.1', 'an address of the hypervisor or the controller'),
    ('2001:db8::1', 'an address of the hypervisor or the controller'),
    ('2001:DB8::7', None),
    ('010.0.2.15', 'not an IP address'),
    ('10.0.2.15 ', 'not an IP address'),
    ('localhost', 'not an IP address'),
    ('', 'not an IP address'),
    (None, 'not an IP address'),
    (167772687, 'not an IP address'),
    (['10.0.2.15'], 'not an IP address'),
    ('1' * 100000, 'not an IP address'),
])
def test_only_an_address_that_can_be_the_guests_may_reach_it(address, refusal):
    assert guest_address_refusal(address, OWN) == refusal


def agent_address(addr, type_=0, prefix=24):
    return {'type': type_, 'addr': addr, 'prefix': prefix}


def test_guest_interfaces_keep_only_checked_values_of_the_guests_word():
    found = {
        'lo': {'hwaddr': '00:00:00:00:00:00', 'addrs': [agent_address('127.0.0.1', prefix=8), agent_address('::1', 1, 128)]},
        'eth0': {'hwaddr': '52:54:00:12:34:56', 'addrs': [
            agent_address('10.0.2.15'), agent_address('198.51.100.1', prefix=32), agent_address('169.254.1.1', prefix=16),
            agent_address('2001:DB8:0::7', 1, 64), agent_address('fe80::1', 1, 64),
            agent_address('10.0.2.16', prefix=33), agent_address('10.0.2.17', prefix=-1), agent_address('10.0.2.18', prefix='24'),
            agent_address('10.0.2.19', prefix=True), agent_address('10.0.2.20', type_=1), agent_address('2001:db8::8', 0, 24),
            agent_address('10.0.2.21', type_=7), agent_address('10.0.2.22', type_=False), agent_address('10.0.2.23', type_=[0]),
            'nonsense', None]},
        'eth1': {'hwaddr': 'X' * 1000, 'addrs': 'not a list'},
        'eth2': 'not a dict',
        7: {'addrs': [agent_address('10.0.2.30')]},
        'n' * 1000: {'hwaddr': None, 'addrs': None},
    }
    assert guest_interfaces(found, OWN) == [
        {'name': 'eth0', 'hwaddr': '52:54:00:12:34:56', 'addresses': [
            {'type': 'ipv4', 'address': '10.0.2.15', 'prefix': 24}, {'type': 'ipv6', 'address': '2001:db8::7', 'prefix': 64}]},
        {'name': 'eth1', 'hwaddr': None, 'addresses': []},
        {'name': 'eth2', 'hwaddr': None, 'addresses': []},
        {'name': 'lo', 'hwaddr': '00:00:00:00:00:00', 'addresses': []},
        {'name': 'n' * GUEST_NAME_MAX, 'hwaddr': None, 'addresses': []},
    ]
    assert guest_interfaces(['eth0'], OWN) == guest_interfaces(None, OWN) == []


def test_guest_interfaces_are_bounded_however_many_the_guest_reports():
    many = [agent_address('10.%d.%d.1' % (n // 256, n % 256)) for n in range(10000)]
    found = dict(('eth%05d' % n, {'hwaddr': None, 'addrs': many}) for n in range(10000))
    interfaces = guest_interfaces(found, OWN)
    assert len(interfaces) == GUEST_INTERFACES_MAX and interfaces[0]['name'] == 'eth00000'
    assert all(len(interface['addresses']) == GUEST_ADDRESSES_MAX for interface in interfaces)


def test_host_addresses_are_this_hosts_own_from_the_kernel():
    own = host_addresses()
    assert ipaddress.ip_address('127.0.0.1') in own
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(('192.0.2.1', 9))  # no packet is sent: the kernel picks our source address
        except OSError:
            pytest.skip('no IPv4 route on this machine')
        assert ipaddress.ip_address(sock.getsockname()[0]) in own


def test_a_controller_without_procs_network_files_knows_its_addresses_by_its_name(monkeypatch):
    monkeypatch.setattr(_network, 'FIB_TRIE', '/nonexistent/fib_trie')
    assert host_addresses() == name_addresses(socket.gethostname())
    assert name_addresses('198.51.100.9') == {ipaddress.ip_address('198.51.100.9')}
    assert name_addresses('x' * 300) == set()  # no such name: nothing, not an error


def test_passt_cards_are_libvirt_interfaces_with_its_port_forwards_ipv6_too():
    forwards = [{'host': 2222, 'guest': 22, 'protocol': 'tcp', 'address': '127.0.0.1'},
                {'host': 2222, 'guest': 22, 'protocol': 'tcp', 'address': '::1'},
                {'host': 8053, 'guest': 53, 'protocol': 'udp', 'address': '0.0.0.0'}]
    elements, args = interfaces_xml([{'type': 'user', 'port_forwards': forwards}, {'type': 'user'}], 'web', 'passt')
    assert args == [] and len(elements) == 2
    card = ElementTree.fromstring(elements[0])
    assert card.get('type') == 'user' and card.find('backend').get('type') == 'passt'
    assert card.find('mac').get('address') == stable_mac('web')
    assert [(f.get('proto'), f.get('address'), f.find('range').get('start'), f.find('range').get('to'))
            for f in card.iterfind('portForward')] == [('tcp', '127.0.0.1', '2222', '22'), ('tcp', '::1', '2222', '22'),
                                                       ('udp', '0.0.0.0', '8053', '53')]
    assert forwarded_ports(domain(devices=''.join(elements))) == forwards
    # An address in another spelling is written, reported and compared in its normal form.
    elements, _args = interfaces_xml([{'type': 'user', 'port_forwards': [
        {'host': 2222, 'guest': 22, 'address': '0:0::1'}]}], 'web', 'passt')
    assert forwarded_ports(domain(devices=elements[0]))[0]['address'] == '::1'


@pytest.mark.parametrize('forwards, says', [
    ([{'host': 2222, 'guest': 22, 'address': '::1'}, {'host': 2222, 'guest': 80, 'address': '::'}],
     r'host port 2222 \(tcp\) is forwarded twice'),
    ([{'host': 2222, 'guest': 22, 'address': 'localhost'}], 'or an IPv6 one such as ::1'),
])
def test_bad_passt_forwards_name_the_fix(forwards, says):
    with pytest.raises(ValueError, match=says):
        interface_xml({'type': 'user', 'port_forwards': forwards}, 'web', backend='passt')


def test_any_address_of_one_family_leaves_the_other_free():
    interface_xml({'type': 'user', 'port_forwards': [{'host': 2222, 'guest': 22, 'address': '0.0.0.0'},
                                                     {'host': 2222, 'guest': 22, 'address': '::1'}]}, 'web', backend='passt')


@pytest.mark.parametrize('version, passt, account, current, backend, says', [
    ('11.3.0', '/usr/bin/passt', False, None, 'passt', 'libvirt 11.3.0 runs /usr/bin/passt'),
    ('10.0.0', '/usr/bin/passt', False, None, 'passt', 'runs /usr/bin/passt'),
    ('9.0.0', '/usr/bin/passt', False, None, 'slirp', 'libvirt 9.0.0 cannot run passt for an embedded root (10.0.0 or newer can)'),
    ('11.3.0', None, False, None, 'slirp', 'passt is not installed on the hypervisor'),
    # A guest keeps the backend it was defined with, whatever the host has now.
    ('11.3.0', '/usr/bin/passt', False, domain(args=['-netdev', 'user,id=embedvirt-net0']), 'slirp', 'defined with it'),
    ('9.0.0', None, False, domain(devices="<interface type='user'><backend type='passt'/></interface>"), 'passt',
     'defined with it'),
    # One without a user-mode card chooses afresh.
    ('11.3.0', '/usr/bin/passt', False, domain(devices="<interface type='bridge'/>"), 'passt', 'runs'),
    # Where QEMU has an account of its own, libvirt would kill as root whatever pid passt's
    # pidfile (that account's) names: never passt there, even for a guest defined with it.
    ('11.3.0', '/usr/bin/passt', True, None, 'slirp', "kill whatever process passt's pidfile names"),
    ('11.3.0', '/usr/bin/passt', True, domain(devices="<interface type='user'><backend type='passt'/></interface>"),
     'slirp', 'runs as the root\'s own account'),
])
def test_user_backend_is_passt_where_libvirt_runs_it_as_the_helpers_user(version, passt, account, current, backend, says):
    chosen, why = _network.user_backend(version, passt, account, current)
    assert chosen == backend and says in why


def test_two_cards_never_share_a_mac():
    with pytest.raises(ValueError, match='mac 52:54:00:12:34:56 is given to two cards'):
        interfaces_xml([{'type': 'user', 'mac': '52:54:00:12:34:56'},
                        {'type': 'bridge', 'bridge': 'br0', 'mac': '52:54:00:12:34:56'}], 'web')
    interfaces_xml([{'type': 'none', 'mac': '52:54:00:12:34:56'}, {'type': 'user', 'mac': '52:54:00:12:34:56'}], 'web')


def test_excluded_port_ranges_are_no_forwards():
    xml = domain(devices="<interface type='user'><backend type='passt'/><portForward proto='tcp'>"
                         "<range start='2222' to='22'/><range start='2223' exclude='yes'/></portForward></interface>")
    assert [forward['host'] for forward in forwarded_ports(xml)] == [2222]
