# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""_instance: what a linked clone is built on, and the definition that says it is one."""

import json
import types
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils._instance import (
    DEFINITION, INSTANCE_ELEMENT, clone_disks, clone_source, domain_xml, recorded_options)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.domains import Domains
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.drivers import Drivers
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.errors import HelperError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import CLONE_ELEMENT
from ansible_collections.embedvirt.libvirt.plugins.module_utils._rules import tpm_problem

IMAGES = '/r/images'


def disk(path, target, kind='qcow2', device='disk', extra='', disk_type='file'):
    driver = "<driver name='qemu' type='%s'/>" % kind if kind else ''
    source = "<source file='%s'/>" % path if path else ''
    return ("<disk type='%s' device='%s'>%s%s<target dev='%s' bus='virtio'/>%s</disk>"
            % (disk_type, device, driver, source, target, extra))


def source(*disks):
    return '<domain><name>t</name><devices>%s</devices></domain>' % ''.join(disks)


def test_a_clone_overlays_the_writable_disks_in_order_and_leaves_seed_cdrom_and_readonly_ones():
    xml = source(disk(IMAGES + '/t.qcow2', 'vda'),
                 disk(IMAGES + '/t-cidata.img', 'vdb', 'raw'),  # writable, but the source's seed
                 disk(IMAGES + '/boot.iso', 'sda', 'raw', device='cdrom'),
                 disk(IMAGES + '/ro.img', 'vdd', 'raw', extra='<readonly/>'),
                 disk(IMAGES + '/sub/data.raw', 'sdb', 'raw'),
                 disk(IMAGES + '/logs.qcow2', 'vde', kind=None))
    assert clone_disks(xml, IMAGES + '/t-cidata.img', '/r', 'c', None) == [
        (IMAGES + '/c.qcow2', IMAGES + '/t.qcow2', 'qcow2', 'vda'),
        (IMAGES + '/c-vdc.qcow2', IMAGES + '/sub/data.raw', 'raw', 'vdc'),
        # libvirt opens a disk without a driver type as raw (it never probes), so the overlay says so too
        (IMAGES + '/c-vdd.qcow2', IMAGES + '/logs.qcow2', 'raw', 'vdd'),
    ]


def test_further_disks_take_the_targets_extra_devices_leave():
    xml = source(disk(IMAGES + '/t.qcow2', 'vda'), disk(IMAGES + '/d1.qcow2', 'vdb'), disk(IMAGES + '/d2.qcow2', 'vdc'))
    extra = ["<disk type='file' device='disk'><source file='/x'/><target dev='vdc' bus='virtio'/></disk>"]
    assert [target for dummy, dummy, dummy, target in clone_disks(xml, None, '/r', 'c', extra)] == ['vda', 'vdd', 'vde']


@pytest.mark.parametrize('xml, problem', [
    (source(disk(IMAGES + '/t.qcow2', 'vda', extra='<readonly/>')), 'no writable disk'),
    (source("<disk type='block' device='disk'><source dev='/dev/sdz'/><target dev='vda'/></disk>"), 'not a file'),
    (source(disk(None, 'vda')), 'not a file'),
    (source(disk('/var/lib/t.qcow2', 'vda')), 'not below /r/images'),
    (source(disk(IMAGES + '/../etc/t.qcow2', 'vda')), 'not below /r/images'),
    (source(disk('/r/imagesX/t.qcow2', 'vda')), 'not below /r/images'),
    (source(disk(IMAGES + '/t.qcow2', 'vda', extra="<encryption format='luks'/>")), 'encrypted'),
    (source(disk(IMAGES + '/t.vmdk', 'vda', 'vmdk')), 'not qcow2 or raw'),
    (source(*[disk(IMAGES + '/d%d.qcow2' % i, 'vd%s' % chr(97 + i)) for i in range(26)]), 'more than the 25'),
])
def test_a_source_an_overlay_cannot_be_put_on_is_refused(xml, problem):
    with pytest.raises(ValueError, match=problem):
        clone_disks(xml, None, '/r', 'c', None)


PARAMS = dict(name='c', accelerator='tcg', memory=512, max_memory=None, vcpus=1, max_vcpus=None, firmware='bios',
              secure_boot=False, tpm=False, agent=False, extra_devices=None, disks=[], networks=[{'type': 'none', 'port_forwards': [], 'mac': None}])


def test_a_clones_definition_names_its_source_and_attaches_its_overlays_after_the_seed():
    xml = domain_xml(PARAMS, [('/r/images/c.qcow2', 'vda'), ('/r/images/c-vdc.qcow2', 'vdc')],
                     '/r/images/c-cidata.img', '/r/log/console/c.log', ('', []), source='t')
    tree = ElementTree.fromstring(xml)
    assert tree.find('metadata/' + CLONE_ELEMENT).get('source') == 't'
    assert clone_source(xml) == 't'
    assert [(d.find('source').get('file'), d.find('target').get('dev'), d.find('driver').get('type'),
             d.find('readonly') is not None) for d in tree.iterfind('devices/disk')] == [
        ('/r/images/c.qcow2', 'vda', 'qcow2', False),
        ('/r/images/c-cidata.img', 'vdb', 'raw', True),
        ('/r/images/c-vdc.qcow2', 'vdc', 'qcow2', False)]


def test_an_instance_from_an_image_is_no_clone():
    xml = domain_xml(PARAMS, [('/r/images/c.qcow2', 'vda')], '/r/images/c-cidata.img', '/r/log/console/c.log',
                     ('', []))
    assert ElementTree.fromstring(xml).find('metadata/' + CLONE_ELEMENT) is None
    assert clone_source(xml) is None


def test_a_definition_records_the_options_it_is_built_from_and_a_network_as_set():
    xml = domain_xml(PARAMS, [('/r/images/c.qcow2', 'vda')], None, '/r/log/console/c.log', ('', []))
    assert recorded_options(xml) == dict(memory=512, max_memory=None, vcpus=1, max_vcpus=None, firmware='bios',
                                         secure_boot=False, tpm=False, accelerator='tcg', agent=False,
                                         networks=[{'type': 'none'}], extra_devices=None, disks=[])
    # Without a seed: a guest whose seed the task keeps as it is.
    assert [d.find('target').get('dev') for d in ElementTree.fromstring(xml).iterfind('devices/disk')] == ['vda']


def record(text):
    return "<domain><name>c</name><metadata><i:instance xmlns:i='%s'>%s</i:instance></metadata></domain>" % (
        INSTANCE_ELEMENT[1:].split('}', maxsplit=1)[0], escape(text))


def recorded(**changes):
    return json.dumps(dict(DEFINITION, **changes))


@pytest.mark.parametrize('text', [
    '', 'not json', '[]', '{}',
    # Each option of DEFINITION must be there, of its type: a record a root's owner edited is no record.
    '{"memory": 1024}',
    recorded(memory='1024'),
    recorded(agent=1),
    recorded(memory=None),
    recorded(extra_devices=[1]),
    recorded(more=1),
    recorded(tpm=1),
    recorded(secure_boot='yes'),
    recorded(disks=[{'name': '../x', 'size': '1G', 'format': 'qcow2', 'bus': 'virtio', 'file': None,
                     'backing_file': None}]),
    recorded(disks=[{'name': 'x', 'size': '1G', 'format': 'qcow2', 'bus': 'ide', 'file': None,
                     'backing_file': None}]),
    recorded(disks=[{'name': 'x', 'size': '1G'}]),
])
def test_a_record_that_is_not_one_of_the_options_counts_as_none(text):
    assert recorded_options(record(text)) is None
    assert recorded_options('<domain><name>c</name></domain>') is None


def test_a_well_formed_record_is_read_back():
    assert recorded_options(record(recorded(extra_devices=['<hostdev/>'], firmware='uefi', memory=64, vcpus=2))) \
        == dict(DEFINITION, firmware='uefi', memory=64, vcpus=2, extra_devices=['<hostdev/>'])


def test_secure_boot_and_tpm_are_recorded_only_when_on_so_an_older_guest_keeps_its_definition():
    plain = domain_xml(PARAMS, [('/r/images/c.qcow2', 'vda')], None, '/r/log/console/c.log', ('', []))
    text = ElementTree.fromstring(plain).findtext('metadata/' + INSTANCE_ELEMENT)
    assert 'tpm' not in json.loads(text) and 'secure_boot' not in json.loads(text)
    # A record written before the two options existed reads as both off.
    older = dict(DEFINITION)
    del older['tpm'], older['secure_boot']
    assert recorded_options(record(json.dumps(older))) == DEFINITION
    on = dict(PARAMS, firmware='uefi', secure_boot=True, tpm=True)
    xml = domain_xml(on, [('/r/images/c.qcow2', 'vda')], None, '/r/log/console/c.log', ('', []))
    assert recorded_options(xml)['tpm'] is True and recorded_options(xml)['secure_boot'] is True


def test_secure_boot_asks_for_enrolled_keys_and_smm_and_tpm_for_an_emulated_tpm_2():
    def tree(**changes):
        return ElementTree.fromstring(domain_xml(dict(PARAMS, firmware='uefi', **changes), [('/r/i/c.qcow2', 'vda')],
                                                 None, '/r/log/console/c.log', ('', [])))
    on = tree(secure_boot=True, tpm=True)
    features = dict((f.get('name'), f.get('enabled')) for f in on.iterfind('os/firmware/feature'))
    assert features == {'secure-boot': 'yes', 'enrolled-keys': 'yes'}
    assert on.find('features/smm').get('state') == 'on'
    assert on.find('devices/tpm').get('model') == 'tpm-crb'
    assert on.find('devices/tpm/backend').attrib == {'type': 'emulator', 'version': '2.0'}
    off = tree()
    assert [f.get('enabled') for f in off.iterfind('os/firmware/feature')] == ['no']
    assert off.find('features/smm') is None and off.find('devices/tpm') is None


@pytest.mark.parametrize('disks', [
    # A source defined with the domain module on the disk an instance called c would have.
    [disk(IMAGES + '/c.qcow2', 'vda')],
    [disk(IMAGES + '/t.qcow2', 'vda'), disk(IMAGES + '/c-vdc.qcow2', 'vdb')],
    # Not cloned, yet still the source's: the clone's overlay would be made over it.
    [disk(IMAGES + '/t.qcow2', 'vda'), disk(IMAGES + '//c.qcow2', 'vdb', 'raw', extra='<readonly/>')],
])
def test_a_clone_whose_disk_would_be_a_disk_of_its_source_is_refused(disks):
    with pytest.raises(ValueError, match="the clone's disk /r/images/c(-vdc)?.qcow2 would be the source's own disk: "
                                         "choose another name for the clone"):
        clone_disks(source(*disks), None, '/r', 'c', None)


def test_an_emulated_tpm_is_refused_where_qemu_has_an_account_of_its_own_by_modules_and_helper_alike():
    assert tpm_problem('web', True, False) is None and tpm_problem('web', False, True) is None
    kind, problem, fix = tpm_problem('web', True, True)
    assert kind == 'tpm' and "domain 'web' has an emulated TPM" in problem and 'qemu_conf user: root' in fix
    helper = Domains(Drivers(None), None, types.SimpleNamespace(status=lambda: {'uid': 999}))
    tree = ElementTree.fromstring("<domain><name>web</name><devices><tpm model='tpm-crb'>"
                                  "<backend type='emulator' version='2.0'/></tpm></devices></domain>")
    with pytest.raises(HelperError) as refused:
        helper.refuse_tpm(tree)
    assert refused.value.kind == 'tpm'
    # A passthrough TPM is the host's own device: another rule (no host devices in roots) is not this one.
    helper.refuse_tpm(ElementTree.fromstring("<domain><name>web</name><devices><tpm><backend type='passthrough'/>"
                                             "</tpm></devices></domain>"))
    Domains(Drivers(None), None, types.SimpleNamespace(status=lambda: {'uid': None})).refuse_tpm(tree)
