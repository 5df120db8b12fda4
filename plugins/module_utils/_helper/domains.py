# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""The helper's domain operations (domain_* in _protocol.Operations), on the embedded QEMU
driver, and the clean-up of what a killed helper left behind."""

import errno
import logging
import os
import threading
import time
import uuid
from xml.etree import ElementTree

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _root
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.drivers import DriverUser
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.errors import (
    HelperError, hint_for_libvirt_error, parse_xml)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import (
    CLONE_ELEMENT, CLONE_NAMESPACE, DOMAIN_STATES, INSTANCE_NAMESPACE)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._rules import (
    AUTOSTART, START, clone_source_problem, tpm_problem)

log = logging.getLogger('embedvirt.helper')
# The prefixes an instance's metadata keeps when a definition is written out again here.
ElementTree.register_namespace('embedvirt', CLONE_NAMESPACE)
ElementTree.register_namespace('embedvirt-instance', INSTANCE_NAMESPACE)


class Domains(DriverUser):
    """The domains of the root."""

    def __init__(self, drivers, events, confinement):
        super().__init__(drivers)
        self.events = events  # the root's domain events (_helper.events), which waits listen to
        self.confinement = confinement  # whether QEMU has an account of its own (_helper.confine)
        # One scratch definition at a time (see normalize_definition).
        self.probe_lock = threading.Lock()

    def domain_summary(self, dom):
        """A domain's name, uuid, id, state, persistence and autostart."""
        state, reason = dom.state()
        persistent = bool(dom.isPersistent())
        return {
            'name': dom.name(),
            'uuid': dom.UUIDString(),
            'id': dom.ID() if dom.ID() >= 0 else None,
            'state': DOMAIN_STATES[state] if state < len(DOMAIN_STATES) else str(state),
            'state_reason': reason,
            'persistent': persistent,
            'autostart': bool(dom.autostart()) if persistent else False,
        }

    def domain_list(self, names, states):
        unknown = sorted(set(states or ()) - set(DOMAIN_STATES))
        if unknown:
            # A misspelt state would otherwise filter out every domain without a word.
            raise HelperError('states', 'unknown domain state(s) %s' % ', '.join(repr(s) for s in unknown),
                              'use states among %s' % ', '.join(DOMAIN_STATES))
        result = []
        for dom in self.domains():
            summary = self.domain_summary(dom)
            if names and summary['name'] not in names:
                continue
            if states and summary['state'] not in states:
                continue
            result.append(summary)
        return sorted(result, key=lambda d: d['name'])

    def domains(self):
        """Every domain but the probes of normalize_definition (see clean_leftovers)."""
        return [dom for dom in self.qemu.listAllDomains(0) if not dom.name().startswith(_root.PROBE_PREFIX)]

    def clean_leftovers(self):
        """Remove what a helper killed in the middle of a request left in the root.

        A probe domain: killed between normalize_definition's define and undefine.
        A <file>.new under etc/qemu or etc/secrets: libvirt's virFileRewrite writes a
        definition (or a secret's value) to <file>.new and renames it over <file>.
        Nobody asked for either (libvirt ignores *.new files), so what cannot be removed is
        logged and the helper starts all the same.
        """
        flags = self.libvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE | self.libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT
        for dom in self.qemu.listAllDomains(flags):
            if dom.name().startswith(_root.PROBE_PREFIX):
                try:
                    dom.undefineFlags(self.keep_files())
                    log.warning('removed the scratch domain %s, left by a helper that died', dom.name())
                except self.libvirt.libvirtError as e:
                    log.warning('cannot remove the scratch domain %s: %s', dom.name(), e)
        for directory in _root.DEFINITION_DIRS:
            try:
                fd = os.open(self.root.join(directory), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    log.warning('not looking for half-written files in %s: %s', directory, e)
                continue
            try:
                for name in os.listdir(fd):
                    if not name.endswith('.new'):
                        continue
                    try:
                        os.unlink(name, dir_fd=fd)  # a link goes, never what it points to
                        log.warning('removed %s/%s/%s, left half-written by a helper that died',
                                    self.root.path, directory, name)
                    except OSError as e:
                        log.warning('cannot remove %s/%s/%s: %s', self.root.path, directory, name, e)
            finally:
                os.close(fd)

    def check_name(self, name, budget=False):
        """Refuse a domain name libvirt would misuse; with budget, also one too long in bytes
        for this root's socket paths (only a define or create makes sockets)."""
        problem = _root.domain_name_problem(name, self.root.path if budget else None)
        if problem:
            raise HelperError('name', *problem)

    def parse_definition(self, xml):
        """A domain definition's tree and <name> element, once the name passes check_name."""
        tree = parse_xml(xml, 'domain')
        name_el = tree.find('name')
        if name_el is None or not (name_el.text or '').strip():
            raise HelperError('xml', 'the domain XML has no <name>', 'add <name>...</name>')
        self.check_name(name_el.text, budget=True)  # libvirt takes the text as it is, spaces and all
        return tree, name_el

    def find(self, name):
        """The domain called name, or None."""
        self.check_name(name)
        try:
            return self.qemu.lookupByName(name)
        except self.libvirt.libvirtError as e:
            if e.get_error_code() == self.libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def domain_required(self, name):
        dom = self.find(name)
        if dom is None:
            raise HelperError('no_domain', "domain '%s' is not defined in root %s" % (name, self.root.path),
                              'give xml to define it, or check the name with embedvirt.libvirt.domain_info')
        return dom

    def domain_detail(self, dom):
        detail = self.domain_summary(dom)
        flags = self.libvirt.VIR_DOMAIN_XML_INACTIVE if detail['persistent'] else 0
        detail['xml'] = dom.XMLDesc(flags)
        return detail

    def domain_get(self, name):
        dom = self.find(name)
        return self.domain_detail(dom) if dom is not None else None

    def domain_plan(self, name, xml):
        """What a domain is now, and libvirt's own form of the definition asked for."""
        dom = self.find(name)
        plan = {'current': self.domain_detail(dom) if dom is not None else None,
                'wanted_xml': None, 'define_xml': None}
        if xml:
            plan['define_xml'], plan['wanted_xml'] = self.normalize_definition(xml, dom)
        return plan

    def normalize_definition(self, xml, existing=None):
        """The definition to give libvirt, and libvirt's stored form of it, without keeping it.

        The first is the XML given plus what redefining must keep from an existing domain
        (uuid, MACs of interfaces that name none). The second comes from defining that under a
        scratch name and uuid, reading it back and undefining it, so check mode and idempotence
        compare what libvirt would store (its defaults, attribute order and whitespace).
        """
        tree, name_el = self.parse_definition(xml)
        real_name = name_el.text.strip()
        uuid_el = tree.find('uuid')
        if existing is not None:
            # What libvirt would keep from the existing definition when redefining it.
            if uuid_el is None:
                uuid_el = ElementTree.SubElement(tree, 'uuid')
                uuid_el.text = existing.UUIDString()
            inherit_macs(tree, parse_xml(existing.XMLDesc(self.libvirt.VIR_DOMAIN_XML_INACTIVE), 'domain'))
        real_uuid = None
        if uuid_el is not None:
            try:
                real_uuid = str(uuid.UUID((uuid_el.text or '').strip()))
            except ValueError:
                raise HelperError('xml', 'the domain XML has an invalid <uuid>: %r' % uuid_el.text,
                                  'give a UUID such as %s, or leave <uuid> out' % uuid.uuid4())
        define_xml = ElementTree.tostring(tree, encoding='unicode')
        if uuid_el is None:
            uuid_el = ElementTree.SubElement(tree, 'uuid')
        probe_name = _root.PROBE_PREFIX + uuid.uuid4().hex[:12]
        probe_uuid = str(uuid.uuid4())
        name_el.text = probe_name
        uuid_el.text = probe_uuid
        with self.probe_lock:
            try:
                probe = self.qemu.defineXML(ElementTree.tostring(tree, encoding='unicode'))
            except self.libvirt.libvirtError as e:
                # libvirt's message may name the scratch domain, which the user never asked for.
                raise HelperError('libvirt', "libvirt refused the definition of '%s' (tried under the "
                                  "scratch name %s): %s" % (real_name, probe_name, e),
                                  hint_for_libvirt_error(str(e)))
            try:
                stored = probe.XMLDesc(self.libvirt.VIR_DOMAIN_XML_INACTIVE)
            finally:
                probe.undefineFlags(self.keep_files())
        stored = stored.replace(probe_name, xml_escape(real_name))
        if real_uuid:
            return define_xml, stored.replace(probe_uuid, real_uuid)
        return define_xml, stored.replace('  <uuid>%s</uuid>\n' % probe_uuid, '')

    def domain_define(self, xml):
        tree = self.parse_definition(xml)[0]
        self.refuse_running_source(tree)
        self.refuse_tpm(tree)
        return self.domain_detail(self.qemu.defineXML(xml))

    def domain_create(self, xml, paused):
        tree, name_el = self.parse_definition(xml)
        self.refuse_clone_source(name_el.text, START)
        self.refuse_running_source(tree)
        self.refuse_tpm(tree)
        flags = self.libvirt.VIR_DOMAIN_START_PAUSED if paused else 0
        return self.domain_detail(self.qemu.createXML(xml, flags))

    def domain_start(self, name, paused):
        self.refuse_clone_source(name, START)
        dom = self.domain_required(name)
        # Also a guest defined before QEMU got an account of its own, or restored.
        self.refuse_tpm(ElementTree.fromstring(dom.XMLDesc(self.libvirt.VIR_DOMAIN_XML_INACTIVE)))
        dom.createWithFlags(self.libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)
        return self.domain_detail(dom)

    def domain_resume(self, name):
        dom = self.domain_required(name)
        dom.resume()
        return self.domain_detail(dom)

    def domain_suspend(self, name):
        dom = self.domain_required(name)
        dom.suspend()
        return self.domain_detail(dom)

    def domain_destroy(self, name):
        self.destroy(self.domain_required(name))
        return self.domain_get(name)  # a transient domain is gone now

    def destroy(self, dom):
        """Power a guest off at once. One that went off meanwhile is off as asked: libvirt kills
        QEMU before it waits for the domain's job, so a destroy while a new helper reconnects
        to the guest (or while the guest powers itself off) finds it no longer running, or, a
        transient guest that the failed reconnect removed, no longer there."""
        try:
            dom.destroy()
        except self.libvirt.libvirtError as e:
            now = self.find(dom.name())  # None: a transient guest, gone with its QEMU
            went_off = (self.libvirt.VIR_ERR_OPERATION_INVALID, self.libvirt.VIR_ERR_NO_DOMAIN)
            if e.get_error_code() not in went_off or now is not None and now.isActive():
                raise

    def domain_shutdown(self, name, timeout, force):
        """Power a guest off gracefully, waiting up to timeout seconds, then (with force)
        at once; the steps taken, whether it is off, and the domain after."""
        dom = self.domain_required(name)
        steps = []
        if dom.state()[0] == self.libvirt.VIR_DOMAIN_PAUSED:
            # A paused guest cannot see the power button (libvirt refuses the request).
            dom.resume()
            steps.append('resume')
        deadline = time.time() + timeout
        # Woken by the event that it stopped; the state is read again at least every second.
        with self.events.watch(name, ('stopped', 'undefined')) as stopped:
            dom.shutdown()
            steps.append('shutdown')
            while True:
                current = self.domain_get(name)
                if current is None or current['state'] == 'shutoff':
                    return {'done': True, 'steps': steps, 'domain': current}
                if time.time() >= deadline:
                    break
                stopped.wait(min(1, deadline - time.time()))
        if not force:
            return {'done': False, 'steps': steps, 'domain': current}
        self.destroy(dom)
        steps.append('destroy')
        return {'done': True, 'steps': steps, 'domain': self.domain_get(name)}

    def domain_live_xml(self, name):
        dom = self.domain_required(name)
        return dom.XMLDesc(0) if dom.isActive() else None

    def domain_set_live_record(self, name, text):
        dom = self.domain_required(name)
        element = ElementTree.Element('instance')
        element.text = text
        dom.setMetadata(self.libvirt.VIR_DOMAIN_METADATA_ELEMENT, ElementTree.tostring(element, encoding='unicode'),
                        'embedvirt-instance', INSTANCE_NAMESPACE, self.libvirt.VIR_DOMAIN_AFFECT_LIVE)
        return self.domain_detail(dom)

    def domain_set_memory(self, name, kib):
        dom = self.domain_required(name)
        dom.setMemoryFlags(kib, self.libvirt.VIR_DOMAIN_AFFECT_LIVE)
        return self.domain_detail(dom)

    def domain_set_vcpus(self, name, count):
        dom = self.domain_required(name)
        dom.setVcpusFlags(count, self.libvirt.VIR_DOMAIN_AFFECT_LIVE)
        return self.domain_detail(dom)

    def domain_attach(self, name, xml):
        dom = self.domain_required(name)
        dom.attachDeviceFlags(xml, self.libvirt.VIR_DOMAIN_AFFECT_LIVE)
        return self.domain_detail(dom)

    def domain_detach(self, name, xml):
        dom = self.domain_required(name)
        device = parse_xml(xml, 'interface' if xml.lstrip().startswith('<interface') else 'disk')
        tag, key = DETACHED_BY[device.tag]
        found = device.find(tag)
        wanted = found.get(key) if found is not None else None
        if not wanted:
            raise HelperError('xml', 'the %s to detach names no %s' % (device.tag, tag),
                              'give <%s %s="..."/>' % (tag, key))
        dom.detachDeviceFlags(xml, self.libvirt.VIR_DOMAIN_AFFECT_LIVE)
        # libvirt returns once the guest let go, or after its own few seconds' wait.
        live = parse_xml(dom.XMLDesc(0), 'domain')
        gone = all((found.get(key) or '').lower() != wanted.lower()
                   for found in live.iterfind('devices/%s/%s' % (device.tag, tag)))
        return {'gone': gone, 'domain': self.domain_detail(dom)}

    def domain_block_resize(self, name, disk, size):
        dom = self.domain_required(name)
        dom.blockResize(disk, size, self.libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
        return self.domain_detail(dom)

    def keep_files(self, remove_tpm=False):
        """undefineFlags that keep a domain's NVRAM and (unless remove_tpm) its TPM state: the
        guest's data, where libvirt's default would delete the TPM's."""
        tpm = self.libvirt.VIR_DOMAIN_UNDEFINE_TPM if remove_tpm else self.libvirt.VIR_DOMAIN_UNDEFINE_KEEP_TPM
        return self.libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | tpm

    def domain_undefine(self, name, remove_snapshots, remove_tpm=False):
        dom = self.domain_required(name)
        snapshots = dom.snapshotListNames(0)
        if snapshots and not remove_snapshots:
            raise HelperError('snapshots', "domain '%s' has snapshots (%s): libvirt keeps the definition of a domain "
                              "that has any" % (name, ', '.join(sorted(snapshots))),
                              'delete them first (embedvirt.libvirt.snapshot state=absent), or set '
                              'remove_snapshots=true to delete them with the domain')
        if snapshots:
            # Children go with their roots: the snapshots inside the disks are freed too.
            for snap in dom.listAllSnapshots(self.libvirt.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS):
                snap.delete(self.libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
        # NVRAM stays: it is the guest's data, and undefining is about the definition.
        dom.undefineFlags(self.keep_files(remove_tpm))
        return self.domain_get(name)

    def domain_clones(self, name):
        clones = []
        for dom in self.domains():
            if not dom.isPersistent():
                continue
            tree = parse_xml(dom.XMLDesc(self.libvirt.VIR_DOMAIN_XML_INACTIVE), 'domain')
            marker = tree.find('metadata/' + CLONE_ELEMENT)
            if marker is not None and marker.get('source') == name:
                clones.append(dom.name())
        return sorted(clones)

    def refuse_running_source(self, tree):
        """A linked clone is defined only while its source is off and does not start with the
        root: the source may have changed since the client looked, and a running source changes
        the disk the clone is built on."""
        marker = tree.find('metadata/' + CLONE_ELEMENT)
        source = self.find(marker.get('source')) if marker is not None and marker.get('source') else None
        if source is not None and source.isActive():
            raise HelperError('clone_source', "domain '%s' is a linked clone of '%s', which is running now: its disk "
                              "is changing under the clone" % (tree.findtext('name'), source.name()),
                              'shut the source down (state=shutdown) and run the task again')
        if source is not None and source.isPersistent() and source.autostart():
            raise HelperError('clone_source', "domain '%s' is a linked clone of '%s', which starts with the root "
                              "(autostart)" % (tree.findtext('name'), source.name()),
                              'set autostart=false on the source first')

    def refuse_tpm(self, tree):
        """The rule of tpm_problem, for a definition (parsed)."""
        problem = tpm_problem(tree.findtext('name'), tree.find("devices/tpm/backend[@type='emulator']") is not None,
                              self.confinement.status()['uid'] is not None)
        if problem:
            raise HelperError(*problem)

    def refuse_clone_source(self, name, action):
        """The rule every operation that would start or write a source of linked clones calls
        (see clone_source_problem)."""
        problem = clone_source_problem(name, self.domain_clones(name), action)
        if problem:
            raise HelperError(*problem)

    def domain_set_autostart(self, name, autostart):
        if autostart:
            self.refuse_clone_source(name, AUTOSTART)
        dom = self.domain_required(name)
        dom.setAutostart(1 if autostart else 0)
        return self.domain_detail(dom)

    def domain_disks(self):
        """Every file or block device a domain uses: its live and stored definitions."""
        disks = []
        for dom in self.domains():
            summary = self.domain_summary(dom)
            paths = set()
            flag_sets = [0] + ([self.libvirt.VIR_DOMAIN_XML_INACTIVE] if summary['persistent'] else [])
            for flags in flag_sets:
                for source in parse_xml(dom.XMLDesc(flags), 'domain').iter('source'):
                    path = source.get('file') or source.get('dev')
                    if path:
                        paths.add(path)
            for path in sorted(paths):
                disks.append({'domain': summary['name'], 'state': summary['state'], 'path': path})
        return disks

    def domain_stats(self, names):
        libvirt = self.libvirt
        kinds = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_BALLOON
                 | libvirt.VIR_DOMAIN_STATS_VCPU | libvirt.VIR_DOMAIN_STATS_INTERFACE | libvirt.VIR_DOMAIN_STATS_BLOCK)
        # NOWAIT: a guest whose QEMU is busy with a job gives what libvirt has without asking
        # QEMU, rather than holding every client of the helper up.
        flags = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE | libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
        result = {}
        for dom, record in self.qemu.getAllDomainStats(kinds, flags):
            name = dom.name()
            if not name.startswith(_root.PROBE_PREFIX) and (not names or name in names):
                result[name] = shape_stats(record)
        return result


# What domain_stats reports, as libvirt's typed parameters name them.
# What finds a device to unplug in the live definition: a disk by its target, a card by its MAC.
DETACHED_BY = {'disk': ('target', 'dev'), 'interface': ('mac', 'address')}
MEMORY_STATS = (('current', 'balloon.current'), ('maximum', 'balloon.maximum'), ('available', 'balloon.available'),
                ('unused', 'balloon.unused'), ('usable', 'balloon.usable'), ('rss', 'balloon.rss'))
DISK_STATS = (('read_bytes', 'rd.bytes'), ('write_bytes', 'wr.bytes'), ('read_requests', 'rd.reqs'),
              ('write_requests', 'wr.reqs'), ('allocation', 'allocation'), ('capacity', 'capacity'))
INTERFACE_STATS = (('rx_bytes', 'rx.bytes'), ('tx_bytes', 'tx.bytes'), ('rx_packets', 'rx.pkts'),
                   ('tx_packets', 'tx.pkts'), ('rx_errors', 'rx.errs'), ('tx_errors', 'tx.errs'))


def shape_stats(record):
    """One domain's record of getAllDomainStats as domain_stats reports it. Memory's available,
    unused and usable come from the guest's balloon driver: numbers the guest chose, reported
    as numbers only. A counter libvirt did not give is left out; a list is as long as libvirt's
    own count of disks or interfaces, never longer."""
    def numbers(prefix, names):
        return dict((key, record[prefix + name]) for key, name in names
                    if isinstance(record.get(prefix + name), int) and not isinstance(record[prefix + name], bool))

    def devices(kind, names, limit=256):
        count = record.get(kind + '.count')
        found = []
        for index in range(min(count, limit) if isinstance(count, int) else 0):
            prefix = '%s.%d.' % (kind, index)
            device = dict(name=str(record.get(prefix + 'name', '')), **numbers(prefix, names))
            if kind == 'block' and isinstance(record.get(prefix + 'path'), str):
                device['path'] = record[prefix + 'path']
            found.append(device)
        return found

    stats = dict(numbers('', (('cpu_time', 'cpu.time'), ('vcpus', 'vcpu.current'), ('max_vcpus', 'vcpu.maximum'))))
    stats['memory'] = numbers('', MEMORY_STATS)
    stats['disks'] = devices('block', DISK_STATS)
    stats['interfaces'] = devices('net', INTERFACE_STATS)
    return stats


# The largest stored definition read for clone sources: libvirt's own are a few KiB.
DEFINITION_LIMIT = 10 << 20


def unmark_autostart_of_clone_sources(root):
    """Take the autostart mark off every source of linked clones, before the QEMU driver opens.

    libvirt starts the guests marked autostart inside that open, where refuse_clone_source
    cannot run; a mark set by hand, restored from an archive or left by an older release would
    start a source under its clones. Reads the stored definitions (bounded, no link followed;
    one that cannot be read so is logged and left out); a mark removed is logged."""
    with root.open() as root_dir:
        try:
            fd = root_dir.subdir(_root.AUTOSTART_DIR)
        except FileNotFoundError:
            return
        try:
            marked = set(name[:-len('.xml')] for name in os.listdir(fd) if name.endswith('.xml'))
        finally:
            os.close(fd)
        if not marked:
            return
        for name in sorted(marked & clone_sources_on_disk(root_dir)):
            root_dir.remove_file('%s/%s.xml' % (_root.AUTOSTART_DIR, name))
            log.warning("domain %s is the source of linked clones: removed its autostart mark, so that the root's "
                        "open does not start it under them", name)


def clone_sources_on_disk(root_dir):
    """The sources the stored definitions of linked clones name (see _instance.instance_metadata)."""
    directory = _root.DEFINITION_DIRS[0]
    fd = root_dir.subdir(directory)
    try:
        names = [name for name in os.listdir(fd) if name.endswith('.xml')]
    finally:
        os.close(fd)
    sources = set()
    for name in names:
        try:
            data = root_dir.read_file('%s/%s' % (directory, name), limit=DEFINITION_LIMIT)
            marker = ElementTree.fromstring(data).find('metadata/' + CLONE_ELEMENT) if data is not None else None
        except (_root.RootError, ElementTree.ParseError) as e:
            # Not libvirt's: it writes plain files, of a few KiB.
            log.warning('not reading %s/%s/%s for clone sources: %s', root_dir.path, directory, name, e)
            continue
        if marker is not None and marker.get('source'):
            sources.add(marker.get('source'))
    return sources


def xml_escape(text):
    # xml.sax.saxutils.escape would import urllib and http.client into every client.
    return text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


def inherit_macs(tree, existing):
    """Give interfaces without a MAC the MAC of the existing interface at the same place,
    as redefining would otherwise generate new random ones and never be idempotent."""
    old = existing.findall('./devices/interface')
    for index, interface in enumerate(tree.findall('./devices/interface')):
        if interface.find('mac') is None and index < len(old) and old[index].find('mac') is not None:
            mac = ElementTree.SubElement(interface, 'mac')
            mac.set('address', old[index].find('mac').get('address'))
