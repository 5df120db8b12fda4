# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""A guest from a cloud image in one task: the base image cached under the root, a qcow2
overlay on it (images/<name>.qcow2), a NoCloud seed (images/<name>-cidata.img), the domain
XML built here, and the domain brought to its state by the domain module's manager.

A linked clone (clone_from) is the same with overlays on another domain's disks instead of
the base image; its definition names that source in <metadata>, so the helper keeps the
source from starting while the clone exists.

The definition also records, in <metadata>, the options it was built from (DEFINITION): a
later task that leaves one out keeps the guest's value, never the module's default, and a task
that names only the guest acts on it as the domain module does."""

import json
import os
import shutil
import socket
import stat
import string
import time
from xml.etree import ElementTree

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _cloud_init, _data_disks, _live, _network
from ansible_collections.embedvirt.libvirt.plugins.module_utils._client_error import HelperClientError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import Manager, ModuleView
from ansible_collections.embedvirt.libvirt.plugins.module_utils._domain import DomainManager
from ansible_collections.embedvirt.libvirt.plugins.module_utils._images import BaseImage, ImageError, is_url, parse_checksum
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import (
    ACTIVE_STATES, CLONE_ELEMENT, CLONE_NAMESPACE, INSTANCE_NAMESPACE)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._rules import tpm_problem
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import (
    BASE_IMAGES, CONSOLE_DIR, IMAGES, RootError, console_log, domain_name_problem, instance_disk, instance_seed,
    nvram_file, real_path)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._volume import VolumeManager, qcow2_header

# The options a definition is built from, with what a new guest gets for those a task leaves
# out; an existing guest keeps the values its definition records (see instance_metadata).
DEFINITION = dict(memory=1024, max_memory=None, vcpus=1, max_vcpus=None, firmware='bios', secure_boot=False,
                  tpm=False, accelerator='auto', agent=True, networks=[{'type': 'user'}], extra_devices=None, disks=[])
# Options that records made before them lack: such a record means their value here.
ADDED_LATER = dict(secure_boot=False, tpm=False)
INSTANCE_ELEMENT = '{%s}instance' % INSTANCE_NAMESPACE
# Options of DEFINITION that may be null.
OPTIONAL = ('max_memory', 'max_vcpus', 'extra_devices')
# What the module's state means for the domain.
DOMAIN_STATES = {'running': 'running', 'shutdown': 'shutdown', 'destroyed': 'destroyed', 'restarted': 'restarted',
                 'undefined': 'undefined'}
AGENT_CHANNEL = 'org.qemu.guest_agent.0'
SSH_BANNER_SECONDS = 5
BALLOON_STATS_SECONDS = 5
# PCIe root ports a definition gives libvirt, as virt-install does: those its devices do not take
# are free slots for hot-plugged disks (q35 has no hot-plug on its root bus).
PCIE_ROOT_PORTS = 14
# The targets of a linked clone's further disks: its own disk is vda, its seed vdb.
CLONE_TARGETS = tuple('vd' + letter for letter in string.ascii_lowercase[2:])


# The options of embedvirt.libvirt.instance, and of each guest of embedvirt.libvirt.instances.
# A network card: the suboptions of network and of each item of networks.
CARD = dict(
    type=dict(type='str', choices=['none', 'user', 'bridge', 'tap'], default='user'),
    port_forwards=dict(type='list', elements='dict', default=[], options=dict(
        host=dict(type='int', required=True),
        guest=dict(type='int', required=True),
        protocol=dict(type='str', choices=['tcp', 'udp'], default='tcp'),
        address=dict(type='str', default='127.0.0.1'),
    )),
    bridge=dict(type='str'),
    tap=dict(type='str'),
    mac=dict(type='str'),
)

ARGUMENT_SPEC = dict(
    name=dict(type='str', required=True),
    state=dict(type='str', choices=['running', 'shutdown', 'destroyed', 'restarted', 'undefined'],
               default='running'),
    image=dict(type='str'),
    clone_from=dict(type='str'),
    remove_snapshots=dict(type='bool', default=False),
    checksum=dict(type='str'),
    allow_unverified=dict(type='bool', default=False),
    remove_image=dict(type='bool', default=False),
    download_timeout=dict(type='int', default=1800),
    disk_size=dict(type='str'),
    memory=dict(type='int'),
    max_memory=dict(type='int'),
    vcpus=dict(type='int'),
    max_vcpus=dict(type='int'),
    disks=dict(type='list', elements='dict', options=dict(
        name=dict(type='str', required=True),
        size=dict(type='str'),
        format=dict(type='str', choices=['qcow2', 'raw'], default='qcow2'),
        bus=dict(type='str', choices=['virtio', 'scsi', 'sata'], default='virtio'),
        file=dict(type='str'),
        backing_file=dict(type='str'),
    )),
    remove_disks=dict(type='bool', default=False),
    apply=dict(type='str', choices=['live', 'restart'], default='live'),
    firmware=dict(type='str', choices=['bios', 'uefi']),
    secure_boot=dict(type='bool'),
    tpm=dict(type='bool'),
    accelerator=dict(type='str', choices=['auto', 'kvm', 'tcg']),
    cloud_init=dict(type='dict', options=dict(
        user_data=dict(type='raw'),
        meta_data=dict(type='dict'),
        network_config=dict(type='raw'),
        hostname=dict(type='str'),
        ssh_authorized_keys=dict(type='list', elements='str', no_log=False),
    )),
    network=dict(type='dict', options=CARD),
    networks=dict(type='list', elements='dict', options=CARD),
    agent=dict(type='bool'),
    extra_devices=dict(type='list', elements='str'),
    autostart=dict(type='bool'),
    wait_for=dict(type='str', choices=['none', 'agent', 'ssh'], default='none'),
    wait_timeout=dict(type='int', default=300),
    shutdown_timeout=dict(type='int', default=120),
    force=dict(type='bool', default=False),
)
MUTUALLY_EXCLUSIVE = [('clone_from', 'image'), ('clone_from', 'checksum'), ('network', 'networks')]


def accelerator(wanted, kvm_usable):
    """libvirt's domain type: kvm when asked, or with auto when the root's QEMU may open /dev/kvm
    (kvm_usable, as its helper found); else qemu (TCG)."""
    if wanted == 'auto':
        return 'kvm' if kvm_usable else 'qemu'
    return 'kvm' if wanted == 'kvm' else 'qemu'


def domain_xml(params, disks, seed, console, network, source=None, kvm_usable=False, data_disks=()):
    """The domain definition of an instance: its qcow2 disks ([(path, target)], the first one
    boots), the seed (if not None), its data disks ([(path, target, format, bus)]), the cards
    of _network.interfaces_xml, the guest agent channel, a serial console to a file, and the
    devices given in extra_devices as they are; in its metadata the options of DEFINITION it is
    built from, and for a linked clone its source."""
    virt = accelerator(params['accelerator'], kvm_usable)
    dom = ElementTree.Element('domain', type=virt)
    ElementTree.SubElement(dom, 'name').text = params['name']
    dom.append(instance_metadata(params, source))
    ElementTree.SubElement(dom, 'memory', unit='MiB').text = str(params['max_memory'] or params['memory'])
    ElementTree.SubElement(dom, 'currentMemory', unit='MiB').text = str(params['memory'])
    vcpu = ElementTree.SubElement(dom, 'vcpu')
    vcpu.text = str(params['max_vcpus'] or params['vcpus'])
    if (params['max_vcpus'] or params['vcpus']) != params['vcpus']:
        vcpu.set('current', str(params['vcpus']))
    os_el = ElementTree.SubElement(dom, 'os')
    secure_boot = 'yes' if params['secure_boot'] else 'no'
    if params['firmware'] == 'uefi':
        os_el.set('firmware', 'efi')
        firmware = ElementTree.SubElement(os_el, 'firmware')
        # libvirt picks OVMF's Secure Boot build with Microsoft's keys enrolled (or the plain one).
        ElementTree.SubElement(firmware, 'feature', enabled=secure_boot, name='secure-boot')
        if params['secure_boot']:
            ElementTree.SubElement(firmware, 'feature', enabled='yes', name='enrolled-keys')
    ElementTree.SubElement(os_el, 'type', arch='x86_64', machine='q35').text = 'hvm'
    ElementTree.SubElement(os_el, 'boot', dev='hd')
    features = ElementTree.SubElement(dom, 'features')
    ElementTree.SubElement(features, 'acpi')
    ElementTree.SubElement(features, 'apic')
    if params['secure_boot']:
        # OVMF's Secure Boot build keeps its variables safe from the guest in SMM.
        ElementTree.SubElement(features, 'smm', state='on')
    if virt == 'kvm':
        ElementTree.SubElement(dom, 'cpu', mode='host-passthrough')
    devices = ElementTree.SubElement(dom, 'devices')
    for path, target in disks[:1] + ([(seed, 'vdb')] if seed else []) + disks[1:]:
        el = ElementTree.SubElement(devices, 'disk', type='file', device='disk')
        ElementTree.SubElement(el, 'driver', name='qemu', type='raw' if path == seed else 'qcow2')
        ElementTree.SubElement(el, 'source', file=path)
        ElementTree.SubElement(el, 'target', dev=target, bus='virtio')
        if path == seed:
            ElementTree.SubElement(el, 'readonly')
    for path, target, disk_format, bus in data_disks:
        devices.append(_data_disks.disk_element(path, target, disk_format, bus))
    ElementTree.SubElement(devices, 'controller', type='pci', index='0', model='pcie-root')
    for dummy in range(PCIE_ROOT_PORTS):
        ElementTree.SubElement(devices, 'controller', type='pci', model='pcie-root-port')
    if any(bus == 'scsi' for dummy, dummy, dummy, bus in data_disks):
        ElementTree.SubElement(devices, 'controller', type='scsi', index='0', model='virtio-scsi')
    interfaces, qemu_args = network
    for interface in interfaces:
        devices.append(ElementTree.fromstring(interface))
    if params['agent']:
        channel = ElementTree.SubElement(devices, 'channel', type='unix')
        ElementTree.SubElement(channel, 'target', type='virtio', name=AGENT_CHANNEL)
    serial = ElementTree.SubElement(devices, 'serial', type='file')
    ElementTree.SubElement(serial, 'source', path=console, append='on')
    ElementTree.SubElement(serial, 'target', port='0')
    balloon = ElementTree.SubElement(devices, 'memballoon', model='virtio')
    # QEMU asks the guest's balloon driver for its memory figures (domain_info's stats).
    ElementTree.SubElement(balloon, 'stats', period=str(BALLOON_STATS_SECONDS))
    if params['tpm']:
        tpm = ElementTree.SubElement(devices, 'tpm', model='tpm-crb')
        ElementTree.SubElement(tpm, 'backend', type='emulator', version='2.0')
    rng = ElementTree.SubElement(devices, 'rng', model='virtio')
    # QEMU's own getrandom(): no device node needed in QEMU's private /dev.
    ElementTree.SubElement(rng, 'backend', model='builtin')
    for fragment in params['extra_devices'] or ():
        devices.append(ElementTree.fromstring(fragment))
    if qemu_args:
        ElementTree.register_namespace('qemu', _network.QEMU_NAMESPACE)
        commandline = ElementTree.SubElement(dom, '{%s}commandline' % _network.QEMU_NAMESPACE)
        for arg in qemu_args:
            ElementTree.SubElement(commandline, '{%s}arg' % _network.QEMU_NAMESPACE, value=arg)
    return ElementTree.tostring(dom, encoding='unicode')


def instance_metadata(params, source):
    """The <metadata> of an instance: the options of DEFINITION as JSON, and for a linked clone
    of source the element by which the helper finds a source's clones."""
    ElementTree.register_namespace('embedvirt', CLONE_NAMESPACE)
    ElementTree.register_namespace('embedvirt-instance', INSTANCE_NAMESPACE)
    metadata = ElementTree.Element('metadata')
    ElementTree.SubElement(metadata, INSTANCE_ELEMENT).text = record_text(record(params))
    if source is not None:
        ElementTree.SubElement(metadata, CLONE_ELEMENT, source=source)
    return metadata


def record(params):
    """The options of DEFINITION as a definition records them: each card only with what was set,
    so one given as {type: user} and one left out record the same."""
    options = dict((option, params[option]) for option in DEFINITION)
    options['networks'] = [dict((key, value) for key, value in network.items() if value not in (None, []))
                           for network in params['networks']]
    return json.loads(json.dumps(options))


def record_text(options):
    """A record (see record) as a definition holds it: an option of ADDED_LATER only when it is not
    what its absence means, so a guest defined before it keeps its definition as it was."""
    return json.dumps(dict((option, value) for option, value in options.items()
                           if option not in ADDED_LATER or value != ADDED_LATER[option]), sort_keys=True)


def recorded_options(xml):
    """The options of DEFINITION an instance's definition records, or None for a domain that
    this module did not define (or whose record is not a JSON object of them)."""
    text = ElementTree.fromstring(xml).findtext('metadata/' + INSTANCE_ELEMENT)
    try:
        options = json.loads(text) if text else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(options, dict):
        return None
    options = dict(ADDED_LATER, **options)
    if set(options) != set(DEFINITION):
        return None
    kinds = dict(memory=int, max_memory=int, vcpus=int, max_vcpus=int, firmware=str, secure_boot=bool, tpm=bool,
                 accelerator=str, agent=bool, networks=list, extra_devices=list, disks=list)
    for key, kind in kinds.items():
        value = options[key]
        # The exact type: true is an int to isinstance, and no memory size.
        exact = type(value) is kind  # pylint: disable=unidiomatic-typecheck
        if not exact and not (key in OPTIONAL and value is None):
            return None
    if not all(isinstance(device, str) for device in options['extra_devices'] or ()):
        return None
    if not all(isinstance(network, dict) for network in options['networks']):
        return None
    disk_keys = set(('name', 'size', 'format', 'bus', 'file', 'backing_file'))
    if not all(isinstance(disk, dict) and set(disk) == disk_keys and disk['bus'] in ('virtio', 'scsi', 'sata')
               and disk['format'] in ('qcow2', 'raw') and isinstance(disk['name'], str)
               and all(disk[key] is None or isinstance(disk[key], str) for key in ('size', 'file', 'backing_file'))
               for disk in options['disks']):
        return None
    try:
        _network.interfaces_xml(options['networks'], 'x', _network.PASST)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if _data_disks.disks_problem(options['disks']):
        return None
    return options


def cards_by_mac(elements):
    """{MAC: element} of <interface> elements that have one."""
    cards = {}
    for element in elements:
        mac = element.find('mac')
        if mac is not None and mac.get('address'):
            cards[mac.get('address').lower()] = element
    return cards


def clone_source(xml):
    """The source a domain definition names as a linked clone's, or None."""
    marker = ElementTree.fromstring(xml).find('metadata/' + CLONE_ELEMENT)
    return None if marker is None else marker.get('source')


def clone_disks(source_xml, source_seed, root, name, extra_devices):
    """The disks of a linked clone called name of the domain defined by source_xml, as
    [(clone disk, source disk, its format, target)]: images/<name>.qcow2 (vda) on the source's
    first writable disk, images/<name>-<target>.qcow2 on each further one in order (targets
    from vdc on that extra_devices leave free). CD-ROMs, read-only disks and the source's seed
    are not cloned. ValueError naming the fix for a source an overlay cannot be put on."""
    images = os.path.join(root, IMAGES)
    sources = []
    taken = set()  # every file the source names as a disk
    for disk in ElementTree.fromstring(source_xml).iterfind('devices/disk'):
        source = disk.find('source')
        path = source.get('file') if source is not None else None
        if path:
            taken.add(os.path.normpath(path))
        if disk.get('device', 'disk') != 'disk' or disk.find('readonly') is not None or (path and path == source_seed):
            continue
        if disk.get('type') != 'file' or not path:
            target = disk.find('target')
            raise ValueError('its disk %s is not a file (type %s), which a qcow2 overlay cannot be put on'
                             % (target.get('dev') if target is not None else '', disk.get('type')))
        if os.path.normpath(path) != path or not path.startswith(images + '/'):
            raise ValueError('its disk %s is not below %s: a clone names its backing file relative to the '
                             'images directory, so the root stays one unit; copy the disk there and redefine '
                             'the source with it' % (path, images))
        if disk.find('encryption') is not None or source.find('encryption') is not None:
            raise ValueError('its disk %s is encrypted: an overlay on it would need the secret to be read' % path)
        driver = disk.find('driver')
        disk_format = driver.get('type') if driver is not None and driver.get('type') else 'raw'
        if disk_format not in ('qcow2', 'raw'):
            raise ValueError('its disk %s is %s, not qcow2 or raw' % (path, disk_format))
        sources.append((path, disk_format))
    if not sources:
        raise ValueError('it has no writable disk to build a clone on')
    used = set()
    for fragment in extra_devices or ():
        used.update(target.get('dev') for target in ElementTree.fromstring(fragment).iter('target'))
    targets = ['vda'] + [target for target in CLONE_TARGETS if target not in used]
    if len(sources) > len(targets):
        raise ValueError('it has %d writable disks, more than the %d virtio targets left'
                         % (len(sources), len(targets)))
    names = [instance_disk(name)] + [instance_disk(name, target) for target in targets[1:]]
    disks = [(os.path.join(root, file_name), path, disk_format, target)
             for file_name, (path, disk_format), target in zip(names, sources, targets)]
    for clone_disk, dummy, dummy, dummy in disks:
        # Such as a source defined with the domain module on images/<clone's name>.qcow2.
        if clone_disk in taken:
            raise ValueError("the clone's disk %s would be the source's own disk: choose another name for the clone"
                             % clone_disk)
    return disks


class InstanceManager(Manager):
    """Base image, disk, seed, domain: each made or brought up to date in that order."""

    def __init__(self, module):
        super().__init__(module)
        self.root = module.client.root
        self.name = self.params['name']
        self.disk = self.root.join(instance_disk(self.name))
        self.seed = self.root.join(instance_seed(self.name))
        self.console = self.root.join(console_log(self.name))
        self.domain = None
        self.diff = None
        self.network = self.files = self.seed_bytes = None
        # The backend of the user-mode cards and why (see _network.user_backend).
        self.backend = (_network.SLIRP, None)
        # The task's options, with those of DEFINITION it leaves out as the guest has them.
        self.options = None
        # A linked clone's disks (see clone_disks), once check_inputs found its source fit.
        self.clone = None
        # With neither image nor clone_from: the existing guest's definition, and whether the
        # task gives options that change it (else only its state, autostart, disk size or seed do).
        self.existing = None
        self.redefine = True
        self.current = None
        # What waits for the guest's next start (see _live.live_changes).
        self.pending = []

    def run(self):
        problem = domain_name_problem(self.name, self.root.path)
        if problem:
            self.module.fail('%s. Fix: %s' % problem, error_kind='name')
        # First: a module run creates a missing root (with its qemu.conf) on its first call.
        current = self.module.helper_or_fail.domain_get(name=self.name)
        if self.params['state'] == 'undefined':
            self.ensure_undefined(current)
            return self.result()
        self.check_inputs(current)
        if self.module.root_missing:
            # Check mode on a root a real run would create: everything would be made.
            self.plan('%s %s' % ('download' if is_url(self.params['image']) else 'copy', self.params['image']))
            self.plan('create %s' % self.disk)
            self.plan('write seed %s' % self.seed)
        else:
            with self.module.guard(self.root.open) as root_dir:
                if self.clone:
                    self.ensure_clone_disks(root_dir)
                elif self.params['image']:
                    self.ensure_disk(self.ensure_base(root_dir))
                elif self.params['disk_size']:
                    self.ensure_existing_disk()
                if self.params['disks'] is not None:
                    self.ensure_data_disks()
                if self.seed_bytes is not None:
                    self.ensure_seed(root_dir)
                os.close(root_dir.subdir(CONSOLE_DIR, create=True))
        self.ensure_domain()
        if not self.module.root_missing:
            self.remove_dropped_disks()
        self.wait()
        return self.result()

    # --- inputs --------------------------------------------------------------------------
    def check_inputs(self, current):
        """Everything that can be wrong with the task, found before anything changes."""
        params = self.params
        self.current = current
        recorded = recorded_options(current['xml']) if current else None
        self.options = dict(params)
        # network is the one-card form of networks.
        self.options['networks'] = [params['network']] if params['network'] else params['networks']
        for option in DEFINITION:
            if self.options[option] is None:
                self.options[option] = (recorded or DEFINITION)[option]
        if params['clone_from']:
            self.clone = self.check_source()
        elif params['image'] or current is None:
            self.check_image()
        else:
            self.check_existing(current, recorded)
        for option in ('memory', 'vcpus'):
            if self.options[option] < 1:
                self.module.fail('%s is %d: give at least 1' % (option, self.options[option]), error_kind=option)
            maximum = self.options['max_' + option]
            if maximum is not None and maximum < self.options[option]:
                self.module.fail('max_%s is %d, less than %s %d: give a maximum of at least %d, or none'
                                 % (option, maximum, option, self.options[option], self.options[option]),
                                 error_kind='value')
        if self.options['secure_boot'] and self.options['firmware'] != 'uefi':
            self.module.fail('secure_boot needs firmware=uefi (Secure Boot is a feature of UEFI firmware): set '
                             'firmware: uefi, or leave secure_boot out', error_kind='secure_boot')
        if self.options['tpm']:
            self.check_tpm()
        problem = _data_disks.disks_problem(self.options['disks'])
        paths = [path for path, dummy in self.data_disk_paths()]
        own = [self.disk, self.seed] + [self.root.join(instance_disk(self.name, target)) for target in CLONE_TARGETS]
        clash = sorted(set(path for path in paths if paths.count(path) > 1 or path in own))
        if not problem and clash:
            problem = ('disks: %s would be attached twice, or is a file of the instance itself: give each disk a '
                       'file of its own' % ', '.join(clash))
        if problem:
            self.module.fail(problem, error_kind='disks')
        # The files named after this instance are overwritten or grown: never another guest's disk.
        # One that is already this instance's own (a template's disk under its clones) is kept as it is.
        disks = self.module.helper_or_fail.domain_disks()
        own = set(disk['path'] for disk in disks if disk['domain'] == self.name)
        mine = [self.disk, self.seed] + [path for path, dummy in self.data_disk_paths()]
        taken = sorted(set('%s (%s)' % (disk['path'], disk['domain']) for disk in disks
                           if disk['path'] in mine and disk['path'] not in own))
        if taken:
            self.module.fail("the files of instance '%s' are disks of other domains: %s; this task would overwrite "
                             "them: choose another name for the instance" % (self.name, ', '.join(taken)),
                             error_kind='in_use')
        if any((network or {}).get('type') == 'user' for network in self.options['networks']):
            self.backend = self.user_backend()
        try:
            self.network = _network.interfaces_xml(self.options['networks'], self.name, self.backend[0])
        except ValueError as e:
            self.module.fail(str(e), error_kind='value')
        # An existing guest's seed stays as it is unless the task gives cloud_init.
        if current is None or params['cloud_init'] is not None:
            try:
                self.files = _cloud_init.render(params['cloud_init'] or {}, self.name)
                self.seed_bytes = _cloud_init.fat_image(self.files)
            except ValueError as e:
                self.module.fail(str(e), error_kind='cloud_init')
        if params['state'] in ('running', 'restarted') and (current is None or current['state'] not in ACTIVE_STATES):
            forwards = (_network.forwarded_ports(current['xml']) if not self.redefine
                        else [forward for network in self.options['networks']
                              for forward in network.get('port_forwards') or ()])
            try:
                _network.check_ports_free(forwards)
            except ValueError as e:
                self.module.fail(str(e), error_kind='port')

    def check_existing(self, current, recorded):
        """A task that names the guest without image or clone_from: it keeps the guest's disks
        and changes only the options it gives, which needs the options its definition records."""
        self.existing = current['xml']
        given = [option for option in DEFINITION if option != 'networks' and self.params[option] is not None]
        given += [option for option in ('network', 'networks') if self.params[option] is not None]
        self.redefine = bool(given)
        if given and recorded is None:
            self.module.fail("domain '%s' records no options of embedvirt.libvirt.instance in its definition (another "
                             "module defined it), so %s cannot be applied to it without image or clone_from: change "
                             "its definition with embedvirt.libvirt.domain, or leave %s out to change only its state"
                             % (self.name, ', '.join(given), 'it' if len(given) == 1 else 'them'),
                             error_kind='not_instance')

    def check_image(self):
        params = self.params
        if not params['image']:
            self.module.fail("image (or clone_from) is required to make instance '%s', which root %s does not have: "
                             "give a local path or an http(s) URL of a cloud image, or the template to clone"
                             % (self.name, self.root.path), error_kind='image')
        if is_url(params['image']) and not params['checksum'] and not params['allow_unverified']:
            self.module.fail("image '%s' is a URL without checksum: give checksum (such as sha256:<hex>, or "
                             "sha512:<URL of the SHA512SUMS next to the image>) so a damaged or replaced download is refused, or set "
                             "allow_unverified=true" % params['image'], error_kind='checksum')
        try:
            parse_checksum(params['checksum'])
        except ImageError as e:
            self.module.fail(str(e), error_kind=e.kind)

    def check_source(self):
        """The disks of a linked clone (see clone_disks), once its source is fit to build on:
        defined, shut off and not started with the root, so its disks stay as they are."""
        source = self.params['clone_from']
        if source == self.name:
            self.module.fail("clone_from names the instance itself ('%s'): give the domain to clone" % source,
                             error_kind='clone_source')
        current = self.module.helper_or_fail.domain_get(name=source)
        if current is None:
            self.module.fail("clone_from: domain '%s' is not defined in root %s: make it first (an instance "
                             "booted once and shut down serves as a template), or correct the name"
                             % (source, self.root.path), error_kind='clone_source')
        if current['state'] != 'shutoff':
            self.module.fail("clone_from: domain '%s' is %s: a linked clone is built on its disks, which must not "
                             "change; shut it down first (embedvirt.libvirt.instance or domain state=shutdown)"
                             % (source, current['state']), error_kind='clone_source')
        if current['autostart']:
            self.module.fail("clone_from: domain '%s' starts with the root (autostart), which its clones forbid: "
                             "set autostart=false on it first" % source, error_kind='clone_source')
        try:
            return clone_disks(current['xml'], self.root.join(instance_seed(source)), self.root.path, self.name,
                               self.params['extra_devices'])
        except ValueError as e:
            self.module.fail("clone_from: domain '%s' cannot be the source of a linked clone: %s" % (source, e),
                             error_kind='clone_source')

    # --- base image, disk, seed --------------------------------------------------------
    def ensure_base(self, root_dir):
        params = self.params
        try:
            base = BaseImage(root_dir, params['image'], params['checksum'], params['download_timeout'])
            if not base.present():
                if self.plan('download %s' % params['image'] if is_url(params['image']) else 'copy %s' % params['image']):
                    os.close(root_dir.subdir(BASE_IMAGES, create=True))
                    base.fetch()
        except ImageError as e:
            self.module.fail(str(e), error_kind=e.kind)
        return base

    def ensure_disk(self, base):
        """images/<name>.qcow2 over the base image, at least disk_size."""
        if self.module.check_mode and not base.present():
            self.plan('create %s' % self.disk)
            return
        self.ensure_overlay(self.disk, base.path, None, self.params['disk_size'])

    def ensure_clone_disks(self, root_dir):
        """A linked clone's overlays on its source's disks; its own disk at least disk_size."""
        missing = [backing for dummy, backing, dummy, dummy in self.clone
                   if not root_dir.lexists(os.path.relpath(backing, self.root.path))]
        if missing:
            # Found before the first overlay is made: a bad source changes nothing.
            self.module.fail("clone_from: the disk(s) %s of domain '%s' do not exist: restore them, or clone "
                             "another domain" % (', '.join(missing), self.params['clone_from']),
                             error_kind='clone_source')
        for index, (path, backing, backing_format, dummy) in enumerate(self.clone):
            self.ensure_overlay(path, backing, backing_format, self.params['disk_size'] if index == 0 else None)

    def data_disk_path(self, disk):
        """The file of a data disk (see _data_disks.disk_file)."""
        return self.root.join(os.path.join(IMAGES, _data_disks.disk_file(self.name, disk)))

    def data_disk_paths(self):
        """[(path, disk)] of the data disks the task's options name."""
        return [(self.data_disk_path(disk), disk) for disk in self.options['disks'] or ()]

    def ensure_data_disks(self):
        """Each data disk's file: made (an overlay with backing_file), or the given one checked;
        grown to its size, by the guest's QEMU while the guest runs."""
        for path, disk in self.data_disk_paths():
            params = dict(path=os.path.relpath(path, self.root.join(IMAGES)), state='present', format=disk['format'],
                          size=disk['size'], backing_file=disk['backing_file'], backing_format=None,
                          encryption_passphrase=None, allow_outside_root=False)
            outcome = VolumeManager(ModuleView(self.module, params)).run()
            self.changed |= outcome['changed']
            self.actions.extend('%s %s' % (action, path) for action in outcome['actions'])

    def remove_dropped_disks(self):
        """With remove_disks, the files made for data disks that the task no longer lists (a
        file the task gave is never removed); one a guest still has open is kept, with a warning."""
        before = recorded_options(self.current['xml']) if self.current else None
        if not self.params['remove_disks'] or before is None or self.params['disks'] is None:
            return
        names = set(disk['name'] for disk in self.options['disks'])
        dropped = [self.data_disk_path(disk) for disk in before['disks'] if disk['name'] not in names and not disk['file']]
        users = {}
        for disk in self.module.helper_or_fail.domain_disks():
            users.setdefault(disk['path'], set()).add(disk['domain'])
        with self.module.guard(self.root.open) as root_dir:
            for path in dropped:
                if path in users and not self.module.check_mode:
                    self.module.warn('%s is kept: it is still a disk of %s; remove it once the guest let go of it '
                                     '(embedvirt.libvirt.volume state=absent)' % (path, ', '.join(sorted(users[path]))))
                elif not self.kept_for_overlays(root_dir, path):
                    self.remove_file(root_dir, os.path.relpath(path, self.root.path))

    def kept_for_overlays(self, root_dir, path):
        """Whether a file in images/ stays because other images there are built on it (a shut-off
        guest's overlay names no domain disk), with a warning naming them."""
        relative = os.path.relpath(path, self.root.path)
        if os.path.dirname(relative) != IMAGES or not root_dir.lexists(relative):
            return False
        built_on = images_built_on(root_dir, relative)
        if built_on:
            verb = 'is' if len(built_on) == 1 else 'are'
            self.module.warn('%s is kept: %s %s built on it' % (path, ', '.join(built_on), verb))
        return bool(built_on)

    def ensure_existing_disk(self):
        """An existing guest's own disk, images/<name>.qcow2, at least disk_size."""
        if self.disk not in [path for path, dummy in self.own_disks(self.existing)]:
            self.module.fail("disk_size: instance '%s' has no disk %s to grow: grow its disk with "
                             "embedvirt.libvirt.volume" % (self.name, self.disk), error_kind='not_instance')
        self.ensure_overlay(self.disk, None, None, self.params['disk_size'])

    def ensure_overlay(self, path, backing, backing_format, size):
        """A qcow2 image at path (below images/) over backing (None: as it is), named relative to
        it, at least size."""
        params = dict(path=os.path.relpath(path, self.root.join(IMAGES)), state='present', format='qcow2', size=size,
                      backing_file=backing and os.path.relpath(backing, os.path.dirname(path)),
                      backing_format=backing_format, encryption_passphrase=None, allow_outside_root=False)
        outcome = VolumeManager(ModuleView(self.module, params)).run()
        self.changed |= outcome['changed']
        self.actions.extend('%s %s' % (action, path) for action in outcome['actions'])

    def ensure_seed(self, root_dir):
        relative = os.path.relpath(self.seed, self.root.path)
        try:
            current = root_dir.read_file(relative, limit=len(self.seed_bytes) + 1)
        except FileNotFoundError:
            current = None
        if current == self.seed_bytes:
            return
        if current is not None:
            self.module.warn("the cloud-init seed of '%s' changed: cloud-init reads it on a guest's first boot only; "
                             "to have it applied again, change meta_data's instance-id (the next boot then counts "
                             "as a first boot)" % self.name)
        if self.plan('write seed %s' % self.seed):
            root_dir.write_file(relative, self.seed_bytes, mode=0o600)

    # --- the domain --------------------------------------------------------------------
    def ensure_domain(self):
        params, options = self.params, self.options
        xml, kvm_usable = None, False
        if self.redefine:
            seed, source = self.seed, params['clone_from']
            if self.clone:
                disks = [(path, target) for path, dummy, dummy, target in self.clone]
            elif self.existing:
                disks, source = self.own_disks(self.existing), clone_source(self.existing)
                seed = self.seed if (self.seed, 'vdb') in disks else None
                disks = [disk for disk in disks if disk[0] != self.seed]
            else:
                disks = [(self.disk, 'vda')]
            data = self.data_disks([target for dummy, target in disks] + ['vdb'])
            kvm_usable = options['accelerator'] == 'auto' and self.kvm_usable()
            xml = domain_xml(options, disks, seed, self.console, self.network, source, kvm_usable, data)
        # The domain manager's warning that a new definition waits for the next start is this
        # task's own, finer, pending_restart.
        args = dict(name=self.name, xml=xml, state=DOMAIN_STATES[params['state']], autostart=params['autostart'],
                    shutdown_timeout=params['shutdown_timeout'], force=params['force'], warn_running=False)
        running = self.current is not None and self.current['state'] in ACTIVE_STATES
        if kvm_usable and params['state'] in ('running', 'restarted') and not running and not self.module.check_mode:
            self.start_or_fall_back(args, domain_xml(options, disks, seed, self.console, self.network, source,
                                                     data_disks=data))
        else:
            self.run_domain_manager(args)
        if running and params['state'] == 'running' and xml is not None:
            self.apply_live(args, data)

    def data_disks(self, taken):
        """[(path, target, format, bus)] of the data disks, their targets kept from the current
        definition (see _data_disks.assign_targets)."""
        paths = self.data_disk_paths()
        for fragment in self.options['extra_devices'] or ():
            taken.extend(target.get('dev') for target in ElementTree.fromstring(fragment).iter('target'))
        current = _data_disks.current_targets(self.current['xml']) if self.current else {}
        try:
            targets = _data_disks.assign_targets([disk for dummy, disk in paths], [path for path, dummy in paths],
                                                 current, taken)
        except ValueError as e:
            self.module.fail(str(e), error_kind='disks')
        return [(path, target, disk['format'], disk['bus']) for (path, disk), target in zip(paths, targets)]

    def apply_live(self, args, data):
        """To the running guest, what of its new definition can change at once, measured against
        what it runs with (see _live); what cannot is pending_restart, and with apply=restart
        the guest restarts for it."""
        helper = self.module.helper_or_fail
        live_xml = helper.domain_live_xml(name=self.name)
        if live_xml is None:
            return
        live_tree = ElementTree.fromstring(live_xml)
        # What the guest runs with: the record it started with, as changes made live updated it.
        started = recorded_options(live_xml)
        if started is None:
            # Started from a definition that records no options: only a changed one is known.
            steps, self.pending = [], ['definition'] if 'redefine' in self.actions else []
        else:
            stored = recorded_options(self.current['xml']) or started
            paths = dict((disk['name'], self.data_disk_path(disk))
                         for disk in stored['disks'] + started['disks'] + self.options['disks'])
            # Its memory as the record has it: libvirt's live figure follows the balloon, which takes
            # a while to get there.
            now = dict(_live.running(live_tree), memory=started['memory'])
            steps, self.pending = _live.live_changes(started, record(self.options), now, paths)
            cards, pending = _live.card_changes(
                _network.own_macs(self.name, [started['networks'], self.options['networks']]),
                cards_by_mac(ElementTree.fromstring(element) for element in self.network[0]),
                cards_by_mac(live_tree.iterfind('devices/interface')), self.network[1], _network.qemu_args(live_tree))
            steps, self.pending = steps + cards, self.pending + pending
        # A card plugged in binds its host ports at once: checked before anything changes live.
        try:
            _network.check_ports_free([forward for kind, value in steps if kind == 'plug'
                                       for forward in _network.card_forwards(value)])
        except ValueError as e:
            self.module.fail('%s (the card would be plugged into the running guest)' % e, error_kind='port')
        new = dict((disk['name'], entry) for disk, entry in zip(self.options['disks'], data))
        live_disks = dict((disk.find('source').get('file'), disk) for disk in live_tree.iterfind('devices/disk')
                          if disk.find('source') is not None)
        scsi_controller = live_tree.find("devices/controller[@type='scsi']") is not None
        for kind, value in steps:
            if kind == 'memory' and self.plan('memory %d MiB live' % value):
                helper.domain_set_memory(name=self.name, kib=value * 1024)
                self.domain = helper.domain_set_live_record(name=self.name,
                                                            text=record_text(dict(started, memory=value)))
            elif kind == 'vcpus' and self.plan('vcpus %d live' % value):
                self.domain = helper.domain_set_vcpus(name=self.name, count=value)
            elif kind == 'attach':
                path, target, fmt, bus = new[value['name']]
                if bus == 'scsi' and not scsi_controller:
                    scsi_controller = True
                    if self.plan('attach scsi controller live'):
                        helper.domain_attach(name=self.name,
                                             xml="<controller type='scsi' index='0' model='virtio-scsi'/>")
                if self.plan('attach %s (%s) live' % (path, target)):
                    self.domain = helper.domain_attach(name=self.name, xml=ElementTree.tostring(
                        _data_disks.disk_element(path, target, fmt, bus), encoding='unicode'))
            elif kind in ('plug', 'unplug'):
                self.plug_card(kind, value)
            elif kind == 'detach':
                element = live_disks[paths[value]]
                if self.plan('detach %s (%s) live' % (paths[value], element.find('target').get('dev'))):
                    outcome = helper.domain_detach(name=self.name, xml=ElementTree.tostring(element, encoding='unicode'))
                    self.domain = outcome['domain']
                    if not outcome['gone']:
                        self.pending.append('disks:%s (the guest has not let go of it yet)' % value)
        if not self.pending:
            return
        if self.params['apply'] == 'restart':
            diff = self.diff
            self.run_domain_manager(dict(args, xml=None, state='restarted'))
            self.diff, self.pending = diff, []
        else:
            self.module.warn("%s of '%s' wait(s) for its next start (state=restarted, or apply=restart, restarts it)"
                             % (', '.join(self.pending), self.name))

    def plug_card(self, kind, element):
        """A card libvirt knows plugged into the running guest, or unplugged (when the guest lets go)."""
        helper, mac = self.module.helper_or_fail, element.find('mac').get('address')
        xml = ElementTree.tostring(element, encoding='unicode')
        if kind == 'plug' and self.plan('attach card %s live' % mac):
            self.domain = helper.domain_attach(name=self.name, xml=xml)
        elif kind == 'unplug' and self.plan('detach card %s live' % mac):
            outcome = helper.domain_detach(name=self.name, xml=xml)
            self.domain = outcome['domain']
            if not outcome['gone']:
                self.pending.append('networks (the guest has not let go of card %s yet)' % mac)

    def user_backend(self):
        """(backend, why) of this guest's user-mode cards: passt where the root's helper runs it."""
        if self.module.root_missing:
            return _network.SLIRP, 'predicted: root %s does not exist yet, and a run creates it and chooses' % self.root.path
        status = self.module.guard(self.module.client.connected_status)
        return _network.user_backend(status['libvirt'], status.get('passt'), status['qemu']['uid'] is not None,
                                     self.current and self.current['xml'])

    def check_tpm(self):
        """The rule of _rules.tpm_problem before anything changes (the helper applies it again),
        and swtpm there."""
        if self.module.root_missing:
            # A run would create the root with its default qemu.conf, and its helper find swtpm as this task does.
            status = dict(qemu=dict(uid=0 if os.geteuid() == 0 else None),
                          swtpm=shutil.which('swtpm') and shutil.which('swtpm_setup'))
        else:
            status = self.module.guard(self.module.client.connected_status)
        self.refuse(tpm_problem(self.name, True, status['qemu']['uid'] is not None))
        if not status.get('swtpm'):
            self.module.fail('tpm: swtpm is not installed on the hypervisor (the helper of root %s finds no swtpm and '
                             'swtpm_setup): install the packages swtpm and swtpm-tools (the host role does), then '
                             'run again' % self.root.path, error_kind='tpm')

    def kvm_usable(self):
        """What accelerator=auto makes of a guest: KVM when the root's QEMU may open /dev/kvm, for a
        new guest; an existing one keeps what it runs under (a fall back to TCG stays)."""
        if self.current is not None:
            return ElementTree.fromstring(self.current['xml']).get('type') == 'kvm'
        return self.module.guard(self.module.client.connected_status)['qemu']['kvm']

    def start_or_fall_back(self, args, tcg_xml):
        """The domain defined for KVM and started; when QEMU fails under KVM (a nested host whose
        KVM cannot give the host's CPU, such as 'failed to set MSR'), redefined and started under
        TCG, with a warning naming the error."""
        self.run_domain_manager(dict(args, state='defined'))
        try:
            self.domain = self.module.client.domain_start(name=self.name)
            self.plan('start')
            return
        except HelperClientError as e:
            # The guest's name may say kvm; QEMU's complaint must.
            if 'kvm' not in str(e).replace(self.name, '').lower():
                self.module.fail(str(e), error_kind=e.kind)
            error = str(e)
        self.module.warn("QEMU could not run '%s' under KVM, so it runs under TCG (emulation, slower): %s. Give "
                         "accelerator=kvm to make this an error, or accelerator=tcg to skip KVM" % (self.name, error))
        self.run_domain_manager(dict(args, xml=tcg_xml))

    def run_domain_manager(self, params):
        """The domain module's manager, with params, as a step of this task."""
        outcome = DomainManager(ModuleView(self.module, params)).run()
        self.changed |= outcome['changed']
        self.actions.extend(outcome['actions'])
        self.domain = outcome['domain']
        self.diff = outcome.get('diff')

    def ensure_undefined(self, current):
        if self.module.root_missing:
            return
        # Even once the source is undefined, its disk is what its clones' disks are built on.
        clones = self.module.helper_or_fail.domain_clones(name=self.name)
        if clones:
            self.module.fail("'%s' is the source of the linked clones %s: removing its disk would break theirs; "
                             "undefine the clones first" % (self.name, ', '.join(clones)), error_kind='clone_source')
        files = [self.disk, self.seed] + self.clone_overlays(current) + self.nvram(current)
        recorded = recorded_options(current['xml']) if current else None
        if self.params['remove_disks'] and recorded:
            files += [self.data_disk_path(disk) for disk in recorded['disks'] if not disk['file']]
        # The same rule as creation's: a file named after this instance that another domain uses
        # is that domain's (also when no domain of this name exists, as in an idempotent clean-up).
        users = {}
        for disk in self.module.helper_or_fail.domain_disks():
            if disk['domain'] != self.name and disk['path'] in files:
                users.setdefault(disk['path'], set()).add(disk['domain'])
        with self.module.guard(self.root.open) as root_dir:
            # Named before anything goes: a checksums file that cannot be read fails the task first.
            base = None
            if self.params['remove_image'] and self.params['image']:
                try:
                    base = BaseImage(root_dir, self.params['image'], self.params['checksum'], 0)
                except ImageError as e:
                    self.module.fail(str(e), error_kind=e.kind)
            if current is not None:
                self.run_domain_manager(dict(name=self.name, xml=None, state='undefined', autostart=None,
                                             shutdown_timeout=self.params['shutdown_timeout'], force=True,
                                             remove_snapshots=self.params['remove_snapshots'],
                                             # Its TPM state goes with its disk and NVRAM.
                                             remove_tpm=True))
            for path in files:
                if path in users:
                    self.module.warn("%s is kept: it is a disk of the domain(s) %s, not only of instance '%s'"
                                     % (path, ', '.join(sorted(users[path])), self.name))
                elif not self.kept_for_overlays(root_dir, path):
                    self.remove_file(root_dir, os.path.relpath(path, self.root.path))
            if base is not None:
                if base.present():
                    built_on = images_built_on(root_dir, base.relative)
                    if built_on:
                        self.module.warn('%s is kept: %s %s built on it' % (
                            base.path, ', '.join(built_on), 'is' if len(built_on) == 1 else 'are'))
                    elif self.plan('remove %s' % base.path):
                        base.remove()

    def own_disks(self, xml):
        """The disks of a definition this module makes for the instance, [(path, target)] in
        order: its disk, its seed and a linked clone's further overlays."""
        return [(path, target) for path, target in _data_disks.current_targets(xml).items()
                if path in (self.disk, self.seed, self.root.join(instance_disk(self.name, target)))]

    def clone_overlays(self, domain):
        """A linked clone's further disks, images/<name>-<target>.qcow2 (never its source's)."""
        if not domain or clone_source(domain['xml']) is None:
            return []
        return [path for path, dummy in self.own_disks(domain['xml']) if path not in (self.disk, self.seed)]

    def nvram(self, domain):
        """The NVRAM file libvirt made for the domain under the root, if any: the one its XML
        names, or, for firmware libvirt chose (the stored XML names none until a start), where
        libvirt puts it."""
        if not domain:
            return []
        os_el = ElementTree.fromstring(domain['xml']).find('os')
        path = os_el.findtext('nvram') if os_el is not None else None
        if not path and os_el is not None and os_el.get('firmware') == 'efi':
            path = self.root.join(nvram_file(self.name))
        path = real_path(path, self.root.path) if path else None
        return [path] if path and path.startswith(self.root.path + '/') else []

    def remove_file(self, root_dir, relative):
        if root_dir.lexists(relative) and self.plan('remove %s' % self.root.join(relative)):
            root_dir.remove_file(relative)

    # --- waiting and the result ----------------------------------------------------------
    def wait(self):
        params = self.params
        if self.module.check_mode or params['state'] not in ('running', 'restarted') or params['wait_for'] == 'none':
            return
        if params['wait_for'] == 'agent':
            if not self.options['agent']:
                self.module.fail('wait_for=agent needs agent=true', error_kind='wait_for')
            self.module.helper_or_fail.guest_wait_agent(name=self.name, timeout=params['wait_timeout'])
            return
        forwards = [f for f in _network.forwarded_ports(self.domain['xml']) if f['guest'] == 22]
        if not forwards:
            self.module.fail('wait_for=ssh needs network type user with a port forward to guest port 22',
                             error_kind='wait_for')
        wait_for_ssh(self.module, forwards[0], params['wait_timeout'])

    def result(self):
        result = dict(changed=self.changed, actions=self.actions, domain=self.domain, pending_restart=self.pending,
                      disk=self.disk, seed=self.seed, console_log=self.console)
        if self.domain is not None:
            result['xml'] = self.domain['xml']
            result['forwarded_ports'] = _network.forwarded_ports(self.domain['xml'])
            result['interfaces'] = self.interfaces()
        if self.backend[1]:
            result['network_backend'] = dict(name=self.backend[0], reason=self.backend[1])
        if self.diff and self.module.diff_mode:
            result['diff'] = self.diff
        return result

    def interfaces(self):
        """What the guest agent says of the guest's interfaces, when it answers."""
        if (self.module.check_mode or not self.options['agent'] or self.domain['state'] != 'running'
                or self.params['wait_for'] != 'agent'):
            return []
        return self.module.helper_or_fail.domain_interfaces(name=self.name)


def wait_for_ssh(module, forward, timeout):
    """Until an SSH server answers with its banner through the forward, or fail at timeout."""
    deadline = time.time() + timeout
    address = (forward['address'] or '127.0.0.1', forward['host'])
    while True:
        try:
            with socket.create_connection(address, timeout=SSH_BANNER_SECONDS) as sock:
                if sock.recv(4).startswith(b'SSH-'):
                    return
        except OSError:
            pass
        if time.time() >= deadline:
            module.fail('no SSH server answered on %s:%d within %d s: see the console log, raise wait_timeout, or '
                        'check that the image runs sshd' % (address[0], address[1], timeout), error_kind='timeout')
        time.sleep(1)


def images_built_on(root_dir, relative):
    """The files directly in images/ (other instances' disks, templates) whose qcow2 backing
    file is relative, a file below the root: removing it would break them. A regular file
    whose header cannot be read counts too (what it is built on is unknown); links and
    directories are no disks of this collection. Reads headers only, through checked
    directories, never through a link."""
    target = os.path.join(root_dir.path, relative)
    images_fd = root_dir.subdir(IMAGES)
    try:
        names = sorted(name for name in os.listdir(images_fd)
                       if stat.S_ISREG(os.stat(name, dir_fd=images_fd, follow_symlinks=False).st_mode))
    finally:
        os.close(images_fd)
    built_on = []
    for name in names:
        image = os.path.join(IMAGES, name)
        try:
            fd = root_dir.open_file(image)
        except (OSError, RootError) as e:
            built_on.append('%s (which could not be read: %s)' % (image, e))
            continue
        try:
            header = qcow2_header(lambda offset, length: os.pread(fd, length, offset))
        finally:
            os.close(fd)
        backing = header and header['backing']
        if backing and os.path.normpath(os.path.join(root_dir.path, IMAGES, backing)) == target:
            built_on.append(image)
    return built_on
