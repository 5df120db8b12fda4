# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A root's qemu.conf: the embedded defaults that work as uid 0 and as an ordinary user.

root_dir writes it, and so does the first module that creates a root, so that the first
guest of any root starts (as uid 0, without stdio_handler = "file", libvirt asks the
system virtlogd, which an embedded root does not use), confined (_confinement).
"""


import grp
import hashlib
import os
import pwd
import re

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _confinement
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import QEMU_CONF

# Where libvirt's embedded QEMU driver reads it, relative to the root.
PATH = QEMU_CONF
MODE = 0o600

# An empty user or group is left out: QEMU then runs as the owner of the root, except
# in a root of uid 0, where settings_for() makes them the root's own account. None (for
# namespaces) is: a mount namespace for a root of uid 0 where the host allows one.
DEFAULTS = dict(
    user='',
    group='',
    stdio_handler='file',
    security_driver='none',
    cgroup_controllers=(),
    namespaces=None,
    extra={},
)

# The defaults that earlier releases wrote for a root of uid 0 (QEMU as uid 0): root_dir
# moves a root that still has one of them to its own account.
LEGACY_DEFAULTS = frozenset([
    '311298a9aa3b15dda6c5f98ba342497ab19b8182eca90db637d7b292e0fd6efd',
])

# How qemu.conf names uid 0.
ROOT_NAMES = ('root', '+0')

KEY = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')

TEMPLATE = '''\
# qemu.conf of an embedded libvirt root, written by embedvirt.libvirt (root_dir). libvirt
# reads it when the root's helper opens the driver: restart the helper to apply changes.
%(account)s
# "file": QEMU's output goes to <root>/log/qemu/ instead of the system virtlogd.
stdio_handler = %(stdio_handler)s

# The host's AppArmor or SELinux profiles are written for the system daemon's paths.
security_driver = %(security_driver)s

# Guests of an embedded root stay out of the host's machine slice unless asked for.
cgroup_controllers = %(cgroup_controllers)s

# "mount": QEMU gets a mount namespace of its own with a /dev of its guest's devices only
# (containers often refuse it; empty: QEMU sees the host's /dev).
namespaces = %(namespaces)s
%(extra)s'''

ACCOUNT = '''
# Account QEMU runs as (a root of root's: its own account; "root" gives a guest that escapes
# QEMU the whole host). libvirt lends it the files of a guest while the guest runs.
%s
'''


def settings_for(uid, root_path, options=None, mount_namespace=None):
    """DEFAULTS with the options that are set, for the root at root_path owned by uid.

    mount_namespace: whether the host allows one (found with _confinement when None)."""
    settings = dict(DEFAULTS)
    settings.update((key, value) for key, value in (options or {}).items() if value is not None)
    if uid == 0:
        for key in ('user', 'group'):
            settings[key] = settings[key] or _confinement.name(root_path)
        if settings['namespaces'] is None:
            if mount_namespace is None:
                mount_namespace = _confinement.mount_namespace_problem() is None
            settings['namespaces'] = ['mount'] if mount_namespace else []
    elif settings['namespaces'] is None:
        settings['namespaces'] = []  # an unprivileged driver has none
    return settings


def qemu_ids(text):
    """(uid, gid) that QEMU runs as by this qemu.conf (text) of a root of uid 0, or None when
    it runs as uid 0 or the file names no user; KeyError names an account that does not exist."""
    user, group = setting(text, 'user'), setting(text, 'group')
    if not user:
        return None
    uid, gid = (int(user[1:]), None) if user.startswith('+') else pwd.getpwnam(user)[2:4]
    if group:
        gid = int(group[1:]) if group.startswith('+') else grp.getgrnam(group).gr_gid
    if uid == 0 or gid is None:
        return None
    return uid, gid


def warnings(root_path, settings, namespaces_asked):
    """What the settings of a root of uid 0 give away, as sentences for the task's user."""
    said = []
    if settings['user'] in ROOT_NAMES:
        said.append("QEMU of root %s runs as root, with every capability: a guest that escapes QEMU owns the host. "
                    "Leave qemu_conf.user and qemu_conf.group empty to run it as the root's own account" % root_path)
    elif (settings['user'] == _confinement.name(root_path) and os.path.exists(_confinement.KVM)
          and not _confinement.kvm_group()):
        said.append("only root may open %s here (no group may read and write it): guests of root %s run under TCG, "
                    "as QEMU runs as the account %s. For KVM, give /dev/kvm to group kvm, mode 0660, as Debian's "
                    "udev does" % (_confinement.KVM, root_path, settings['user']))
    if 'mount' not in settings['namespaces'] and not namespaces_asked:
        said.append("QEMU of root %s sees the host's /dev: %s. The Security guide (docs/docsite/rst/security.rst) "
                    "lists what a guest can then reach"
                    % (root_path, _confinement.mount_namespace_problem()))
    return said


def is_legacy_default(text):
    """Whether text (bytes) is qemu.conf as an earlier release wrote it for a root of uid 0."""
    return hashlib.sha256(text).hexdigest() in LEGACY_DEFAULTS


def setting(text, key):
    """The string value of key in a qemu.conf (text), or None: what the helper and root_dir
    need to know of the file libvirt reads (user, group), written by root_dir or by hand."""
    value = None
    for line in text.splitlines():
        found = re.match(r'\s*%s\s*=\s*(?:"([^"]*)"|\'([^\']*)\')\s*(#.*)?$' % re.escape(key), line)
        if found:
            value = found.group(1) if found.group(1) is not None else found.group(2)
    return value


def render(settings):
    """qemu.conf text for settings (missing keys from DEFAULTS); ValueError names a bad value."""
    settings = dict(DEFAULTS, **settings)
    account = ['%s = %s' % (key, string(key, settings[key])) for key in ('user', 'group') if settings[key]]
    if settings['user'] in ROOT_NAMES:
        # swtpm as QEMU: libvirt's default account (tss) cannot reach a root's files.
        account += ['swtpm_%s = %s' % (key, string(key, settings[key] or settings['user'])) for key in ('user', 'group')
                    if 'swtpm_' + key not in settings['extra']]
    extra = []
    for key, value in sorted(settings['extra'].items()):
        if not KEY.match(key):
            raise ValueError("qemu.conf setting name %r is not a name libvirt reads: use letters, digits "
                             "and _" % key)
        if key in DEFAULTS:
            raise ValueError("qemu.conf setting '%s' is an option of its own: set it there, not in extra" % key)
        extra.append('%s = %s\n' % (key, raw(key, value)))
    return TEMPLATE % dict(
        account=ACCOUNT % '\n'.join(account) if account else '',
        stdio_handler=string('stdio_handler', settings['stdio_handler']),
        security_driver=string('security_driver', settings['security_driver']),
        cgroup_controllers=strings('cgroup_controllers', settings['cgroup_controllers']),
        namespaces=strings('namespaces', settings['namespaces']),
        extra=''.join(extra))


def string(key, value):
    """value as a qemu.conf string: libvirt's parser has quotes but no escapes."""
    value = str(value)
    if '\n' not in value and '"' not in value:
        return '"%s"' % value
    if '\n' not in value and "'" not in value:
        return "'%s'" % value
    raise ValueError('qemu.conf setting %s=%r holds a newline, or both kinds of quote, which qemu.conf '
                     'cannot hold: give a value without them' % (key, value))


def strings(key, values):
    return '[ %s ]' % ', '.join(string(key, value) for value in values) if values else '[]'


def raw(key, value):
    """An extra setting's value, written as given (strings quoted by the user), one line."""
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, (list, tuple)):
        return strings(key, value)
    value = str(value)
    if '\n' in value:
        raise ValueError('qemu.conf setting %s=%r holds a newline, which would start another setting: '
                         'give it on one line' % (key, value))
    return value


def write_default(root_dir):
    """Write the defaults to a pinned root (a root.RootDir) unless it has a qemu.conf; the settings
    written, or None.

    For a root of uid 0, its QEMU account is created first (_confinement.AccountError)."""
    if root_dir.lexists(PATH):
        return False
    if root_dir.uid == 0:
        _confinement.ensure(root_dir.path)
    settings = settings_for(root_dir.uid, root_dir.path)
    if root_dir.write_file(PATH, render(settings).encode('utf-8'), mode=MODE, replace=False):
        return settings
    return None
