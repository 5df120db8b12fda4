# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""_live and _data_disks: what a running guest gets at once, what waits for its next start, and
data disks that keep their targets."""

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils._data_disks import assign_targets, disks_problem
from ansible_collections.embedvirt.libvirt.plugins.module_utils._instance import DEFINITION
from ansible_collections.embedvirt.libvirt.plugins.module_utils._live import live_changes


def disk(name, bus='virtio', size='1G', **more):
    return dict(dict(name=name, size=size, format='qcow2', bus=bus, file=None, backing_file=None), **more)


def options(**changes):
    return dict(DEFINITION, **changes)


def test_memory_and_vcpus_within_their_maxima_change_at_once_and_new_maxima_wait():
    before = options(memory=1024, max_memory=2048, vcpus=1, max_vcpus=2)
    assert live_changes(before, options(memory=1536, max_memory=2048, vcpus=2, max_vcpus=2)) == (
        [('memory', 1536), ('vcpus', 2)], [])
    assert live_changes(before, options(memory=4096, max_memory=4096, vcpus=1, max_vcpus=4)) == (
        [], ['memory', 'max_memory', 'max_vcpus'])
    # Without a maximum, the memory is its own: less is given at once, and the smaller maximum waits.
    assert live_changes(options(memory=1024), options(memory=512)) == ([('memory', 512)], ['max_memory'])


def test_disks_on_virtio_and_scsi_plug_sata_and_other_changes_wait():
    before = options(disks=[disk('a'), disk('b', bus='sata'), disk('c'), disk('d', bus='scsi')])
    after = options(disks=[disk('a', size='9G'), disk('c', format='raw'), disk('e', bus='scsi'), disk('f', bus='sata')],
                    networks=[{'type': 'none'}], firmware='uefi')
    steps, pending = live_changes(before, after)
    assert steps == [('detach', disk('d', bus='scsi')), ('attach', disk('e', bus='scsi'))]
    assert pending == ['firmware', 'networks', 'disks:b', 'disks:c', 'disks:f']


def test_no_change_is_no_step():
    before = options(disks=[disk('a')])
    assert live_changes(before, dict(before)) == ([], [])


def test_targets_stay_with_their_disks_and_new_ones_take_the_first_free():
    disks = [disk('b'), disk('c', bus='scsi'), disk('new'), disk('s', bus='sata')]
    paths = ['/i/b', '/i/c', '/i/new', '/i/s']
    # a (vdc) was removed: b keeps vdd, the new disk takes vdc; scsi and sata share sd*.
    assert assign_targets(disks, paths, {'/i/a': 'vdc', '/i/b': 'vdd', '/i/c': 'sda'}, ['vda', 'vdb']) == [
        'vdd', 'sda', 'vdc', 'sdb']
    # A disk moved to another bus gets a target of that bus.
    assert assign_targets([disk('b', bus='scsi')], ['/i/b'], {'/i/b': 'vdd'}, ['vda']) == ['sda']


@pytest.mark.parametrize('disks, problem', [
    ([disk('../x')], 'is not 1 to 64'),
    ([disk('')], 'is not 1 to 64'),
    ([disk('a'), disk('a')], 'given twice'),
    ([disk('a', size=None)], 'needs a size'),
    ([disk('a', file='x.qcow2', backing_file='y.qcow2')], 'give one'),
    ([disk('a', format='raw', backing_file='y.qcow2')], 'needs format qcow2'),
    ([disk('a', file='../../etc/shadow')], "without '..'"),
    ([disk('a', file='/etc/shadow')], "without '..'"),
    ([disk('a', backing_file='b//c')], "without '..'"),
])
def test_bad_disks_are_named(disks, problem):
    assert problem in disks_problem(disks)
