# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""The helper's snapshot operations (snapshot_* in _protocol.Operations): internal qcow2
snapshots, with or without the running guest's memory.

libvirt 9.0 takes an internal snapshot of a running guest only with its memory, and cannot
revert or delete the external kind. A disk-only snapshot of a running guest is therefore made
here: QEMU's blockdev-snapshot-internal-sync on every snapshotted disk in one transaction
(inside the guest agent's fsfreeze when quiesced), then recorded in libvirt as a snapshot of a
shut-off guest, which libvirt reverts by restarting the guest on the reverted disks.
"""

import json
import logging
import time
from xml.etree import ElementTree

from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.drivers import DriverUser
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.errors import HelperError, parse_xml
from ansible_collections.embedvirt.libvirt.plugins.module_utils._rules import REVERT, SNAPSHOT, creation_problem, name_problem

log = logging.getLogger('embedvirt.helper')

# Disks a snapshot leaves out: what the guest cannot write.
UNWRITTEN_DEVICES = ('cdrom', 'floppy')


class Snapshots(DriverUser):
    """The snapshots of the root's domains."""

    def __init__(self, drivers, domains):
        super().__init__(drivers)
        self.domains = domains

    def snapshot_list(self, name):
        dom = self.domains.domain_required(name)
        found = [describe(snap.getXMLDesc(0), bool(snap.isCurrent())) for snap in dom.listAllSnapshots(0)]
        # Parents are older than their children; a name breaks ties within one second.
        return sorted(found, key=lambda s: (s['creation_time'], s['name']))

    def snapshot_required(self, dom, snapshot, deleting=False):
        """The snapshot called so, once the name means that one snapshot to QEMU too (see name_problem)."""
        problem = name_problem(snapshot, deleting)
        if problem:
            raise HelperError(*problem)
        try:
            return dom.snapshotLookupByName(snapshot, 0)
        except self.libvirt.libvirtError as e:
            if e.get_error_code() == self.libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                raise HelperError('no_snapshot', "domain '%s' has no snapshot '%s'" % (dom.name(), snapshot),
                                  'list its snapshots with embedvirt.libvirt.domain_info snapshots=true')
            raise

    def snapshot_create(self, name, snapshot, description, memory, quiesce, timeout):
        dom = self.domains.domain_required(name)
        running = bool(dom.isActive())
        if memory is None:
            memory = running
        live = dom.XMLDesc(0)
        problem = creation_problem(name, snapshot, running, memory, quiesce, live)
        if problem:
            raise HelperError(*problem)
        self.domains.refuse_clone_source(name, SNAPSHOT)
        if snapshot in dom.snapshotListNames(0):
            raise HelperError('exists', "domain '%s' already has a snapshot '%s'" % (name, snapshot),
                              'give another name, or delete it first (state=absent)')
        disks = snapshot_disks(name, live)
        xml = snapshot_xml(snapshot, description, memory, disks)
        if memory or not running:
            dom.snapshotCreateXML(xml, 0)
        else:
            self.create_disk_snapshot_of_running(dom, snapshot, xml, disks, quiesce, timeout)
        return describe(self.snapshot_required(dom, snapshot).getXMLDesc(0), True)

    def create_disk_snapshot_of_running(self, dom, snapshot, xml, disks, quiesce, timeout):
        """A disk-only internal snapshot of a running guest: QEMU makes it, libvirt records it."""
        nodes = [node for node in disks.values() if node is not None]
        if not nodes or '' in nodes:
            raise HelperError('disk_format', "domain '%s' has no disk QEMU can snapshot by itself" % dom.name(),
                              'take a snapshot with memory (memory=true), or shut the guest down first')
        actions = [{'type': 'blockdev-snapshot-internal-sync', 'data': {'device': node, 'name': snapshot}}
                   for node in nodes]
        self.freeze(dom, quiesce, timeout)
        try:
            self.monitor(dom, 'transaction', {'actions': actions})
        finally:
            if quiesce:
                dom.fsThaw()
        tree = ElementTree.fromstring(xml)
        ElementTree.SubElement(tree, 'state').text = 'shutoff'
        ElementTree.SubElement(tree, 'creationTime').text = str(int(time.time()))
        current = current_snapshot(dom, self.libvirt)
        if current:
            ElementTree.SubElement(ElementTree.SubElement(tree, 'parent'), 'name').text = current
        flags = self.libvirt.VIR_DOMAIN_XML_INACTIVE | self.libvirt.VIR_DOMAIN_XML_SECURE
        tree.append(ElementTree.fromstring(dom.XMLDesc(flags)))
        try:
            dom.snapshotCreateXML(ElementTree.tostring(tree, encoding='unicode'),
                                  self.libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
                                  | self.libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT)
        except self.libvirt.libvirtError:
            # Leave no snapshot libvirt does not know of inside the disks.
            for node in nodes:
                try:
                    self.monitor(dom, 'blockdev-snapshot-delete-internal-sync', {'device': node, 'name': snapshot})
                except (self.libvirt.libvirtError, HelperError) as e:
                    log.warning('cannot remove the unrecorded snapshot %s of %s: %s', snapshot, node, e)
            raise

    def freeze(self, dom, quiesce, timeout):
        if not quiesce:
            return
        dom.agentSetResponseTimeout(int(timeout))
        try:
            dom.fsFreeze()
        except self.libvirt.libvirtError as e:
            raise HelperError('quiesce', "the guest agent of domain '%s' could not freeze its filesystems: %s"
                              % (dom.name(), e),
                              'run qemu-guest-agent in the guest with a virtio channel '
                              'org.qemu.guest_agent.0, or set quiesce=false')
        finally:
            dom.agentSetResponseTimeout(self.libvirt.VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT)

    def monitor(self, dom, command, arguments):
        reply = json.loads(self.drivers.libvirt_qemu.qemuMonitorCommand(
            dom, json.dumps({'execute': command, 'arguments': arguments}), 0))
        if 'error' in reply:
            log.error('QEMU refused %s on domain %s: %s', command, dom.name(), json.dumps(reply))
            raise HelperError('snapshot', "QEMU refused %s on domain '%s': %s"
                              % (command, dom.name(), reply['error'].get('desc')),
                              'take the snapshot with the guest shut off, or with memory=true; QEMU\'s whole reply '
                              'is in the helper log %s' % self.root.log_path)
        return reply.get('return')

    def snapshot_revert(self, name, snapshot):
        dom = self.domains.domain_required(name)
        snap = self.snapshot_required(dom, snapshot)
        self.domains.refuse_clone_source(name, REVERT)
        flags = 0
        if dom.isActive() and not describe(snap.getXMLDesc(0), False)['memory']:
            flags = self.libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING  # a disk snapshot: restart it
        dom.revertToSnapshot(snap, flags)
        return self.domains.domain_detail(dom)

    def snapshot_delete(self, name, snapshot):
        dom = self.domains.domain_required(name)
        self.snapshot_required(dom, snapshot, deleting=True).delete(0)


def snapshot_disks(name, xml):
    """{target: QEMU's format node ('' while shut off), or None for a disk left out} of the
    domain name, from its live definition xml; refused when a writable disk cannot hold an
    internal snapshot."""
    disks = {}
    for disk in parse_xml(xml, 'domain').iter('disk'):
        target = disk.find('target').get('dev')
        if disk.get('device') in UNWRITTEN_DEVICES or disk.find('readonly') is not None:
            disks[target] = None
            continue
        driver = disk.find('driver')
        kind = driver.get('type') if driver is not None else None
        source = disk.find('source')
        where = (source.get('file') or source.get('dev') or '?') if source is not None else '?'
        if kind != 'qcow2':
            raise HelperError(
                'disk_format', "disk %s (%s) of domain '%s' is %s: snapshots live inside qcow2 files, and libvirt "
                "9.0 can neither revert nor delete the external snapshots a %s disk would need"
                % (target, where, name, kind or 'of no given format', kind or 'raw'),
                'put the disk on qcow2: a qcow2 overlay over it (embedvirt.libvirt.volume with backing_file) '
                'or a converted copy (qemu-img convert -O qcow2), in the domain XML instead of it')
        index = source.get('index') if source is not None else None
        disks[target] = 'libvirt-%s-format' % index if index else ''
    return disks


def snapshot_xml(snapshot, description, memory, disks):
    tree = ElementTree.Element('domainsnapshot')
    ElementTree.SubElement(tree, 'name').text = snapshot
    if description:
        ElementTree.SubElement(tree, 'description').text = description
    ElementTree.SubElement(tree, 'memory', snapshot='internal' if memory else 'no')
    disks_el = ElementTree.SubElement(tree, 'disks')
    for target, node in disks.items():
        ElementTree.SubElement(disks_el, 'disk', name=target, snapshot='no' if node is None else 'internal')
    return ElementTree.tostring(tree, encoding='unicode')


def current_snapshot(dom, libvirt):
    try:
        return dom.snapshotCurrent(0).getName()
    except libvirt.libvirtError:
        return None


def describe(xml, current):
    """What a user sees of a snapshot."""
    tree = ElementTree.fromstring(xml)
    memory = tree.find('memory')
    return {
        'name': tree.findtext('name'),
        'description': tree.findtext('description'),
        'creation_time': int(tree.findtext('creationTime') or 0),
        'parent': tree.findtext('parent/name'),
        'state': tree.findtext('state'),
        'memory': memory is not None and memory.get('snapshot') not in ('no', None),
        'current': current,
    }
