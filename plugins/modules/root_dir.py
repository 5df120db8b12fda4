#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
module: root_dir
short_description: Create an embedded libvirt root directory, or purge one safely
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
  - The marker proves a root only when it is a regular file (not a link) of the root directory's owner
    (or of root) that group and others may not write, in a root directory that group and others may
    not write either. A marker planted in a shared directory (C(/tmp)) proves nothing.
  - A purge never crosses into another filesystem - before anything is deleted, a mount point anywhere
    inside the root (a bind mount of the same filesystem included) makes it refuse, naming the mount
    points to unmount. A root that is itself a mount point is emptied and kept.
  - The C(embedvirt.libvirt.root) role uses this module and adds the boot service, whose unit name and
    command line this module returns (RV(boot_unit)).
options:
  state:
    description:
      - V(present) creates (or checks) the root; V(absent) purges it.
    type: str
    choices: [present, absent]
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
        an ordinary user; an existing one is left as it is.
    type: dict
    suboptions:
      user:
        description:
          - C(user), the account QEMU runs as. Empty means root for a root that belongs to uid 0, and left
            out otherwise (QEMU runs as the owner of the root).
        type: str
        default: ''
      group:
        description:
          - C(group). Empty means root for a root that belongs to uid 0, and left out otherwise.
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
          - C(namespaces). Empty gives QEMU no private mount namespace (which containers often refuse).
        type: list
        elements: str
        default: []
      extra:
        description:
          - More settings, each value written as given (quote strings yourself); a list becomes a list of
            strings. Names are letters, digits and C(_); values are one line.
        type: dict
        default: {}
  boot_python:
    description:
      - Python (with the libvirt bindings) that the boot unit of RV(boot_unit) runs the helper with. An
        absolute path.
      - Defaults to the Python that runs this module.
    type: path
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
    type: int
    default: 60
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
    support: full
seealso:
  - module: embedvirt.libvirt.helper
author:
  - Embedvirt Developers (@embedvirt)
'''

EXAMPLES = r'''
- name: A root for alice's guests
  embedvirt.libvirt.root_dir:
    root: /srv/alice-vms
    owner: alice

- name: A root whose guests run as root, with a qemu.conf setting of its own
  embedvirt.libvirt.root_dir:
    root: /srv/vms
    qemu_conf:
      extra:
        max_files: 4096

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
  returned: always
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
'''

import os
import stat

from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import EmbedvirtModule
from ansible_collections.embedvirt.libvirt.plugins.module_utils._lifecycle import RootLifecycle


def main():
    module = EmbedvirtModule(
        dict(
            state=dict(type='str', choices=['present', 'absent'], default='present'),
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
                namespaces=dict(type='list', elements='str', default=[]),
                extra=dict(type='dict', default={}),
            )),
            boot_python=dict(type='path'),
            boot_helper=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        mode = int(params['mode'], 8)
    except ValueError:
        module.fail("mode '%s' is not an octal mode such as '0700'" % params['mode'], error_kind='mode')
    if mode & ~0o7777 or mode & (stat.S_IWGRP | stat.S_IWOTH):
        module.fail("mode '%s' lets group or others write the root, who could then replace its files: use a "
                    "mode such as '0700' or '0755'" % params['mode'], error_kind='mode')
    if params['boot_python'] is not None and not os.path.isabs(params['boot_python']):
        module.fail("boot_python '%s' is not an absolute path: give one such as /usr/bin/python3"
                    % params['boot_python'], error_kind='boot_python')
    module.exit(**RootLifecycle(module).run())


if __name__ == '__main__':
    main()
