# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""_live and _data_disks: what a running guest gets at once, what waits for its next start, and
data disks that keep their targets."""

from xml.etree import ElementTree

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils._data_disks import assign_targets, disks_problem
from ansible_collections.embedvirt.libvirt.plugins.module_utils._instance import DEFINITION, cards_by_mac
from ansible_collections.embedvirt.libvirt.plugins.module_utils._live import card_changes, live_changes
from ansible_collections.embedvirt.libvirt.plugins.module_utils._network import interfaces_xml, own_macs, stable_mac


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
    assert live_changes(options(), options(firmware='uefi', secure_boot=True, tpm=True), live(), {}) == (
        [], ['firmware', 'secure_boot', 'tpm'])


def test_fewer_vcpus_wait_as_the_guest_booted_with_them():
    assert live_changes(options(vcpus=2, max_vcpus=2), options(vcpus=1, max_vcpus=2), live(vcpus=2, max_vcpus=2),
                        {}) == ([], ['vcpus'])


def test_disks_on_virtio_and_scsi_plug_sata_and_other_changes_wait():
    started = options(disks=[disk('a'), disk('b', bus='sata'), disk('c'), disk('d', bus='scsi')])
    # Cards are card_changes' (below).
    wanted = options(disks=[disk('a', size='9G'), disk('c', format='raw'), disk('e', bus='scsi'), disk('f', bus='sata')],
                     networks=[{'type': 'none'}], firmware='uefi')
    paths = dict((name, '/i/' + name) for name in 'abcdefg')
    # g was hot-plugged by an earlier run (the guest started without it) and is no longer asked for.
    steps, pending = live_changes(started, wanted, live(disks=['/i/a', '/i/b', '/i/c', '/i/d', '/i/g']), paths)
    assert steps == [('detach', 'd'), ('detach', 'g'), ('attach', disk('e', bus='scsi'))]
    assert pending == ['firmware', 'disks:b', 'disks:c', 'disks:f']


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


def cards(networks, backend='passt'):
    elements, args = interfaces_xml(networks, 'web', backend=backend)
    return cards_by_mac(ElementTree.fromstring(element) for element in elements), args


def as_libvirt_keeps_it(elements):
    """The live form: libvirt adds an alias, a PCI address and a bridge card's tap device."""
    live = {}
    for mac, element in elements.items():
        element = ElementTree.fromstring(ElementTree.tostring(element))
        ElementTree.SubElement(element, 'alias', name='net0')
        ElementTree.SubElement(element, 'address', type='pci', bus='0x02')
        if element.get('type') == 'bridge':
            ElementTree.SubElement(element, 'target', dev='vnet7')
        live[mac] = element
    return live


def test_cards_libvirt_knows_are_plugged_and_unplugged_live_and_slirp_ones_wait():
    user, bridge = {'type': 'user', 'port_forwards': [{'host': 2222, 'guest': 22}]}, {'type': 'bridge', 'bridge': 'br0'}
    ours = own_macs('web', [])
    started, dummy = cards([user])
    wanted, dummy = cards([user, bridge, {'type': 'user'}])
    steps, pending = card_changes(ours, wanted, as_libvirt_keeps_it(started), [], [])
    assert [(kind, element.find('mac').get('address')) for kind, element in steps] == sorted(
        [('plug', stable_mac('web/1')), ('plug', stable_mac('web/2'))]) and pending == []
    # Once plugged nothing is left to do; taken out of the list, they are unplugged.
    assert card_changes(ours, wanted, as_libvirt_keeps_it(wanted), [], []) == ([], [])
    steps, pending = card_changes(ours, started, as_libvirt_keeps_it(wanted), [], [])
    assert sorted((kind, element.find('mac').get('address')) for kind, element in steps) == sorted(
        [('unplug', stable_mac('web/1')), ('unplug', stable_mac('web/2'))]) and pending == []
    # A card changed in place (another bridge, another forward) is a new card: every card waits.
    moved, dummy = cards([user, dict(bridge, bridge='br1')])
    assert card_changes(ours, moved, as_libvirt_keeps_it(wanted), [], []) == ([], ['networks'])
    forwarded, dummy = cards([dict(user, port_forwards=[{'host': 2223, 'guest': 22}])])
    assert card_changes(ours, forwarded, as_libvirt_keeps_it(started), [], []) == ([], ['networks'])
    # The first card taken out: the others move up and take its MAC; nothing is plugged or
    # unplugged (the bridge card kept would be unplugged by its old MAC), all wait.
    assert card_changes(ours, cards([bridge])[0], as_libvirt_keeps_it(cards([user, bridge])[0]), [], []) == (
        [], ['networks'])
    # A slirp card lives on QEMU's command line: any change of it waits for a new QEMU, and so
    # does every card (one put before it would get the MAC it runs with).
    dummy, slirp_started = cards([user], 'slirp')
    slirp_wanted, slirp_args = cards([user, bridge, {'type': 'user'}], 'slirp')
    assert card_changes(ours, slirp_wanted, {}, slirp_args, slirp_started) == ([], ['networks'])
    slirp_wanted, slirp_args = cards([user, bridge], 'slirp')
    steps, pending = card_changes(ours, slirp_wanted, {}, slirp_args, slirp_started)
    assert [kind for kind, dummy in steps] == ['plug'] and pending == []


def test_a_card_that_is_not_ours_stays():
    theirs = ElementTree.fromstring("<interface type='bridge'><mac address='52:54:00:aa:bb:cc'/>"
                                    "<source bridge='br9'/></interface>")
    assert card_changes(own_macs('web', []), {}, {'52:54:00:aa:bb:cc': theirs}, [], []) == ([], [])
    # One given in the options is ours.
    ours = own_macs('web', [[{'type': 'bridge', 'bridge': 'br9', 'mac': '52:54:00:AA:BB:CC'}]])
    assert card_changes(ours, {}, {'52:54:00:aa:bb:cc': theirs}, [], [])[0] == [('unplug', theirs)]
