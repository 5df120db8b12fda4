# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What domain_stats makes of a record of libvirt's getAllDomainStats: the guest's numbers as
numbers only, and no more devices than libvirt counts (or than a bound)."""

from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.domains import shape_stats


def test_a_record_becomes_cpu_memory_disks_and_interfaces():
    record = {'state.state': 1, 'cpu.time': 7, 'vcpu.current': 2, 'vcpu.maximum': 4,
              'balloon.current': 1024, 'balloon.maximum': 2048, 'balloon.available': 900, 'balloon.rss': 50,
              'block.count': 1, 'block.0.name': 'vda', 'block.0.path': '/r/images/a.qcow2', 'block.0.rd.bytes': 3,
              'block.0.wr.bytes': 4, 'block.0.rd.reqs': 1, 'block.0.wr.reqs': 2, 'block.0.allocation': 5,
              'block.0.capacity': 6, 'net.count': 1, 'net.0.name': 'vnet0', 'net.0.rx.bytes': 8, 'net.0.tx.bytes': 9}
    assert shape_stats(record) == {
        'cpu_time': 7, 'vcpus': 2, 'max_vcpus': 4,
        'memory': {'current': 1024, 'maximum': 2048, 'available': 900, 'rss': 50},
        'disks': [{'name': 'vda', 'path': '/r/images/a.qcow2', 'read_bytes': 3, 'write_bytes': 4, 'read_requests': 1,
                   'write_requests': 2, 'allocation': 5, 'capacity': 6}],
        'interfaces': [{'name': 'vnet0', 'rx_bytes': 8, 'tx_bytes': 9}]}


def test_what_is_not_a_number_is_left_out_and_counts_are_bounded():
    record = {'balloon.available': 'lots', 'balloon.unused': True, 'cpu.time': 1.5,
              'block.count': 10 ** 9, 'net.count': 'many', 'net.0.name': 'x'}
    stats = shape_stats(record)
    assert stats['memory'] == {} and 'cpu_time' not in stats
    assert len(stats['disks']) == 256 and stats['disks'][0] == {'name': ''}
    assert stats['interfaces'] == []
