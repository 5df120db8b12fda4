# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""What a change of a running instance's options does to the guest at once, and what waits for
its next start: the stored definition always changes; memory within its maximum (the balloon),
more vCPUs within theirs (hotplug), data disks on a bus that hot-plugs and the cards libvirt
knows (bridge, tap, passt) also change live.

Everything is measured against what the guest runs with (its live definition), not against the
stored one: a change that waited stays pending on every run until the guest restarts, and a
change made live is not made twice."""

from ansible_collections.embedvirt.libvirt.plugins.module_utils._data_disks import COLD_BUSES
from ansible_collections.embedvirt.libvirt.plugins.module_utils._network import card_key

# Options whose change waits for the next start, whatever it is.
COLD = ('firmware', 'secure_boot', 'tpm', 'accelerator', 'agent', 'extra_devices')
KIB_PER_UNIT = {'KiB': 1, 'k': 1, 'MiB': 1024, 'M': 1024, 'GiB': 1024 ** 2, 'G': 1024 ** 2}


def running(tree):
    """What a live definition (parsed) gives the guest: memory and max_memory (MiB), vcpus and
    max_vcpus, and disks, the files attached."""
    def mib(tag):
        element = tree.find(tag)
        return int(element.text) * KIB_PER_UNIT.get(element.get('unit', 'KiB'), 1) // 1024

    vcpu = tree.find('vcpu')
    return dict(memory=mib('currentMemory') if tree.find('currentMemory') is not None else mib('memory'),
                max_memory=mib('memory'), vcpus=int(vcpu.get('current', vcpu.text)), max_vcpus=int(vcpu.text),
                disks=set(source.get('file') for source in tree.iterfind('devices/disk/source') if source.get('file')))


def live_changes(started, wanted, live, paths):
    """(steps, pending) for a running guest: started is the record of the options its QEMU
    started with, wanted the new one (see _instance.record), live what it has now (running()),
    paths {disk name: file} of every data disk started, wanted or the stored definition name.
    steps, in order: ('detach', disk), ('attach', disk), ('memory', MiB), ('vcpus', count);
    pending: what waits for the next start (an option, or disks:<name>)."""
    steps, pending = [], []
    pending.extend(option for option in COLD if started[option] != wanted[option])
    new = dict((disk['name'], disk) for disk in wanted['disks'])
    old = dict((disk['name'], disk) for disk in started['disks'])
    for name in sorted(set(paths) - set(new)):
        if paths[name] in live['disks']:
            disk = old.get(name)
            if disk is not None and disk['bus'] in COLD_BUSES:
                pending.append('disks:%s' % name)
            else:
                steps.append(('detach', name))
    for disk in wanted['disks']:
        before = old.get(disk['name'])
        if paths[disk['name']] not in live['disks']:
            if disk['bus'] in COLD_BUSES:
                pending.append('disks:%s' % disk['name'])
            else:
                steps.append(('attach', disk))
        elif before is not None and dict(before, size=None) != dict(disk, size=None):
            # Its size is the volume's, grown live; any other change is a new device.
            pending.append('disks:%s' % disk['name'])
    if wanted['memory'] != live['memory']:
        if wanted['memory'] <= live['max_memory']:
            steps.append(('memory', wanted['memory']))
        else:
            pending.append('memory')
    if (wanted['max_memory'] or wanted['memory']) != live['max_memory']:
        pending.append('max_memory')
    if wanted['vcpus'] > live['vcpus'] and wanted['vcpus'] <= live['max_vcpus']:
        steps.append(('vcpus', wanted['vcpus']))
    elif wanted['vcpus'] != live['vcpus']:
        # More than the maximum, or fewer: the vCPUs a guest booted with do not unplug.
        pending.append('vcpus')
    if (wanted['max_vcpus'] or wanted['vcpus']) != live['max_vcpus']:
        pending.append('max_vcpus')
    return steps, pending


def card_changes(ours, wanted, live, wanted_args, live_args):
    """(steps, pending) for a running guest's cards. wanted: {MAC: <interface> element} of the
    cards libvirt knows in the new definition; live: the same of the live definition; ours:
    the MACs that may be this collection's cards (a card another device list added stays);
    wanted_args and live_args: QEMU's arguments of the slirp cards, which live on QEMU's command
    line and change only with a new QEMU. steps: ('unplug', element), ('plug', element).

    A card's MAC comes from its place in the list: when a card changed in place (a card taken
    out or put in before others moves them) or a slirp card changed, every card waits for the
    next start (pending ['networks']), so a card is never plugged with the MAC of one that runs."""
    changed = any(card_key(live[mac]) != card_key(element) for mac, element in wanted.items() if mac in live)
    if changed or list(wanted_args) != list(live_args):
        return [], ['networks']
    steps = [('unplug', element) for mac, element in sorted(live.items()) if mac in ours and mac not in wanted]
    steps += [('plug', element) for mac, element in sorted(wanted.items()) if mac not in live]
    return steps, []
