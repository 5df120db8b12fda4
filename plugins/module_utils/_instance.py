# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""A guest from a cloud image in one task: the base image cached under the root, a qcow2
overlay on it (images/<name>.qcow2), a NoCloud seed (images/<name>-cidata.img), the domain
XML built here, and the domain brought to its state by the domain module's manager."""

import os
import socket
import time
from xml.etree import ElementTree

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _cloud_init, _network
from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import Manager, ModuleView
from ansible_collections.embedvirt.libvirt.plugins.module_utils._domain import DomainManager
from ansible_collections.embedvirt.libvirt.plugins.module_utils._images import BaseImage, ImageError, is_url, parse_checksum
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import ACTIVE_STATES
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import (
    BASE_IMAGES, CONSOLE_DIR, IMAGES, NVRAM_DIR, domain_name_problem)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._volume import VolumeManager

# What the module's state means for the domain.
DOMAIN_STATES = {'running': 'running', 'shutdown': 'shutdown', 'destroyed': 'destroyed', 'undefined': 'undefined'}
AGENT_CHANNEL = 'org.qemu.guest_agent.0'
SSH_BANNER_SECONDS = 5


def accelerator(wanted):
    """libvirt's domain type: kvm when asked, or with auto when /dev/kvm is usable; else qemu (TCG)."""
    if wanted == 'auto':
        return 'kvm' if os.access('/dev/kvm', os.R_OK | os.W_OK) else 'qemu'
    return 'kvm' if wanted == 'kvm' else 'qemu'


def domain_xml(params, disk, seed, console, network):
    """The domain definition of an instance: its disk over the base image, the seed, the
    network of _network.interface_xml, the guest agent channel, a serial console to a file,
    and the devices given in extra_devices as they are."""
    virt = accelerator(params['accelerator'])
    dom = ElementTree.Element('domain', type=virt)
    ElementTree.SubElement(dom, 'name').text = params['name']
    ElementTree.SubElement(dom, 'memory', unit='MiB').text = str(params['memory'])
    ElementTree.SubElement(dom, 'vcpu').text = str(params['vcpus'])
    os_el = ElementTree.SubElement(dom, 'os')
    if params['firmware'] == 'uefi':
        os_el.set('firmware', 'efi')
        firmware = ElementTree.SubElement(os_el, 'firmware')
        # Secure boot needs SMM, slow under TCG and not what a cloud image needs.
        ElementTree.SubElement(firmware, 'feature', enabled='no', name='secure-boot')
    ElementTree.SubElement(os_el, 'type', arch='x86_64', machine='q35').text = 'hvm'
    ElementTree.SubElement(os_el, 'boot', dev='hd')
    features = ElementTree.SubElement(dom, 'features')
    ElementTree.SubElement(features, 'acpi')
    ElementTree.SubElement(features, 'apic')
    if virt == 'kvm':
        ElementTree.SubElement(dom, 'cpu', mode='host-passthrough')
    devices = ElementTree.SubElement(dom, 'devices')
    for path, target, kind in ((disk, 'vda', 'qcow2'), (seed, 'vdb', 'raw')):
        el = ElementTree.SubElement(devices, 'disk', type='file', device='disk')
        ElementTree.SubElement(el, 'driver', name='qemu', type=kind)
        ElementTree.SubElement(el, 'source', file=path)
        ElementTree.SubElement(el, 'target', dev=target, bus='virtio')
        if target == 'vdb':
            ElementTree.SubElement(el, 'readonly')
    interface, qemu_args = network
    if interface:
        devices.append(ElementTree.fromstring(interface))
    if params['agent']:
        channel = ElementTree.SubElement(devices, 'channel', type='unix')
        ElementTree.SubElement(channel, 'target', type='virtio', name=AGENT_CHANNEL)
    serial = ElementTree.SubElement(devices, 'serial', type='file')
    ElementTree.SubElement(serial, 'source', path=console, append='on')
    ElementTree.SubElement(serial, 'target', port='0')
    rng = ElementTree.SubElement(devices, 'rng', model='virtio')
    ElementTree.SubElement(rng, 'backend', model='random').text = '/dev/urandom'
    for fragment in params['extra_devices'] or ():
        devices.append(ElementTree.fromstring(fragment))
    if qemu_args:
        ElementTree.register_namespace('qemu', _network.QEMU_NAMESPACE)
        commandline = ElementTree.SubElement(dom, '{%s}commandline' % _network.QEMU_NAMESPACE)
        for arg in qemu_args:
            ElementTree.SubElement(commandline, '{%s}arg' % _network.QEMU_NAMESPACE, value=arg)
    return ElementTree.tostring(dom, encoding='unicode')


class InstanceManager(Manager):
    """Base image, disk, seed, domain: each made or brought up to date in that order."""

    def __init__(self, module):
        super().__init__(module)
        self.root = module.client.root
        self.name = self.params['name']
        self.disk = self.root.join(os.path.join(IMAGES, self.name + '.qcow2'))
        self.seed = self.root.join(os.path.join(IMAGES, self.name + '-cidata.img'))
        self.console = self.root.join(os.path.join(CONSOLE_DIR, self.name + '.log'))
        self.domain = None
        self.diff = None
        self.network = self.files = self.seed_bytes = None

    def run(self):
        problem = domain_name_problem(self.name, self.root.path)
        if problem:
            self.module.fail('%s. Fix: %s' % problem, error_kind='name')
        # First: a module run creates a missing root (with its qemu.conf) on its first call.
        current = self.module.helper.domain_get(name=self.name)
        if self.params['state'] == 'undefined':
            self.ensure_undefined(current)
            return self.result()
        self.check_inputs(current)
        if self.module.root_missing:
            # Check mode on a root a real run would create: everything would be made.
            self.act('%s %s' % ('download' if is_url(self.params['image']) else 'copy', self.params['image']))
            self.act('create %s' % self.disk)
            self.act('write seed %s' % self.seed)
        else:
            with self.module.guard(self.root.open) as root_dir:
                base = self.ensure_base(root_dir)
                self.ensure_disk(base)
                self.ensure_seed(root_dir)
                os.close(root_dir.subdir(CONSOLE_DIR, create=True))
        self.ensure_domain()
        self.wait()
        return self.result()

    # --- inputs --------------------------------------------------------------------------
    def check_inputs(self, current):
        """Everything that can be wrong with the task, found before anything changes."""
        params = self.params
        if not params['image']:
            self.module.fail('image is required unless state=undefined: give a local path or an http(s) URL '
                             'of a cloud image', error_kind='image')
        if is_url(params['image']) and not params['checksum'] and not params['allow_unverified']:
            self.module.fail("image '%s' is a URL without checksum: give checksum (such as sha256:<hex>, from "
                             "the image's SHA256SUMS) so a damaged or replaced download is refused, or set "
                             "allow_unverified=true" % params['image'], error_kind='checksum')
        try:
            parse_checksum(params['checksum'])
        except ImageError as e:
            self.module.fail(str(e), error_kind=e.kind)
        for option in ('memory', 'vcpus'):
            if params[option] < 1:
                self.module.fail('%s is %d: give at least 1' % (option, params[option]), error_kind=option)
        try:
            self.network = _network.interface_xml(params['network'], self.name)
            self.files = _cloud_init.render(params['cloud_init'] or {}, self.name)
            self.seed_bytes = _cloud_init.fat_image(self.files)
        except ValueError as e:
            self.module.fail(str(e), error_kind='value')
        if params['state'] == 'running' and (current is None or current['state'] not in ACTIVE_STATES):
            try:
                _network.check_ports_free((params['network'] or {}).get('port_forwards') or [])
            except ValueError as e:
                self.module.fail(str(e), error_kind='port')

    # --- base image, disk, seed --------------------------------------------------------
    def ensure_base(self, root_dir):
        params = self.params
        try:
            base = BaseImage(root_dir, params['image'], params['checksum'], params['download_timeout'])
            if not base.present():
                if self.act('download %s' % params['image'] if is_url(params['image']) else 'copy %s' % params['image']):
                    os.close(root_dir.subdir(BASE_IMAGES, create=True))
                    base.fetch()
        except ImageError as e:
            self.module.fail(str(e), error_kind=e.kind)
        return base

    def ensure_disk(self, base):
        """images/<name>.qcow2 over the base image (a relative backing name), at least disk_size."""
        params = dict(path=os.path.basename(self.disk), state='present', format='qcow2', size=self.params['disk_size'],
                      backing_file=os.path.relpath(base.path, os.path.dirname(self.disk)), backing_format=None,
                      encryption_passphrase=None, allow_outside_root=False)
        if self.module.check_mode and not base.present():
            self.act('create %s' % self.disk)
            return
        volume = VolumeManager(ModuleView(self.module, params))
        outcome = volume.run()
        self.changed |= outcome['changed']
        self.actions.extend('%s %s' % (action, self.disk) for action in outcome['actions'])

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
        if self.act('write seed %s' % self.seed):
            root_dir.write_file(relative, self.seed_bytes, mode=0o600)

    # --- the domain --------------------------------------------------------------------
    def ensure_domain(self):
        params = self.params
        xml = domain_xml(params, self.disk, self.seed, self.console, self.network)
        self.run_domain_manager(dict(name=self.name, xml=xml, state=DOMAIN_STATES[params['state']],
                                     autostart=params['autostart'], shutdown_timeout=params['shutdown_timeout'],
                                     force=params['force']))

    def run_domain_manager(self, params):
        """The domain module's manager, with params, as a step of this task."""
        outcome = DomainManager(ModuleView(self.module, params)).run()
        self.changed |= outcome['changed']
        self.actions.extend(outcome['actions'])
        self.domain = outcome['domain']
        self.diff = outcome.get('diff')

    def ensure_undefined(self, current):
        if current is not None:
            self.run_domain_manager(dict(name=self.name, xml=None, state='undefined', autostart=None,
                                         shutdown_timeout=self.params['shutdown_timeout'], force=True))
        if self.module.root_missing:
            return
        with self.module.guard(self.root.open) as root_dir:
            for path in (self.disk, self.seed) + tuple(self.nvram(current)):
                self.remove_file(root_dir, os.path.relpath(path, self.root.path))
            if self.params['remove_image'] and self.params['image']:
                base = BaseImage(root_dir, self.params['image'], self.params['checksum'], 0)
                if base.present() and self.act('remove %s' % base.path):
                    base.remove()

    def nvram(self, domain):
        """The NVRAM file libvirt made for the domain under the root, if any: the one its XML
        names, or, for firmware libvirt chose (the stored XML names none until a start), where
        libvirt puts it."""
        if not domain:
            return []
        os_el = ElementTree.fromstring(domain['xml']).find('os')
        path = os_el.findtext('nvram') if os_el is not None else None
        if not path and os_el is not None and os_el.get('firmware') == 'efi':
            path = self.root.join(os.path.join(NVRAM_DIR, self.name + '_VARS.fd'))
        return [path] if path and path.startswith(self.root.path + '/') else []

    def remove_file(self, root_dir, relative):
        if root_dir.lexists(relative) and self.act('remove %s' % self.root.join(relative)):
            root_dir.remove_file(relative)

    # --- waiting and the result ----------------------------------------------------------
    def wait(self):
        params = self.params
        if self.module.check_mode or params['state'] != 'running' or params['wait_for'] == 'none':
            return
        if params['wait_for'] == 'agent':
            if not params['agent']:
                self.module.fail('wait_for=agent needs agent=true', error_kind='wait_for')
            self.module.helper.guest_wait_agent(name=self.name, timeout=params['wait_timeout'])
            return
        forwards = [f for f in _network.forwarded_ports(self.domain['xml']) if f['guest'] == 22]
        if not forwards:
            self.module.fail('wait_for=ssh needs network type user with a port forward to guest port 22',
                             error_kind='wait_for')
        wait_for_ssh(self.module, forwards[0], params['wait_timeout'])

    def result(self):
        result = dict(changed=self.changed, actions=self.actions, domain=self.domain,
                      disk=self.disk, seed=self.seed, console_log=self.console)
        if self.domain is not None:
            result['xml'] = self.domain['xml']
            result['forwarded_ports'] = _network.forwarded_ports(self.domain['xml'])
            result['interfaces'] = self.interfaces()
        if self.diff and self.module.diff_mode:
            result['diff'] = self.diff
        return result

    def interfaces(self):
        """What the guest agent says of the guest's interfaces, when it answers."""
        if (self.module.check_mode or not self.params['agent'] or self.domain['state'] != 'running'
                or self.params['wait_for'] != 'agent'):
            return []
        return self.module.helper.domain_interfaces(name=self.name)


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
