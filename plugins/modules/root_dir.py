#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
module: root_dir
short_description: Create an embedded libvirt root directory, purge one safely, archive or restore one
version_added: 0.1.0
description:
  - Creates the directory of an embedded root with this collection's layout (C(etc), C(images),
    C(lib/embedvirt), C(log/embedvirt), C(run/embedvirt)), a marker file, C(.embedvirt-root), that
    proves the directory belongs to this collection, and C(etc/qemu.conf) (see O(qemu_conf)).
  - Run as root on a root that belongs to a user, it writes inside the root only through directories
    checked to be real directories of the owner that nobody else may write; a link the owner put in
    the root (for example C(etc) pointing elsewhere) is refused with the fix, never followed.
  - Purges a root, only when the marker proves it is one - shuts its guests down (gracefully, then by
    force), stops its helper, ends any QEMU process left of it and deletes the directory. Files outside
    the root, such as disk images that guests named elsewhere, are never touched; symbolic links inside
    the root are removed, never followed.
  - The marker proves a root only when it is a regular file (not a link, with no other name) of the root
    directory's owner that group and others may not write, naming the root, in a root directory that group
    and others may not write either, and no root encloses the directory (roots do not nest). A marker
    planted in a shared directory (C(/tmp)), copied into a directory of another user's, or written in a
    directory a user was given inside another root proves nothing - it blocks no root below it (the rule
    that roots do not nest honours proven markers only), and neither a purge nor an archive takes it.
  - A purge never crosses into another filesystem - before anything is deleted, a mount point anywhere
    inside the root (a bind mount of the same filesystem included) makes it refuse, naming the mount
    points to unmount. A root that is itself a mount point is emptied and kept.
  - Archives a root as one file (O(state=archived)) and restores it at another path or on another host
    (O(state=restored)). The archive is a gzip tar file whose first member, C(manifest.json), lists
    the format version, the root's path, owner and mode, when it was made, the libvirt and QEMU versions,
    the guests (name, state before, autostart), the files outside the root that its guests name (not in
    the archive), and every directory and file with its mode, size and sha256.
  - Archiving shuts the running guests down (gracefully, within O(shutdown_timeout); a guest powered off
    or paused would leave crash-consistent disks, and its memory is not archived), stops the helper and
    holds the root's start lock while it copies (nothing writes meanwhile), then starts the helper and
    the guests again (RV(restarted)). It leaves out runtime state (C(run), the agent sockets in
    C(lib/qemu/channel), running guests' directories, sockets) and QEMU's capability cache (C(cache)).
    A link (other than libvirt's autostart links, recorded as such), FIFO or device in the root, or a
    filesystem mounted in it, is refused before anything is shut down; a link is never followed.
  - The archive holds the root's secret values (C(etc/secrets)), so it is written with mode 0600, and a
    task's result never shows a file's sha256.
  - Restoring refuses a path that exists, and refuses (V(archive) error) an archive that does not match
    its manifest - a member missing, unlisted, changed (sha256) or of another size, an absolute or C(..)
    name, a link or device member, another format version - before it writes anything. It then unpacks
    into a directory beside the new root that only root may enter, checks each file again as it writes
    it, rewrites the paths that named the old root (domain, secret, snapshot and checkpoint XML,
    C(etc/qemu.conf), NVRAM paths in them, the marker, libvirt's autostart links, and qcow2 backing
    file names, renamed in the image's header as C(qemu-img rebase -u) would, without running any program
    on the archive's images), gives the tree to O(owner) and O(group) and renames it into place. A failure
    leaves nothing behind. Logs keep the old paths. An image with an external data file, or whose backing
    file name goes through C(..), is refused.
  - An archive is untrusted input, read by a strict reader of the tar files O(state=archived) writes - regular
    files, each after at most one PAX header (of at most 8 KiB) for a long path or a size of 8 GiB or more;
    GNU long names, sparse members and other tar extensions are refused, and nothing a header declares is
    allocated. The manifest may have 4 MiB and 20000 entries, and must not list runtime state or managed-save
    images. What it declares must fit in the restore's filesystem and in what gzip can hold in the archive's
    size (1032 bytes a byte); both are checked before any member is read, in check mode too.
  - A manifest is its writer's word. O(owner) must be given to restore an archive file that neither root nor the
    task's user owns, or that group or others may write. A restore that makes a root of root's from an archive that is not root's own archive of
    a root of root's refuses (V(archive) error) definitions naming an C(<emulator>) other than a
    C(qemu-system-*) or C(qemu-kvm) of root's in directories only root may write, any file outside the
    new root (disk, kernel, initrd, loader, socket...), C(<hostdev>), C(<script>), C(<tpm>) and C(qemu:) elements,
    definitions over 1 MiB, and C(qemu.conf) settings other than those root_dir writes or naming a path, as its guests would run as
    root. Restore such an archive with O(owner) the user whose root it was.
  - The C(embedvirt.libvirt.root) role uses this module and adds the boot service, whose unit name and
    command line this module returns (RV(boot_unit)).
options:
  state:
    description:
      - V(present) creates (or checks) the root; V(absent) purges it.
      - V(archived) writes the root to the archive O(dest); it changes the root only by shutting its guests
        down and starting them again. A second run refuses an existing O(dest) unless O(force=true).
      - V(restored) makes the root (which must not exist) from the archive O(src). Restoring onto an
        existing path is refused, never reported as unchanged. In check mode the whole archive is read and
        checked, and nothing is written.
    type: str
    choices: [present, absent, archived, restored]
    default: present
  lifecycle:
    description:
      - Recorded in the marker. A V(ephemeral) root is scratch space, purged with everything in it
        without O(purge_guests) or O(purge_images).
    type: str
    choices: [persistent, ephemeral]
    default: persistent
  owner:
    description:
      - User that owns the root (and runs its guests when unprivileged). Defaults to the user running
        the task.
      - With O(state=restored), the owner of the restored root and all its files. When not given, the owner
        of the archived root (its name in the manifest), who must have an account here; a user's root is never
        made root's unless asked (its C(qemu.conf) and definitions are what that user wrote). Required
        (V(owner) error) when the archive file belongs to neither root nor the task's user, or group or
        others may write it, as anyone may write a manifest that names root.
        Restore a root whose guests ran as an ordinary user to such a user, or set O(qemu_conf) afterwards.
    type: str
  group:
    description:
      - Group of the root. Defaults to the owner's primary group.
    type: str
  mode:
    description:
      - Mode of the root directory, as an octal string. Group and others may not write it (they could
        replace the root's files).
    type: str
    default: '0700'
  qemu_conf:
    description:
      - The settings of C(<root>/etc/qemu.conf), which libvirt reads when the root's helper opens the
        driver. A setting left out takes its default.
      - When given, the file is written with these settings (mode 0600, owned by the owner of the root)
        if its content, owner or mode differ.
      - When not given, a missing qemu.conf is written with the defaults, which work run as root and as
        an ordinary user; an existing one is left as it is, except an earlier release's default for a root of
        root's (see O(qemu_conf.user)).
    type: dict
    suboptions:
      user:
        description:
          - C(user), the account QEMU runs as. Empty means, for a root that belongs to uid 0, an account of
            the root's own, C(embedvirt-) and 12 hex digits of the sha256 of the root's path, which this
            module creates (a system user and group, without a login shell or home) and removes with the
            root (O(state=absent)); for a root of an ordinary user it is left out, and QEMU runs as that user.
          - The root directory then belongs to that account's group, mode 0710, as do the directories QEMU
            passes through to its guests' files (C(images), C(lib), C(log)); libvirt lends QEMU a guest's files
            (disks, NVRAM, sockets) while the guest runs. See R(the Security guide,ansible_collections.embedvirt.libvirt.docsite.security).
          - V(root) runs QEMU as root, with every capability (the task warns), and a guest that escapes QEMU
            owns the host.
          - A root made by an earlier release, whose qemu.conf is still that release's default (QEMU as root),
            is moved to its own account when this module runs on it without O(qemu_conf); guests still running
            keep running as root until they are shut down and started again (the task warns, naming them).
        type: str
        default: ''
      group:
        description:
          - C(group). Empty means the root's own account's group for a root that belongs to uid 0, and left out
            otherwise.
        type: str
        default: ''
      stdio_handler:
        description:
          - C(stdio_handler). V(file) keeps QEMU's output in C(<root>/log/qemu/) without the system virtlogd,
            which a root run as root would otherwise need.
        type: str
        choices: [file, logd]
        default: file
      security_driver:
        description:
          - C(security_driver). The host's AppArmor or SELinux profiles are written for the system daemon's
            paths.
        type: str
        default: none
      cgroup_controllers:
        description:
          - C(cgroup_controllers). Empty keeps guests out of the host's machine slice.
        type: list
        elements: str
        default: []
      namespaces:
        description:
          - C(namespaces). V([mount]) gives QEMU a mount namespace of its own with a C(/dev) of its guest's
            devices only. Empty gives it none, and QEMU sees the host's C(/dev) (permissions still apply).
          - Not given, V([mount]) for a root that belongs to uid 0 where the host allows a mount namespace
            (a container without the privilege does not, and the task then warns), else empty (an ordinary user's
            libvirt has none).
        type: list
        elements: str
      extra:
        description:
          - More settings, each value written as given (quote strings yourself); a list becomes a list of
            strings. Names are letters, digits and C(_); values are one line.
        type: dict
        default: {}
  boot_helper:
    description:
      - With O(state=present), install the helper's code where the boot unit of RV(boot_unit) reads it
        (RV(boot_unit.helper)), owned by root outside every root, so that nothing the root's owner can
        change runs at boot. It is the very bundle tasks start a helper from, so tasks use a helper the
        unit started instead of replacing it. Needs root.
      - The C(embedvirt.libvirt.root) role sets this for its boot service.
    type: bool
    default: false
  adopt:
    description:
      - Mark an existing directory that already has files (an embedded root made before) as a root.
        Without it such a directory is refused.
    type: bool
    default: false
  purge_guests:
    description:
      - With O(state=absent), also purge a root that still has defined or running guests.
    type: bool
    default: false
  purge_images:
    description:
      - With O(state=absent), also purge a root that still has files under C(images).
    type: bool
    default: false
  shutdown_timeout:
    description:
      - With O(state=absent), seconds a guest gets to shut down before it is powered off.
      - With O(state=archived), seconds a running guest gets to shut down; one that does not is never
        powered off, the task fails and starts again the guests it shut down.
    type: int
    default: 60
  dest:
    description:
      - With O(state=archived), the archive file to write, outside the root, in a directory only root or
        the user running the task may write (or a sticky one such as C(/tmp)). Written whole or not at all,
        mode 0600.
    type: path
  force:
    description:
      - With O(state=archived), replace an existing O(dest).
    type: bool
    default: false
  src:
    description:
      - With O(state=restored), the archive to restore (written by O(state=archived), format version 1), a
        regular file with one link (a hard link could be a file the task's user cannot read).
      - Restored at O(root), which obeys the rules of every root (at most 700 bytes long, and so on); the
        guests' files outside the old root (RV(manifest.outside)) are not in the archive and must be at the
        same paths; a warning names those missing. No helper is needed; the first task on the restored root
        starts one, and libvirt starts the guests marked autostart then.
    type: path
extends_documentation_fragment:
  - embedvirt.libvirt.root
  - embedvirt.libvirt.attributes
  - embedvirt.libvirt.attributes.actiongroup_libvirt
attributes:
  check_mode:
    support: full
  diff_mode:
    support: partial
    details: Shows the change of C(etc/qemu.conf).
  idempotent:
    support: partial
    details: O(state=archived) writes a new archive each time (refusing an existing O(dest) unless O(force=true)),
      and O(state=restored) refuses an existing root.
seealso:
  - module: embedvirt.libvirt.helper
  - module: embedvirt.libvirt.snapshot
author:
  - Embedvirt Developers (@embedvirt)
'''

EXAMPLES = r'''
- name: A root for alice's guests
  embedvirt.libvirt.root_dir:
    root: /srv/alice-vms
    owner: alice

- name: A root of root's (QEMU runs as its own account, embedvirt-<hash>), with a qemu.conf setting of its own
  embedvirt.libvirt.root_dir:
    root: /srv/vms
    qemu_conf:
      extra:
        max_files: 4096

- name: Archive it (its guests are shut down for the copy and started again)
  embedvirt.libvirt.root_dir:
    root: /srv/alice-vms
    state: archived
    dest: /srv/backup/alice-vms.tar.gz

- name: Restore it at another path (or on another host)
  embedvirt.libvirt.root_dir:
    root: /srv/alice-vms2
    state: restored
    src: /srv/backup/alice-vms.tar.gz
    owner: alice

- name: Purge it, guests and disk images included
  embedvirt.libvirt.root_dir:
    root: /srv/alice-vms
    state: absent
    purge_guests: true
    purge_images: true
'''

RETURN = r'''
root:
  description: The root.
  returned: always
  type: str
  sample: /srv/vms
actions:
  description: What the task did (or would do), in order.
  returned: always
  type: list
  elements: str
privileged:
  description: Whether the root belongs to uid 0 (QEMU then needs the privileged qemu.conf settings).
  returned: when O(state=present)
  type: bool
owner:
  description: uid of the owner.
  returned: when O(state=present)
  type: int
group:
  description: gid of the root directory.
  returned: when O(state=present)
  type: int
lifecycle:
  description: The lifecycle recorded in the marker.
  returned: when O(state=present)
  type: str
qemu_conf:
  description: The root's qemu.conf.
  returned: when O(state=present)
  type: dict
  contains:
    path:
      description: Its path.
      type: str
      sample: /srv/vms/etc/qemu.conf
    changed:
      description: Whether it was (or would be) written. A running helper must restart to apply it.
      type: bool
boot_unit:
  description:
    - The systemd unit that starts the root's helper at boot, as the C(embedvirt.libvirt.root) role
      installs it. The name comes from C(systemd-escape --path), so every root has its own.
  returned: when O(state=present) or O(state=absent)
  type: dict
  contains:
    name:
      description: The unit's name.
      type: str
      sample: embedvirt-helper@srv-a\x2db.service
    path:
      description: The unit's file.
      type: str
      sample: /etc/systemd/system/embedvirt-helper@srv-a\x2db.service
    wants:
      description: The link that enables the unit (what C(systemctl enable) makes).
      type: str
      sample: /etc/systemd/system/multi-user.target.wants/embedvirt-helper@srv-a\x2db.service
    exec_start:
      description:
        - Its C(ExecStart), every argument quoted for systemd. It reads the helper's code from its
          standard input, which the unit connects to RV(boot_unit.helper) (C(StandardInput=file:)).
        - Its Python is O(helper_python) when given, else the first of the distribution's Pythons (see
          O(helper_python)) that has the libvirt bindings, and the Python that ran this task only when none has
          them, as that may be a venv that is gone at the next boot.
      type: str
      sample: '"/usr/bin/python3" "-I" "-c" "import hashlib, ..." "--embedvirt-helper" "--root" "/srv/a-b" "--idle-timeout" "0"'
    helper:
      description: Where the unit reads the helper's code, owned by root outside every root.
      type: str
      sample: /usr/local/libexec/embedvirt/helper.bundle
    helper_changed:
      description: Whether the helper's code there was (or would be) installed or replaced.
      returned: when O(boot_helper=true) and O(state=present)
      type: bool
purged:
  description: Whether the root was (or would be) deleted.
  returned: when O(state=absent)
  type: bool
domains:
  description: The guests the root held when it was purged.
  returned: when O(state=absent) and the root existed
  type: list
  elements: dict
images:
  description: The files under C(images) when it was purged.
  returned: when O(state=absent) and the root existed
  type: list
  elements: str
dest:
  description: The archive written.
  returned: when O(state=archived)
  type: str
size:
  description: Bytes of the archive.
  returned: when O(state=archived), not in check mode
  type: int
sha256:
  description: sha256 of the archive file.
  returned: when O(state=archived), not in check mode
  type: str
restarted:
  description: The guests the archive shut down and started again (in check mode, those it would).
  returned: when O(state=archived)
  type: list
  elements: str
seconds:
  description: How long the archive or restore took.
  returned: when O(state=archived) or O(state=restored)
  type: float
manifest:
  description: What the archive's manifest says (without the files' digests).
  returned: when O(state=archived) or O(state=restored)
  type: dict
  contains:
    version:
      description: Format version of the archive.
      type: int
    root:
      description: The root archived.
      type: str
    created:
      description: When the archive was made (UTC).
      type: str
    owner:
      description: User that owned the root archived.
      type: str
    libvirt:
      description: Version of libvirt that ran the root (null in check mode).
      type: str
    qemu:
      description: Version of QEMU (null in check mode).
      type: str
    guests:
      description: The guests, each with C(name), C(state) before the archive and C(autostart).
      type: list
      elements: dict
    outside:
      description: Files outside the root that the guests (or the images' backing files) name; not archived.
      type: list
      elements: str
    files:
      description: Number of files.
      type: int
    bytes:
      description: Their total size.
      type: int
src:
  description: The archive restored.
  returned: when O(state=restored)
  type: str
rewritten:
  description: Files whose text named the old root and now names the new one.
  returned: when O(state=restored)
  type: list
  elements: str
rebased:
  description: qcow2 images whose backing file name was moved to the new root.
  returned: when O(state=restored)
  type: list
  elements: str
autostart:
  description: Guests libvirt starts when the restored root's driver opens (the first task on it).
  returned: when O(state=restored)
  type: list
  elements: str
'''

import stat

from ansible_collections.embedvirt.libvirt.plugins.module_utils._archive import RootArchive
from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import EmbedvirtModule
from ansible_collections.embedvirt.libvirt.plugins.module_utils._lifecycle import RootLifecycle
from ansible_collections.embedvirt.libvirt.plugins.module_utils._restore import RootRestore


def main():
    module = EmbedvirtModule(
        dict(
            state=dict(type='str', choices=['present', 'absent', 'archived', 'restored'], default='present'),
            lifecycle=dict(type='str', choices=['persistent', 'ephemeral'], default='persistent'),
            owner=dict(type='str'),
            group=dict(type='str'),
            mode=dict(type='str', default='0700'),
            adopt=dict(type='bool', default=False),
            purge_guests=dict(type='bool', default=False),
            purge_images=dict(type='bool', default=False),
            shutdown_timeout=dict(type='int', default=60),
            qemu_conf=dict(type='dict', options=dict(
                user=dict(type='str', default=''),
                group=dict(type='str', default=''),
                stdio_handler=dict(type='str', choices=['file', 'logd'], default='file'),
                security_driver=dict(type='str', default='none'),
                cgroup_controllers=dict(type='list', elements='str', default=[]),
                namespaces=dict(type='list', elements='str'),
                extra=dict(type='dict', default={}),
            )),
            boot_helper=dict(type='bool', default=False),
            dest=dict(type='path'),
            force=dict(type='bool', default=False),
            src=dict(type='path'),
        ),
        supports_check_mode=True,
        required_if=[('state', 'archived', ['dest']), ('state', 'restored', ['src'])],
    )
    params = module.params
    try:
        mode = int(params['mode'], 8)
    except ValueError:
        module.fail("mode '%s' is not an octal mode such as '0700'" % params['mode'], error_kind='mode')
    if mode & ~0o7777 or mode & (stat.S_IWGRP | stat.S_IWOTH):
        module.fail("mode '%s' lets group or others write the root, who could then replace its files: use a "
                    "mode such as '0700' or '0755'" % params['mode'], error_kind='mode')
    manager = {'archived': RootArchive, 'restored': RootRestore}.get(params['state'], RootLifecycle)
    module.exit(**manager(module).run())


if __name__ == '__main__':
    main()
