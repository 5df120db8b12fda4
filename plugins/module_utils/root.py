# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Path rules for an embedded root: which paths are allowed and where things live.

Every other layer asks this one; no other file builds a path under a root.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

# A UNIX socket path holds at most 107 bytes plus the terminating NUL.
SOCKET_PATH_MAX = 107

# The deepest socket libvirt 9 puts under a root is the guest agent channel:
# <root>/lib/qemu/channel/target/domain-<id>-<first 20 chars of name>/org.qemu.guest_agent.0
# We budget for domain ids up to 4 digits.
LONGEST_SOCKET_SUFFIX = '/lib/qemu/channel/target/domain-9999-' + 'x' * 20 + '/org.qemu.guest_agent.0'
ROOT_MAX_LENGTH = SOCKET_PATH_MAX - len(LONGEST_SOCKET_SUFFIX)

# The file that proves a directory is a root made by this collection (see lifecycle.py).
MARKER_NAME = '.embedvirt-root'


class RootError(Exception):
    """A root path breaks one of the rules; the message names the rule and the fix."""


class EmbedRoot:
    """An embedded driver root and the paths this collection uses inside it."""

    def __init__(self, path):
        self.path = check_root_path(path)

    @property
    def state_dir(self):
        """Private runtime directory of the helper (socket, lock, helper code)."""
        return os.path.join(self.path, 'run', 'embedvirt')

    @property
    def socket_path(self):
        return os.path.join(self.state_dir, 'helper.sock')

    @property
    def lock_path(self):
        return os.path.join(self.state_dir, 'helper.lock')

    @property
    def log_dir(self):
        return os.path.join(self.path, 'log', 'embedvirt')

    @property
    def log_path(self):
        return os.path.join(self.log_dir, 'helper.log')

    @property
    def driver_pidfiles(self):
        """libvirt's own locks: held by whichever process has the driver open."""
        return [os.path.join(self.path, 'run', driver, 'driver.pid') for driver in ('secrets', 'qemu')]

    def helper_code_path(self, version):
        return os.path.join(self.state_dir, 'helper-%s.py' % version[:16])

    def owner_uid(self):
        """uid that owns the root directory, or None while it does not exist."""
        try:
            return os.stat(self.path).st_uid
        except FileNotFoundError:
            return None

    def check_access(self):
        """Raise RootError unless the root is missing or a directory this user may use."""
        if os.path.lexists(self.path) and not os.path.isdir(self.path):
            raise RootError("root '%s' exists and is not a directory: give the path of a "
                            "directory, or remove the file" % self.path)
        owner = self.owner_uid()
        uid = os.geteuid()
        if owner is not None and uid != 0 and owner != uid:
            raise RootError("root '%s' belongs to uid %d, not to the user running this task "
                            "(uid %d): run the task as that user (become_user) or as root, "
                            "or use a root of your own" % (self.path, owner, uid))

    def check_exists(self):
        """Raise RootError unless the root directory is there (for users that must not create it)."""
        if not os.path.isdir(self.path):
            raise RootError("root '%s' does not exist: create it first (the embedvirt.libvirt.root role "
                            "or root_dir module), or correct the path" % self.path)

    def prepare(self):
        """Create the root (if missing) and the helper's private directories.

        Checks ownership first, so a root that belongs to somebody else is not touched.
        """
        self.check_access()
        for directory in (self.path, self.state_dir, self.log_dir):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(self.state_dir, 0o700)


def check_root_path(path):
    """Return the root path if it satisfies every rule, else raise RootError."""
    if not isinstance(path, str) or not path:
        raise RootError('root must be a non-empty path such as /srv/vms')
    if not os.path.isabs(path):
        raise RootError("root '%s' is relative: libvirt needs an absolute path such as "
                        "/srv/vms" % path)
    if '\0' in path or '\n' in path:
        raise RootError('root %r contains a NUL or newline character: choose a plain path' % path)
    if '..' in path.split('/'):
        raise RootError("root '%s' contains '..': give the path without it" % path)
    normalised = os.path.normpath(path)
    if normalised.startswith('//'):
        normalised = normalised[1:]
    if normalised == '/':
        raise RootError("root '/' is not allowed: libvirt would own the whole filesystem; "
                        "use a directory such as /srv/vms")
    if normalised != path:
        raise RootError("root '%s' is not normalised: use '%s'" % (path, normalised))
    if len(path.encode('utf-8')) > ROOT_MAX_LENGTH:
        raise RootError(
            "root '%s' is %d bytes long, but libvirt creates UNIX sockets up to %d bytes "
            "below it (guest agent channel) and a socket path may hold %d bytes: use a root "
            "of at most %d bytes, such as /srv/vms"
            % (path, len(path.encode('utf-8')), len(LONGEST_SOCKET_SUFFIX),
               SOCKET_PATH_MAX, ROOT_MAX_LENGTH))
    return path
