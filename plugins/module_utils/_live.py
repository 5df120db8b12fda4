# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""What a change of a running instance's options does to the guest at once, and what waits for
its next start: the stored definition always changes; memory within its maximum (the balloon),
vCPUs within theirs (hotplug) and data disks on a bus that hot-plugs also change live."""

from ansible_collections.embedvirt.libvirt.plugins.module_utils._data_disks import COLD_BUSES

# Options whose change waits for the next start, whatever it is.
COLD = ('firmware', 'accelerator', 'agent', 'networks', 'extra_devices')


def live_changes(before, after):
    """(steps, pending) for a running guest whose definition recorded the options before and now
    records after (see _instance.DEFINITION): steps, in order, are ('detach', disk),
    ('attach', disk), ('memory', MiB) and ('vcpus', count); pending names what waits for the
    next start (an option, or disks:<name>)."""
    steps, pending = [], []
    pending.extend(option for option in COLD if before[option] != after[option])
    old = dict((disk['name'], disk) for disk in before['disks'] or ())
    new = dict((disk['name'], disk) for disk in after['disks'] or ())
    for name in sorted(set(old) - set(new)):
        if old[name]['bus'] in COLD_BUSES:
            pending.append('disks:%s' % name)
        else:
            steps.append(('detach', old[name]))
    for disk in after['disks'] or ():
        if disk['name'] not in old:
            if disk['bus'] in COLD_BUSES:
                pending.append('disks:%s' % disk['name'])
            else:
                steps.append(('attach', disk))
        elif dict(old[disk['name']], size=None) != dict(disk, size=None):
            # Its size is the volume's, grown live; any other change is a new device.
            pending.append('disks:%s' % disk['name'])
    for amount, maximum in (('memory', 'max_memory'), ('vcpus', 'max_vcpus')):
        old_max, new_max = before[maximum] or before[amount], after[maximum] or after[amount]
        if after[amount] != before[amount]:
            if after[amount] <= old_max:
                steps.append((amount, after[amount]))
            else:
                pending.append(amount)
        if new_max != old_max:
            pending.append(maximum)
    return steps, pending
