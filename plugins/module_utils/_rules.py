# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""What both sides refuse by one rule: a module asks before it changes anything (in check mode
too), the helper again for every client. Each rule returns (error kind, problem, fix) or None."""

from xml.etree import ElementTree

from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import snapshot_name_problem

# What refuse_clone_source says each refused action would do.
START = 'starting it'
AUTOSTART = 'starting it with the root (autostart)'
SNAPSHOT = 'taking a snapshot, which is written inside its disks,'
REVERT = 'reverting it to a snapshot'


def clone_source_problem(name, clones, action):
    """While linked clones of domain name exist, nothing may start it, mark it to start with
    the root or write its disks: their disks are overlays on its. The helper checks it on every
    such operation, modules before they change anything. (error kind, problem, fix), or None."""
    if not clones:
        return None
    return ('clone_source', "domain '%s' is the source of the linked clones %s: %s would change the disk they are "
            "built on" % (name, ', '.join(clones), action),
            'remove the clones first (embedvirt.libvirt.instance state=undefined), or make a full copy of the source '
            'and use that')


def tpm_problem(name, has_tpm, qemu_account):
    """An emulated TPM (swtpm) is given only where QEMU runs as the helper's own user: libvirt
    kills, as that user, the process that swtpm's pidfile names, in a directory it gives QEMU's
    account (as passt's, see _network.user_backend). The helper checks it on every define and
    start, instance before it changes anything. (error kind, problem, fix), or None."""
    if not (has_tpm and qemu_account):
        return None
    return ('tpm', "domain '%s' has an emulated TPM, and QEMU of this root runs as an account of its own: libvirt "
            "would kill as root the process that swtpm's pidfile names, which that account writes, so a guest that "
            "escapes QEMU could have any process of the host killed" % name,
            'give the TPM to a guest in a root of an ordinary user, or in a root whose qemu.conf runs QEMU as root '
            '(root_dir qemu_conf user: root), or leave it out (instance tpm: false, no <tpm> element)')


def name_problem(snapshot, deleting=False):
    """What forbids a snapshot name, as (error kind, problem, fix), or None: one plain word
    (_root.snapshot_name_problem), and not digits only. QEMU's revert (qemu-img snapshot -a,
    loadvm) compares the name with each snapshot's id first, and QEMU numbers them 1, 2, ...
    itself; its delete (qemu-img snapshot -d, delvm) looks the name up among names only, so a
    snapshot so named by an earlier release can still be deleted."""
    problem = snapshot_name_problem(snapshot)
    if problem:
        return ('name',) + problem
    if snapshot.isdigit() and not deleting:
        return ('name', 'snapshot name %r is not usable: QEMU looks a name of digits up as a snapshot id first, and '
                'would revert to the snapshot numbered so, whatever its name' % snapshot,
                'give a name with something other than digits in it, such as snap-%s (a snapshot so named by an '
                'earlier release can be deleted, state=absent, and taken again under such a name)' % snapshot)
    return None


def creation_problem(name, snapshot, running, memory, quiesce, xml):
    """What forbids taking the snapshot of domain name (running or not, defined by xml), as
    (error kind, problem, fix), or None. The snapshot module asks before it acts (in check mode
    too), the helper again for every client."""
    problem = name_problem(snapshot)
    if problem:
        return problem
    if memory and not running:
        return ('memory', "domain '%s' is not running: it has no memory state to save" % name,
                'start the guest first, or set memory=false for a snapshot of its disks')
    if quiesce and (memory or not running):
        return ('quiesce', 'quiesce freezes the filesystems of a running guest for a snapshot of its disks only; '
                'a memory snapshot and a shut-off guest need none', 'set quiesce=false, or memory=false on a running guest')
    os_el = ElementTree.fromstring(xml).find('os')
    # The inactive XML of a guest whose firmware libvirt picks says firmware='efi' only.
    if memory and os_el is not None and (os_el.get('firmware') == 'efi' or os_el.find("loader[@type='pflash']") is not None):
        return ('memory', "domain '%s' boots UEFI firmware, whose variables are a raw pflash file: libvirt 9.0 "
                'cannot keep its memory in an internal snapshot' % name,
                'set memory=false for a snapshot of its disks (reverting restarts the guest)')
    return None
