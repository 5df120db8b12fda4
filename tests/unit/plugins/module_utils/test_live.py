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


def live(memory=1024, max_memory=1024, vcpus=1, max_vcpus=1, disks=()):
    return dict(memory=memory, max_memory=max_memory, vcpus=vcpus, max_vcpus=max_vcpus, disks=set(disks))


def test_memory_and_more_vcpus_within_what_the_guest_runs_with_change_at_once_and_new_maxima_wait():
    started = options(memory=1024, max_memory=2048, vcpus=1, max_vcpus=2)
    now = live(max_memory=2048, max_vcpus=2)
    assert live_changes(started, options(memory=1536, max_memory=2048, vcpus=2, max_vcpus=2), now, {}) == (
        [('memory', 1536), ('vcpus', 2)], [])
    assert live_changes(started, options(memory=4096, max_memory=4096, vcpus=1, max_vcpus=4), now, {}) == (
        [], ['memory', 'max_memory', 'max_vcpus'])
    # Without a maximum, the memory is its own: less is given at once, and the smaller maximum waits.
    assert live_changes(options(memory=1024), options(memory=512), live(), {}) == ([('memory', 512)], ['max_memory'])


def test_what_waited_still_waits_on_the_next_run_and_is_measured_against_the_running_guest():
    # The stored definition already says 4096 (an earlier run); the guest still runs with 1024.
    assert live_changes(options(), options(memory=2048, max_memory=4096), live(), {}) == (
        [], ['memory', 'max_memory'])
    assert live_changes(options(), options(firmware='uefi'), live(), {}) == ([], ['firmware'])


def test_fewer_vcpus_wait_as_the_guest_booted_with_them():
    assert live_changes(options(vcpus=2, max_vcpus=2), options(vcpus=1, max_vcpus=2), live(vcpus=2, max_vcpus=2),
                        {}) == ([], ['vcpus'])


def test_disks_on_virtio_and_scsi_plug_sata_and_other_changes_wait():
    started = options(disks=[disk('a'), disk('b', bus='sata'), disk('c'), disk('d', bus='scsi')])
    wanted = options(disks=[disk('a', size='9G'), disk('c', format='raw'), disk('e', bus='scsi'), disk('f', bus='sata')],
                     networks=[{'type': 'none'}], firmware='uefi')
    paths = dict((name, '/i/' + name) for name in 'abcdefg')
    # g was hot-plugged by an earlier run (the guest started without it) and is no longer asked for.
    steps, pending = live_changes(started, wanted, live(disks=['/i/a', '/i/b', '/i/c', '/i/d', '/i/g']), paths)
    assert steps == [('detach', 'd'), ('detach', 'g'), ('attach', disk('e', bus='scsi'))]
    assert pending == ['firmware', 'networks', 'disks:b', 'disks:c', 'disks:f']


def test_no_change_is_no_step_and_a_disk_plugged_before_is_not_plugged_again():
    started = options(disks=[disk('a')])
    assert live_changes(started, dict(started), live(disks=['/i/a']), {'a': '/i/a'}) == ([], [])
    wanted = options(disks=[disk('a'), disk('b')])
    assert live_changes(started, wanted, live(disks=['/i/a', '/i/b']), {'a': '/i/a', 'b': '/i/b'}) == ([], [])


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
