# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""A guest's network cards without libvirt networks, and the ports user networking forwards.

Embedded roots have no network driver. A user-mode card (no privilege: the same for a root
run as uid 0 and one of an ordinary user) has one of two backends, chosen by user_backend:
passt, through libvirt's own <backend type='passt'/> and <portForward> (IPv4 and IPv6), where
libvirt runs it here and the passt program is installed; else QEMU's slirp with its `hostfwd`,
given on QEMU's command line (<qemu:commandline>), because libvirt 9.0 refuses the passt
backend ("Invalid value for attribute 'type' in element 'backend'") and, without passt,
accepts a <portForward> but QEMU never binds the port.
"""

import errno
import hashlib
import ipaddress
import os
import re
import socket
from xml.etree import ElementTree

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _versions

QEMU_NAMESPACE = 'http://libvirt.org/schemas/domain/qemu/1.0'
# A user-mode card's netdev is embedvirt-net<index>.
NETDEV_ID = 'embedvirt-net%d'
# The first user-mode card's slot on the machine's main PCI bus (pc's pci.0, q35's pcie.0), the
# next ones' above it, so the guest counts them in their order (cloud-init's default DHCP goes
# to the first): libvirt does not know about a device on QEMU's command line and gives its own
# devices the low slots from 1 up (on q35 its root ports, which the other devices sit behind);
# q35 keeps 0x1d-0x1f for USB, its DMI bridge and LPC.
NIC_PCI_SLOT = 0x14
# The cards a guest may have (the user-mode ones take slots 0x14 up to 0x1b).
MAX_NICS = 8
TYPES = ('none', 'user', 'bridge', 'tap')
PROTOCOLS = ('tcp', 'udp')
DEFAULT_ADDRESS = '127.0.0.1'
# slirp binds a forward without an address on every IPv4 address.
ANY_ADDRESS = '0.0.0.0'
ANY_ADDRESSES = (ANY_ADDRESS, '::')
# The backends of a user-mode card (see user_backend).
PASST, SLIRP = 'passt', 'slirp'
MAC_PATTERN = re.compile(r'^[0-9a-f]{2}(:[0-9a-f]{2}){5}$')
HOSTFWD_PATTERN = re.compile(r'^(tcp|udp)?:([^:]*):(\d+)-([^:]*):(\d+)$')


def stable_mac(name):
    """A MAC for a guest name: QEMU's locally administered prefix 52:54:00 and three bytes of
    the name's hash, so the guest keeps its card (and its DHCP lease) across redefinitions."""
    digest = hashlib.sha256(name.encode('utf-8')).digest()
    return '52:54:00:' + ':'.join('%02x' % byte for byte in digest[:3])


def card_mac(network, name, index):
    """A card's MAC: the one given, or one from the guest's name (and the card's place after the
    first), so the card keeps it; ValueError for a MAC that cannot be a card's."""
    return normalize_mac((network or {}).get('mac') or stable_mac(name if index == 0 else '%s/%d' % (name, index)))


def user_backend(libvirt_version, passt_path, qemu_account, current_xml=None):
    """(backend, why) for a guest's user-mode cards: slirp where QEMU runs as an account of its
    own (qemu_account: a root of uid 0); else what its definition already uses (so that a new
    libvirt or passt never redefines a guest by itself), else passt where this libvirt runs it
    and the hypervisor has it (passt_path, as the helper finds it), else slirp."""
    if qemu_account:
        # passt runs as QEMU's account and writes its pidfile where that account may; libvirt,
        # as uid 0 in the helper, kills whatever pid the file names when the card goes.
        return SLIRP, ("QEMU runs as the root's own account, and libvirt (as root) would kill whatever process "
                       "passt's pidfile names, which that account writes: a guest that escapes could have any "
                       "process of the host killed. passt serves roots whose QEMU runs as the helper's own user")
    used = backend_of(current_xml) if current_xml else None
    if used:
        return used, 'the guest is defined with it (undefine the guest, or make a new one, to choose again)'
    if not _versions.at_least(libvirt_version, _versions.PASST_WORKS):
        return SLIRP, ('libvirt %s cannot run passt for an embedded root (%s or newer can)'
                       % (libvirt_version, _versions.text(_versions.PASST_WORKS)))
    if not passt_path:
        return SLIRP, ('passt is not installed on the hypervisor: install its package (the '
                       'embedvirt.libvirt.host role does) for IPv6 and libvirt\'s own port forwards')
    return PASST, 'libvirt %s runs %s' % (libvirt_version, passt_path)


def backend_of(domain_xml):
    """The backend a definition's user-mode cards have, or None when it has none."""
    try:
        tree = ElementTree.fromstring(domain_xml)
    except ElementTree.ParseError:
        return None
    if passt_cards(tree):
        return PASST
    return SLIRP if slirp_netdevs(tree) else None


def passt_cards(tree):
    """The <interface> elements of a definition (parsed) whose backend is passt."""
    return [interface for interface in tree.iterfind("devices/interface[@type='user']")
            if interface.find("backend[@type='passt']") is not None]


def qemu_args(tree):
    """The arguments a definition (parsed) adds to QEMU's command line, in order."""
    return [arg.get('value', '') for arg in tree.iter('{%s}arg' % QEMU_NAMESPACE)]


def slirp_netdevs(tree):
    """The values of the -netdev user (or -nic user) arguments of a definition (parsed)."""
    args = qemu_args(tree)
    return [value for option, value in zip(args, args[1:]) if option in ('-netdev', '-nic') and value.startswith('user')]


def interfaces_xml(networks, name, backend=SLIRP):
    """The <interface> elements (text) and the QEMU arguments of a guest's cards, one per entry
    of the `networks` option of a guest called name, in order, its user-mode cards on backend;
    ValueError naming the fix."""
    if len(networks) > MAX_NICS:
        raise ValueError('networks has %d cards, more than the %d a guest may have here' % (len(networks), MAX_NICS))
    elements, args, macs = [], [], []
    for index, network in enumerate(networks):
        element, more = interface_xml(network, name, index, backend)
        elements += [element] if element else []
        args += more
        if network and (network.get('type') or 'none') != 'none':
            macs.append(card_mac(network, name, index))
    twice = sorted(set(mac for mac in macs if macs.count(mac) > 1))
    if twice:
        raise ValueError('mac %s is given to two cards: give each card a MAC of its own, or leave mac out' % twice[0])
    return elements, args


def interface_xml(network, name, index=0, backend=SLIRP):
    """The <interface> element (text, '' for none) and the QEMU arguments for one card, the
    index-th, of a guest called name; ValueError naming the fix for a value that cannot work.
    Its MAC, when not given, comes from the name (and the index after the first card)."""
    network = dict(network or {'type': 'none'})
    kind = network.get('type') or 'none'
    if kind not in TYPES:
        raise ValueError("network type '%s' is unknown: use one of %s" % (kind, ', '.join(TYPES)))
    forwards = normalize_forwards(network.get('port_forwards'), ipv6=backend == PASST)
    if forwards and kind != 'user':
        raise ValueError("port_forwards need network type 'user' (got '%s'): a guest on a bridge or "
                         "tap device is reached at its own address" % kind)
    if kind == 'none':
        return '', []
    mac = card_mac(network, name, index)
    if kind == 'user' and backend == PASST:
        element = ElementTree.Element('interface', type='user')
        ElementTree.SubElement(element, 'mac', address=mac)
        ElementTree.SubElement(element, 'model', type='virtio')
        ElementTree.SubElement(element, 'backend', type='passt')
        for forward in forwards:
            port_forward = ElementTree.SubElement(element, 'portForward', proto=forward['protocol'],
                                                  address=forward['address'])
            ElementTree.SubElement(port_forward, 'range', start=str(forward['host']), to=str(forward['guest']))
        return ElementTree.tostring(element, encoding='unicode'), []
    if kind == 'user':
        netdev = ','.join(['user', 'id=' + NETDEV_ID % index] + ['hostfwd=%s:%s:%d-:%d' % (
            forward['protocol'], forward['address'], forward['host'], forward['guest']) for forward in forwards])
        device = 'virtio-net-pci,netdev=%s,mac=%s,addr=0x%02x' % (NETDEV_ID % index, mac, NIC_PCI_SLOT + index)
        return '', ['-netdev', netdev, '-device', device]
    if kind == 'bridge':
        element = ElementTree.Element('interface', type='bridge')
        ElementTree.SubElement(element, 'source', bridge=required_device(network, 'bridge'))
    else:
        # An existing tap device (libvirt cannot make one without privilege or a network).
        element = ElementTree.Element('interface', type='ethernet')
        ElementTree.SubElement(element, 'target', dev=required_device(network, 'tap'), managed='no')
    ElementTree.SubElement(element, 'mac', address=mac)
    ElementTree.SubElement(element, 'model', type='virtio')
    return ElementTree.tostring(element, encoding='unicode'), []


def card_key(element):
    """What makes a card libvirt knows (an <interface> element) the card it is, whatever libvirt
    added to it (its alias, PCI address, a bridge card's tap device): a change of it is a new card."""
    def attribute(tag, name):
        found = element.find(tag)
        return None if found is None else found.get(name)

    forwards = sorted((forward.get('proto') or 'tcp', ip_text(forward.get('address') or ANY_ADDRESS),
                       tuple((port_range.get('start'), port_range.get('to')) for port_range in forward.iterfind('range')))
                      for forward in element.iterfind('portForward'))
    return (element.get('type'), (attribute('mac', 'address') or '').lower(), attribute('source', 'bridge'),
            attribute('target', 'dev') if element.get('type') == 'ethernet' else None,
            attribute('backend', 'type'), attribute('model', 'type'), forwards)


def own_macs(name, networks_lists):
    """The MACs this collection's cards of a guest called name may have: derived from its name,
    or given in one of networks_lists (each a `networks` option)."""
    macs = set(card_mac(None, name, index) for index in range(MAX_NICS))
    for networks in networks_lists:
        for network in networks or ():
            if isinstance(network, dict) and network.get('mac'):
                macs.add(str(network['mac']).lower())
    return macs


def required_device(network, key):
    value = network.get(key)
    if not isinstance(value, str) or not value or '/' in value or len(value) > 15:
        raise ValueError("network type '%s' needs %s: the name of an existing host %s device "
                         "(at most 15 characters, no '/'), got %r"
                         % (network['type'], key, 'bridge' if key == 'bridge' else 'tap', value))
    return value


def normalize_mac(mac):
    mac = str(mac).lower()
    if not MAC_PATTERN.match(mac) or int(mac[:2], 16) & 1:
        raise ValueError("mac '%s' is not a unicast MAC address: give six hex octets such as "
                         "52:54:00:12:34:56 (the first octet even), or leave mac out to derive one "
                         "from the name" % mac)
    return mac


def normalize_forwards(forwards, ipv6=False):
    """port_forwards as complete dicts {host, guest, protocol, address}, IPv6 addresses only
    with ipv6 (passt); ValueError on a bad one."""
    result = []
    for forward in forwards or ():
        if not isinstance(forward, dict) or set(forward) - {'host', 'guest', 'protocol', 'address'}:
            raise ValueError('each port forward is a dictionary with host, guest and optionally '
                             'protocol (tcp, udp) and address; got %r' % (forward,))
        ports = {}
        for key in ('host', 'guest'):
            value = forward.get(key)
            try:
                ports[key] = int(value)
            except (TypeError, ValueError):
                ports[key] = 0
            if isinstance(value, bool) or not 1 <= ports[key] <= 65535 or str(ports[key]) != str(value).strip():
                raise ValueError('port forward %r: %s must be a port number from 1 to 65535' % (forward, key))
        protocol = forward.get('protocol') or 'tcp'
        if protocol not in PROTOCOLS:
            raise ValueError("port forward %r: protocol must be tcp or udp" % (forward,))
        address = ip_text(forward.get('address') or DEFAULT_ADDRESS)
        if not valid_ipv4(address) and not (ipv6 and address):
            raise ValueError("port forward %r: address must be an IPv4 address of this host, such as "
                             "127.0.0.1 (the default, this host only) or 0.0.0.0 (every address)%s"
                             % (forward, ', or an IPv6 one such as ::1' if ipv6 else
                                "; IPv6 needs the passt backend (libvirt %s or newer and the passt package), "
                                "QEMU's slirp forwards IPv4 only" % _versions.text(_versions.PASST_WORKS)))
        normalized = {'host': ports['host'], 'guest': ports['guest'], 'protocol': protocol, 'address': address}
        if any((other['host'], other['protocol']) == (normalized['host'], protocol)
               and (other['address'] == address or same_family_any(other['address'], address))
               for other in result):
            raise ValueError('host port %d (%s) is forwarded twice: give each forward its own host port'
                             % (normalized['host'], protocol))
        result.append(normalized)
    return result


def ip_text(address):
    """An IP address in its normal form ('::1' for '0::1'), or '' for anything else."""
    try:
        return str(ipaddress.ip_address(address)) if isinstance(address, str) else ''
    except ValueError:
        return ''


def same_family_any(one, other):
    """Whether one of two addresses binds every address of the other's family."""
    return any(address in ANY_ADDRESSES and ipaddress.ip_address(address).version == ipaddress.ip_address(
        second).version for address, second in ((one, other), (other, one)))


def valid_ipv4(address):
    try:
        ipaddress.IPv4Address(address)
        return True
    except ValueError:
        return False


def forwarded_ports(domain_xml):
    """The ports user networking forwards for a domain: passt's, from the <portForward>s of its
    user-mode cards, and slirp's, from the hostfwd= of the -netdev user (or -nic user)
    arguments in its <qemu:commandline>."""
    try:
        tree = ElementTree.fromstring(domain_xml)
    except ElementTree.ParseError:
        return []
    # Without passt, libvirt keeps a <portForward> that nothing binds.
    result = [forward for interface in passt_cards(tree) for forward in card_forwards(interface)]
    for value in slirp_netdevs(tree):
        for part in value.split(','):
            match = HOSTFWD_PATTERN.match(part[len('hostfwd='):]) if part.startswith('hostfwd=') else None
            if match and valid_ipv4(match.group(2) or ANY_ADDRESS):
                protocol, address, host, _guest_address, guest = match.groups()
                result.append({'host': int(host), 'guest': int(guest), 'protocol': protocol or 'tcp',
                               'address': address or ANY_ADDRESS})
    return result


def card_forwards(interface):
    """The ports a passt card (an <interface> element) forwards, from its <portForward>s."""
    result = []
    for port_forward in interface.iterfind('portForward'):
        address = ip_text(port_forward.get('address') or ANY_ADDRESS)
        protocol = port_forward.get('proto') or 'tcp'
        for port_range in port_forward.iterfind('range'):
            try:
                host = int(port_range.get('start'))
                guest = int(port_range.get('to') or host)
            except (TypeError, ValueError):
                continue
            if address and protocol in PROTOCOLS and port_range.get('end') is None \
                    and port_range.get('exclude') != 'yes':
                result.append({'host': host, 'guest': guest, 'protocol': protocol, 'address': address})
    return result


def check_ports_free(forwards):
    """Raise ValueError naming the port, the address and the fix when a forward's host port
    cannot be bound here (taken, privileged or not an address of this host). Call it before
    the guest starts: a running guest holds its own ports."""
    for forward in normalize_forwards(forwards, ipv6=True):
        kind = socket.SOCK_STREAM if forward['protocol'] == 'tcp' else socket.SOCK_DGRAM
        where = 'host port %d (%s) on %s' % (forward['host'], forward['protocol'], forward['address'])
        family = socket.AF_INET if valid_ipv4(forward['address']) else socket.AF_INET6
        with socket.socket(family, kind) as probe:
            # As slirp does for its listening sockets, so a closed connection's TIME_WAIT does not count.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((forward['address'], forward['host']))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise ValueError('%s is already in use (by another program or guest; see ss -lntup '
                                     'sport = :%d): choose another host port in port_forwards or stop '
                                     'what uses it' % (where, forward['host']))
                if e.errno == errno.EACCES:
                    raise ValueError('%s needs privilege (ports below 1024 are reserved for root, see '
                                     'sysctl net.ipv4.ip_unprivileged_port_start): choose a host port '
                                     'from 1024 up' % where)
                if e.errno == errno.EADDRNOTAVAIL:
                    raise ValueError('%s cannot be bound: %s is not an address of this host; use 127.0.0.1 '
                                     'or 0.0.0.0 (::1 or :: with passt), or one of the addresses ip addr lists'
                                     % (where, forward['address']))
                raise ValueError('%s cannot be bound: %s' % (where, e.strerror))


# What a guest's agent reports is the guest's word. Enough for any real guest; the rest is cut.
GUEST_INTERFACES_MAX = 64
GUEST_ADDRESSES_MAX = 64
GUEST_NAME_MAX = 256
# libvirt's address types (VIR_IP_ADDR_TYPE_IPV4, _IPV6): our name, the IP version, the largest prefix.
IP_TYPES = {0: ('ipv4', 4, 32), 1: ('ipv6', 6, 128)}
# 0.0.0.0/8 is "this host on this network": connecting to it reaches the host itself.
THIS_NETWORK = ipaddress.IPv4Network('0.0.0.0/8')
# Where the kernel lists this host's own addresses (of its network namespace).
FIB_TRIE = '/proc/net/fib_trie'
IF_INET6 = '/proc/net/if_inet6'


def guest_address_refusal(address, own_addresses=()):
    """Why an address a guest reports must never be used to reach that guest, or None.

    A guest may claim any address; one that is not the guest's own on a network (unspecified,
    loopback, link-local, multicast, reserved or broadcast, also inside an IPv4-mapped IPv6
    address) or that is an address of this host (own_addresses: the hypervisor's, the
    controller's) would send the controller's SSH user, keys and become there instead.
    """
    try:
        ip = ipaddress.ip_address(address if isinstance(address, str) and len(address) <= 64 else '')
    except ValueError:
        return 'not an IP address'
    if getattr(ip, 'scope_id', None):
        return 'scoped to an interface'  # 2001:db8::7%eth0 is reached through our own eth0
    for candidate in (getattr(ip, 'ipv4_mapped', None), ip):  # the IPv4 one names the reason
        if candidate is None:
            continue
        if candidate.is_unspecified or (candidate.version == 4 and candidate in THIS_NETWORK):
            return 'unspecified'
        for kind in ('loopback', 'link_local', 'multicast', 'reserved'):
            if getattr(candidate, 'is_' + kind):
                return kind.replace('_', '-')
        if candidate in own_addresses:
            return 'an address of the hypervisor or the controller'
    return None


def guest_interfaces(found, own_addresses):
    """What a guest agent reports of its interfaces, as libvirt's interfaceAddresses gives it
    ({name: {'hwaddr', 'addrs': [{'type', 'addr', 'prefix'}]}}), as a list of {'name', 'hwaddr',
    'addresses'} sorted by name: bounded, every value checked, and only the addresses that
    guest_address_refusal lets through."""
    if not isinstance(found, dict):
        return []
    names = sorted(name for name in found if isinstance(name, str))[:GUEST_INTERFACES_MAX]
    interfaces = []
    for name in names:
        detail = found[name] if isinstance(found[name], dict) else {}
        hwaddr, addrs = detail.get('hwaddr'), detail.get('addrs')
        addresses = [guest_address(address, own_addresses)
                     for address in (addrs if isinstance(addrs, list) else [])[:GUEST_ADDRESSES_MAX]]
        interfaces.append({'name': name[:GUEST_NAME_MAX],
                           'hwaddr': hwaddr if isinstance(hwaddr, str) and MAC_PATTERN.match(hwaddr) else None,
                           'addresses': [address for address in addresses if address]})
    return interfaces


def guest_address(address, own_addresses):
    """One address of guest_interfaces as {'type', 'address', 'prefix'}, or None to leave it out."""
    kind = address.get('type') if isinstance(address, dict) else None
    if not isinstance(kind, int) or isinstance(kind, bool) or kind not in IP_TYPES:
        return None
    name, version, prefix_max = IP_TYPES[kind]
    prefix = address.get('prefix')
    if isinstance(prefix, bool) or not isinstance(prefix, int) or not 0 <= prefix <= prefix_max \
            or guest_address_refusal(address.get('addr'), own_addresses):
        return None
    ip = ipaddress.ip_address(address['addr'])
    return {'type': name, 'address': str(ip), 'prefix': prefix} if ip.version == version else None


def host_addresses():
    """This host's own IPv4 and IPv6 addresses, as the kernel lists them."""
    if not os.path.exists(FIB_TRIE):  # not Linux (a controller on macOS): what our name resolves to
        return name_addresses(socket.gethostname())
    found = set()
    with open(FIB_TRIE) as trie:
        last = None
        for line in trie:
            # An address line ('|-- 192.0.2.2') comes before its kinds; 'host LOCAL' marks our own.
            if '|--' in line:
                last = line.split('|--', 1)[1].strip()
            elif 'host LOCAL' in line and last:
                found.add(ipaddress.IPv4Address(last))
    try:
        with open(IF_INET6) as inet6:
            for line in inet6:
                found.add(ipaddress.IPv6Address(int(line.split()[0], 16)))
    except FileNotFoundError:  # a kernel without IPv6
        pass
    return found


def name_addresses(name):
    """The addresses a host name resolves to here; none when it does not resolve."""
    try:
        found = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()
    return set(ipaddress.ip_address(info[4][0].split('%', 1)[0]) for info in found)
