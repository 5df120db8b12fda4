# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A root's boot unit: the systemd unit that starts its helper at boot (named as systemd-escape
--path names it, quoted as systemd reads it) and the helper's code it reads, installed where
only uid 0 may change it.
"""


import hashlib
import os
import stat
import string

from ansible_collections.embedvirt.libvirt.plugins.module_utils._bundle import BOOTSTRAP
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import helper_argv
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import BOOT_HELPER, BOOT_HELPER_DIR, RootError


# systemd-escape --path --template=embedvirt-helper@.service <root>
BOOT_UNIT = 'embedvirt-helper@%s.service'
SYSTEMD_UNITS = '/etc/systemd/system'
# A unit name holds 255 characters: a root whose escaped path does not fit is named by a hash.
UNIT_NAME_MAX = 255
# What systemd leaves unescaped in a unit name; everything else becomes \xNN per byte.
UNIT_NAME_PLAIN = frozenset(string.ascii_letters + string.digits + ':_.')


def systemd_escape_path(path):
    """The unit name part systemd-escape --path makes of a normalised absolute path."""
    relative = path.strip('/')
    if not relative:
        return '-'
    escaped = []
    for index, byte in enumerate(relative.encode('utf-8')):
        char = chr(byte)
        if char == '/':
            escaped.append('-')
        elif char in UNIT_NAME_PLAIN and not (index == 0 and char == '.'):
            escaped.append(char)
        else:
            escaped.append('\\x%02x' % byte)
    return ''.join(escaped)


def systemd_quote(argument):
    """One word of a unit's command line (systemd.syntax(7)): quoted, with C escapes for
    backslash and quote, and specifiers (%) and variables ($) doubled."""
    return '"%s"' % (argument.replace('\\', '\\\\').replace('"', '\\"')
                     .replace('%', '%%').replace('$', '$$'))


def boot_unit(path, python):
    """The systemd unit that starts path's helper at boot: its name, file, link that enables
    it, and ExecStart, which reads the helper's bundle from BOOT_HELPER (StandardInput=file:)."""
    name = BOOT_UNIT % systemd_escape_path(path)
    if len(name) > UNIT_NAME_MAX:
        name = BOOT_UNIT % hashlib.sha256(path.encode('utf-8')).hexdigest()[:16]
    argv = [python, '-I', '-c', BOOTSTRAP] + helper_argv(path, 0)
    return dict(name=name, path=os.path.join(SYSTEMD_UNITS, name),
                wants=os.path.join(SYSTEMD_UNITS, 'multi-user.target.wants', name),
                exec_start=' '.join(systemd_quote(a) for a in argv), helper=BOOT_HELPER)


def install_boot_helper(bundle, check_mode):
    """Put the helper's bundle where boot units read it; whether it changed.

    Owned by uid 0 outside every root, in a directory only uid 0 may change, so that no
    root's owner can change what a unit starts; replaced whole (a unit starting meanwhile
    reads the old or the new bundle).
    """
    try:
        fd = os.open(BOOT_HELPER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, 'rb') as f:
            st = os.fstat(f.fileno())
            if st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o644 and f.read(len(bundle) + 1) == bundle:
                return False
    except FileNotFoundError:
        pass
    if check_mode:
        return True
    os.makedirs(BOOT_HELPER_DIR, mode=0o755, exist_ok=True)
    st = os.lstat(BOOT_HELPER_DIR)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise RootError('%s is not a directory that only root may change: remove it (the next run makes it '
                        'again)' % BOOT_HELPER_DIR)
    tmp = '%s.%d.tmp' % (BOOT_HELPER, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, 'wb') as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(bundle)
        os.replace(tmp, BOOT_HELPER)
    except BaseException:
        os.unlink(tmp)
        raise
    return True
