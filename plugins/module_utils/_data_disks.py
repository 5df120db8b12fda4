# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""An instance's data disks (its `disks` option): their files under images/, their targets,
which stay the same while a disk stays in the list, and their <disk> elements."""

import os
import re
import string
from xml.etree import ElementTree

# A disk's name becomes part of its file's name: images/<instance>-disk-<name>.qcow2.
DISK_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')
# Target prefixes by bus; vda and vdb are the instance's own disk and its seed.
PREFIXES = {'virtio': 'vd', 'scsi': 'sd', 'sata': 'sd'}
# What QEMU cannot hot-plug: a SATA (AHCI) disk waits for the next start.
COLD_BUSES = ('sata',)


def disks_problem(disks):
    """What is wrong with a `disks` option (a list of dicts as the module's spec makes them), or None."""
    names = set()
    for disk in disks:
        name = disk['name']
        if not DISK_NAME.match(name or ''):
            return ("disks: name %r is not 1 to 64 letters, digits, '_', '.' or '-' starting with a letter or digit: "
                    "it becomes part of the disk's file name" % (name,))
        if name in names:
            return "disks: the name '%s' is given twice: give each disk its own" % name
        names.add(name)
        if disk['file'] and disk['backing_file']:
            return "disks: '%s' gives both file (an existing image) and backing_file (a new overlay): give one" % name
        if disk['backing_file'] and disk['format'] != 'qcow2':
            return "disks: '%s' has a backing_file, which needs format qcow2" % name
        if not disk['file'] and not disk['backing_file'] and not disk['size']:
            return "disks: '%s' needs a size (such as 10G), a file (an existing image) or a backing_file" % name
        for option in ('file', 'backing_file'):
            value = disk[option]
            if value and (os.path.isabs(value) or '..' in value.split('/') or os.path.normpath(value) != value):
                return ("disks: %s '%s' of '%s' must be a normalised path relative to the root's images directory, "
                        "without '..'" % (option, value, name))
    return None


def disk_file(instance, disk):
    """The file of a data disk, relative to images/: the one given, or one named after the instance."""
    if disk['file']:
        return disk['file']
    return '%s-disk-%s.%s' % (instance, disk['name'], 'qcow2' if disk['format'] == 'qcow2' else 'img')


def assign_targets(disks, paths, current_targets, taken):
    """Each data disk's target, in order: the one it has in the current definition (found by its
    path, current_targets {path: target}) while the bus keeps the prefix, else the first free one of
    its bus, never one of taken (the instance's own disks, extra devices). ValueError when a bus
    runs out."""
    used = set(taken)
    targets = [None] * len(disks)
    for index, (disk, path) in enumerate(zip(disks, paths)):
        target = current_targets.get(path)
        if target and target.startswith(PREFIXES[disk['bus']]) and target not in used:
            targets[index] = target
            used.add(target)
    for index, disk in enumerate(disks):
        if targets[index] is None:
            prefix = PREFIXES[disk['bus']]
            free = [prefix + letter for letter in string.ascii_lowercase if prefix + letter not in used]
            if not free:
                raise ValueError("disks: no target is left on bus %s for '%s'" % (disk['bus'], disk['name']))
            targets[index] = free[0]
            used.add(free[0])
    return targets


def disk_element(path, target, disk_format, bus):
    """A <disk> element of a file."""
    element = ElementTree.Element('disk', type='file', device='disk')
    ElementTree.SubElement(element, 'driver', name='qemu', type=disk_format)
    ElementTree.SubElement(element, 'source', file=path)
    ElementTree.SubElement(element, 'target', dev=target, bus=bus)
    return element


def current_targets(xml):
    """{file: target} of the disks of a definition."""
    found = {}
    for disk in ElementTree.fromstring(xml).iterfind('devices/disk'):
        source, target = disk.find('source'), disk.find('target')
        if source is not None and target is not None and source.get('file'):
            found[source.get('file')] = target.get('dev')
    return found
