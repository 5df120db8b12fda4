# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Path rules for an embedded root: which paths are allowed and where things live.

Every other layer asks this one; no other file builds a path under a root.
"""


import errno
import fnmatch
import hashlib
import json
import os
import pwd
import re
import signal
import socket
import stat
import time
import uuid

# The layout of a root, relative to it. libvirt owns etc/, lib/, log/ and run/ below the
# names it chooses; this collection adds its own directories and files.
ETC = 'etc'
IMAGES = 'images'
# Base images (downloaded or copied once), which guests' overlays in images/ name relatively.
BASE_IMAGES = IMAGES + '/base'
# Guests' serial consoles, written by QEMU (as the root's QEMU user).
CONSOLE_DIR = 'log/console'
QEMU_CONF = 'etc/qemu.conf'
# The helper's runtime files (socket, start lock, record of the last boot) and its log.
STATE_DIR = 'run/embedvirt'
SOCKET = STATE_DIR + '/helper.sock'
LOCK = STATE_DIR + '/helper.lock'
BOOT_RECORD = STATE_DIR + '/boot-id'
LOG_DIR = 'log/embedvirt'
LOG = LOG_DIR + '/helper.log'
# Salted digests of private secrets' values (libvirt never hands those out).
SECRET_DIGESTS = 'lib/embedvirt/secret-digests'
# Directories a root is made with.
LAYOUT = (ETC, IMAGES, BASE_IMAGES, 'lib', 'lib/embedvirt', 'log', LOG_DIR, 'run', STATE_DIR)
# What QEMU of a root of root's passes through (search, not list) to its guests' files: the
# root, the images, libvirt's lib/qemu (NVRAM, a guest's directory with its master key) and
# the serial consoles. They belong to the group of the root's QEMU account with mode 0710;
# every other directory of the root is root's alone (secrets, the helper's socket and log).
QEMU_PASSAGE = (IMAGES, BASE_IMAGES, 'lib', 'log', CONSOLE_DIR)
PASSAGE_MODE = 0o710
PRIVATE_MODE = 0o700
# What libvirt gives the QEMU account at every open of the driver, as libvirtd does: its
# lib/qemu directories (snapshot and checkpoint metadata, save images, NVRAM, channel
# sockets) and capability cache. The helper gives them back to root, passage only: QEMU
# never writes there itself, and libvirt (as root) trusts what they hold.
LIBVIRT_LENDS = ('lib/qemu', 'lib/qemu/*', 'lib/qemu/channel/target', 'cache/qemu')
# Below them, libvirt's directories of one running guest, which are that guest's QEMU's.
GUEST_DIR = 'domain-*'
# What libvirt makes readable by all (0755) on QEMU's way without QEMU needing it: QEMU's
# logs (libvirt hands QEMU the open file) and the capability cache (probed as root). The
# helper makes them root's alone, so QEMU's account cannot even list them.
LIBVIRT_OPENS = ('log/qemu', 'cache')
# Where libvirt's DAC driver lends guests' files to the QEMU account of a root of root's
# (directories and what is below them): disks, backing images and seeds, serial console logs,
# NVRAM. It gives a file back when its guest stops, except a backing image or a read-only disk
# (they may be shared), which stay the account's. Never the helper's log directory.
LENT_FILES = (IMAGES, 'log', 'lib/qemu/nvram')
# libvirt's: definitions (each rewritten through a <file>.new), the drivers' runtime state
# and pidfiles, and the QEMU driver's per-guest directories.
DEFINITION_DIRS = ('etc/qemu', 'etc/secrets')
SECRETS_DIR = 'etc/secrets'
DRIVER_RUN_DIRS = {'secrets': 'run/secrets', 'qemu': 'run/qemu'}
DRIVER_PIDFILE = 'driver.pid'
QEMU_RUN_DIRS = ('lib/qemu/', 'run/qemu/')
# Where libvirt keeps the UEFI variables of guests whose firmware it chose (<name>_VARS.fd).
NVRAM_DIR = 'lib/qemu/nvram'
# libvirt's links to the definitions of guests it starts when the driver opens (<name>.xml,
# an absolute link to etc/qemu/<name>.xml), and its snapshot metadata (<domain>/<snapshot>.xml).
AUTOSTART_DIR = 'etc/qemu/autostart'
SNAPSHOT_DIR = 'lib/qemu/snapshot'
# A snapshot name: libvirt keeps a snapshot as SNAPSHOT_DIR/<domain>/<name>.xml, and QEMU's
# human monitor (savevm, delvm), to which libvirt hands the name, splits its arguments at
# spaces; a plain word is what both take as it is.
SNAPSHOT_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._+@:-]{0,99}')
# libvirt's managed-save images: a saved guest's memory with its definition inside, paths included.
SAVE_DIR = 'lib/qemu/save'

# What an archive of a root (root_dir state=archived) holds: everything but runtime state.
# These directories are archived empty: run/ (the drivers' pidfiles and state, the helper's
# socket, lock and boot record), the agent sockets' directories, and QEMU's capability
# cache (it describes this host's QEMU; libvirt probes again).
ARCHIVED_EMPTY = ('run', 'lib/qemu/channel', 'cache')
# Left out whole: a running guest's directory (monitor socket, master key), which libvirt
# removes when the guest stops.
NOT_ARCHIVED = ('lib/qemu/domain-*',)
# Files whose text names the root by its absolute path, rewritten when a root is restored
# at another path (patterns per path component): domain, secret, snapshot and checkpoint XML
# and qemu.conf. The marker is written anew; qcow2 backing names are rebased.
NAMES_ROOT = ('etc/qemu/*.xml', 'etc/secrets/*.xml', SNAPSHOT_DIR + '/*/*.xml', 'lib/qemu/checkpoint/*/*.xml',
              QEMU_CONF)

# The file that proves a directory is a root made by this collection (marker_proof says when).
MARKER_NAME = '.embedvirt-root'
MARKER_MODE = 0o600
# What a marker may hold: a few fields (its owner could make it any size).
MARKER_LIMIT = 65536

# Outside every root: the helper code that boot units run, owned by root.
BOOT_HELPER_DIR = '/usr/local/libexec/embedvirt'
BOOT_HELPER = BOOT_HELPER_DIR + '/helper.bundle'

# A UNIX socket path holds at most 107 bytes plus the terminating NUL. The deepest socket
# libvirt 9 puts under a root is a guest agent channel,
# <root>/lib/qemu/channel/target/domain-<id>-<first 20 characters of the name>/org.qemu.guest_agent.0,
# budgeted here for domain ids of up to 4 digits.
SOCKET_PATH_MAX = 107
SOCKET_NAME_CHARACTERS = 20
AGENT_SOCKET_DIR = '/lib/qemu/channel/target/domain-9999-'
AGENT_SOCKET_NAME = '/org.qemu.guest_agent.0'
LONGEST_SOCKET_SUFFIX = AGENT_SOCKET_DIR + 'x' * SOCKET_NAME_CHARACTERS + AGENT_SOCKET_NAME

# The longest root libvirt is given as it is: room for the deepest socket with a name of 20
# ASCII characters. A longer root reaches libvirt through its alias (libvirt_root), a symbolic
# link of at most this length that libvirt uses as the root without resolving it.
DIRECT_ROOT_MAX = SOCKET_PATH_MAX - len(LONGEST_SOCKET_SUFFIX)
# Aliases live where only the root's owner may write: /run/embedvirt for uid 0 (traversable by
# the QEMU accounts, not listable), a 0700 directory of the user's in the sticky /tmp otherwise.
# 8 hex digits of sha256(root path) name one, so that a restarted helper finds the sockets its
# running guests were given; a name taken by another root is refused, never reused.
ALIAS_DIR_UID0 = '/run/embedvirt'
ALIAS_DIR_USER = '/tmp/.ev%d'
ALIAS_HASH_CHARACTERS = 8
ALIAS_PATTERN = r'(?:%s|/tmp/\.ev[0-9]+)/' % re.escape(ALIAS_DIR_UID0)
# What remains of a root's length: qemu keeps an image's backing file name in 1023 bytes, and
# libvirt names the backing files of external snapshots by absolute path.
ROOT_MAX_LENGTH = 700
QCOW2_BACKING_MAX = 1023

# The helper defines a scratch domain under this name prefix and undefines it again (to learn
# libvirt's stored form of a definition); nothing else may use the prefix (a helper removes
# such domains when it starts), and no listing shows one.
PROBE_PREFIX = 'embedvirt-probe-'

# Seconds a child that opens a file as a root's owner may take (an open on a stuck network
# filesystem would block it).
OPEN_AS_TIMEOUT = 30

# Characters a root may not contain: libvirt's URI, systemd's unit syntax, QEMU's option
# syntax or a shell would each read them differently, so they are refused everywhere alike.
UNSAFE_ROOT_CHARACTERS = ' %&#?;,:=\'"\\$`*[]{}<>|!~'


class RootError(Exception):
    """A root path breaks one of the rules; the message names the rule and the fix."""


class EmbedRoot:
    """An embedded driver root and the paths this collection uses inside it."""

    def __init__(self, path):
        self.path = check_root_path(path)

    @property
    def state_dir(self):
        """Private runtime directory of the helper (socket, lock, boot record)."""
        return os.path.join(self.path, STATE_DIR)

    @property
    def socket_path(self):
        return os.path.join(self.path, SOCKET)

    @property
    def lock_path(self):
        return os.path.join(self.path, LOCK)

    @property
    def log_dir(self):
        return os.path.join(self.path, LOG_DIR)

    @property
    def log_path(self):
        return os.path.join(self.path, LOG)

    def join(self, relative):
        """The absolute path of a name of the layout (one of the constants above)."""
        return os.path.join(self.path, relative)

    def driver_pidfile(self, driver):
        """libvirt's own lock of a driver ('secrets' or 'qemu'): held by whichever process has
        the driver open."""
        return os.path.join(self.path, DRIVER_RUN_DIRS[driver], DRIVER_PIDFILE)

    @property
    def driver_pidfiles(self):
        return [self.driver_pidfile(driver) for driver in DRIVER_RUN_DIRS]

    def secret_files(self, secret_uuid):
        """Where libvirt and this collection keep a secret: definition, value, digest."""
        name = str(uuid.UUID(secret_uuid))
        return [os.path.join(self.path, SECRETS_DIR, name + '.xml'), os.path.join(self.path, SECRETS_DIR, name + '.base64'),
                self.secret_digest_path(name)]

    def secret_digest_path(self, secret_uuid):
        return os.path.join(self.path, SECRET_DIGESTS, str(uuid.UUID(secret_uuid)))

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

    def open(self, create=False, uid=None, gid=None, mode=0o700):
        """The root pinned by a directory descriptor (a RootDir), after every check.

        With create, a missing root directory is made, owned by uid/gid (default: the caller).
        """
        self.check_access()
        return RootDir(self.path, open_dir_path(self.path, create, uid, gid, mode))


class RootDir:
    """A root pinned by an open descriptor: every file operation below it goes through
    descriptors of directories checked to belong to the root's owner, never by path, so a
    link or a directory swapped in by anyone cannot redirect it."""

    def __init__(self, path, fd):
        self.path = path
        self.fd = fd
        self._qemu_ids = False  # not looked up yet
        st = os.fstat(fd)
        self.uid, self.gid, self.dev = st.st_uid, st.st_gid, st.st_dev
        try:
            check_private_dir(st, self.uid, path)
        except RootError:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    @property
    def lets_qemu_pass(self):
        """Whether QEMU runs as an account of the root's group, which passes through QEMU_PASSAGE:
        a root of root's whose group (not root's) may search it."""
        st = os.fstat(self.fd)
        return self.uid == 0 and st.st_gid != 0 and bool(st.st_mode & stat.S_IXGRP)

    @property
    def qemu_ids(self):
        """(uid, gid) of the account QEMU of a root of root's runs as by its qemu.conf, which libvirt
        lends guests' files to; None when QEMU runs as root or the owner, or the account does not exist."""
        if self._qemu_ids is False:
            self._qemu_ids = None
            if self.lets_qemu_pass:
                from ansible_collections.embedvirt.libvirt.plugins.module_utils._qemu_conf import qemu_ids  # imports this
                text = self.read_file(QEMU_CONF)
                try:
                    self._qemu_ids = qemu_ids(text.decode('utf-8', 'replace')) if text is not None else None
                except KeyError:
                    pass
        return self._qemu_ids

    @property
    def qemu_uid(self):
        return self.qemu_ids[0] if self.qemu_ids else None

    def owns(self, directory, st):
        """Whether st, of a file in directory (relative to the root), is the root's: its owner's;
        root's or, below LENT_FILES, the root's QEMU account's (libvirt lent it, see LENT_FILES),
        with no other name (a second name would be a hard link to a file elsewhere)."""
        if st.st_uid == self.uid:
            return True
        if st.st_nlink != 1:
            return False
        if st.st_uid == 0:
            return True
        directory = '/'.join(split_relative(directory)) + '/'
        lent = any(directory.startswith(d + '/') for d in LENT_FILES) and not directory.startswith(LOG_DIR + '/')
        return lent and self.qemu_uid is not None and st.st_uid == self.qemu_uid

    def dir_mode(self, relative):
        """The mode a directory of the layout has: PASSAGE_MODE on QEMU's way, else PRIVATE_MODE."""
        return PASSAGE_MODE if relative in QEMU_PASSAGE and self.lets_qemu_pass else PRIVATE_MODE

    def open_to_qemu(self, gid, dry_run=False):
        """Let the QEMU account of group gid through the root and QEMU_PASSAGE (those that exist),
        and nowhere else; the paths changed (or to change)."""
        changed = []
        st = os.fstat(self.fd)
        if st.st_gid != gid or not st.st_mode & stat.S_IXGRP or st.st_mode & (stat.S_IRGRP | stat.S_IWGRP):
            changed.append(self.path)
            if not dry_run:
                os.fchown(self.fd, -1, gid)
                os.fchmod(self.fd, (stat.S_IMODE(st.st_mode) & ~0o070) | stat.S_IXGRP)
                self.gid = gid
        for relative in QEMU_PASSAGE:
            try:
                fd = self.subdir(relative)
            except FileNotFoundError:
                continue
            try:
                st = os.fstat(fd)
                if (st.st_gid, stat.S_IMODE(st.st_mode)) != (gid, PASSAGE_MODE):
                    changed.append(os.path.join(self.path, relative))
                    if not dry_run:
                        os.fchown(fd, -1, gid)
                        os.fchmod(fd, PASSAGE_MODE)
            finally:
                os.close(fd)
        return changed

    def close_to_qemu(self):
        """Make LIBVIRT_OPENS (those that exist) root's alone, mode 0700; the paths changed."""
        changed = []
        for relative in LIBVIRT_OPENS:
            try:
                fd = self.subdir(relative)
            except FileNotFoundError:
                continue
            try:
                if stat.S_IMODE(os.fstat(fd).st_mode) != PRIVATE_MODE:
                    os.fchmod(fd, PRIVATE_MODE)
                    changed.append(os.path.join(self.path, relative))
            finally:
                os.close(fd)
        return changed

    def take_back_from_qemu(self, uid):
        """Give root the directories libvirt gave QEMU's account uid at its open (LIBVIRT_LENDS),
        leaving QEMU passage; the paths changed. Each is a directory of QEMU's when its parent
        is root's again (LIBVIRT_LENDS lists parents first): what QEMU made there becomes root's."""
        changed = []
        for pattern in LIBVIRT_LENDS:
            parent, name = os.path.split(pattern)
            try:
                fd = self.subdir(parent)
            except FileNotFoundError:
                continue
            try:
                names = [n for n in os.listdir(fd) if fnmatch.fnmatchcase(n, name) and not fnmatch.fnmatchcase(n, GUEST_DIR)]
                for entry in names:
                    try:
                        child = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                    except OSError:
                        continue  # files, links (ELOOP), gone: libvirt's directories only
                    try:
                        st = os.fstat(child)
                        if st.st_uid == uid and st.st_dev == self.dev:
                            os.fchown(child, self.uid, self.gid)
                            os.fchmod(child, PASSAGE_MODE)
                            changed.append(os.path.join(self.path, parent, entry))
                    finally:
                        os.close(child)
            finally:
                os.close(fd)
        return changed

    def subdir(self, relative, create=False, mode=None):
        """Descriptor of a directory below the root (caller closes it): each component a
        real directory owned by the root's owner, writable by nobody else; made when create,
        with mode (default: dir_mode)."""
        fd = os.dup(self.fd)
        try:
            parts = split_relative(relative)
            for depth, name in enumerate(parts):
                created = False
                if create:
                    try:
                        os.mkdir(name, mode if mode is not None else self.dir_mode('/'.join(parts[:depth + 1])),
                                 dir_fd=fd)
                        created = True
                    except FileExistsError:
                        pass
                child = open_component(fd, name, os.path.join(self.path, relative))
                os.close(fd)
                fd = child
                if created and os.geteuid() == 0:
                    # Through the descriptor: the name may have been replaced since mkdir. The root's
                    # group as it is now: the helper may have given it to QEMU's account since it was pinned.
                    os.fchown(fd, self.uid, os.fstat(self.fd).st_gid)
                check_private_dir(os.fstat(fd), self.uid, os.path.join(self.path, relative))
            return fd
        except BaseException:
            os.close(fd)
            raise

    def open_file(self, relative, flags=os.O_RDONLY, mode=0o600):
        """Descriptor of a regular file below the root, never through a link or a FIFO. A file
        it creates (O_CREAT) is given to the root's owner; an existing one must be the
        owner's, or root's with no other name (an earlier release made it as root; a second
        name would be a hard link to a file of root's elsewhere), or one libvirt lent the root's
        QEMU account, with no other name (see owns)."""
        directory, name = os.path.split(relative)
        path = os.path.join(self.path, relative)
        dir_fd = self.subdir(directory, create=bool(flags & os.O_CREAT))
        created = False
        try:
            try:
                if flags & os.O_CREAT:
                    try:
                        fd = os.open(name, flags | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
                        created = True
                    except FileExistsError:
                        pass
                if not created:
                    fd = os.open(name, (flags & ~os.O_CREAT) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                                 dir_fd=dir_fd)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise RootError("%s is a symbolic link: refusing to follow it; remove it" % path)
                if e.errno in (errno.ENXIO, errno.EISDIR):  # a FIFO nobody reads, a directory
                    raise RootError('%s is not a regular file: remove it' % path)
                raise
        finally:
            os.close(dir_fd)
        try:
            st = os.fstat(fd)
            if created:
                if os.geteuid() == 0:
                    os.fchown(fd, self.uid, self.gid)
            elif not stat.S_ISREG(st.st_mode):
                raise RootError('%s is not a regular file: remove it' % path)
            elif not self.owns(directory, st):
                raise RootError('%s belongs to uid %d, not to the owner of the root (uid %d), or has other '
                                'names (hard links): remove it' % (path, st.st_uid, self.uid))
            os.set_blocking(fd, True)
            return fd
        except BaseException:
            os.close(fd)
            raise

    def lexists(self, relative):
        """Whether anything (a link too) has this name below the root; its directories checked."""
        return self._in_directory(relative, lambda name, dir_fd: os.stat(name, dir_fd=dir_fd, follow_symlinks=False))

    def remove_file(self, relative):
        """Remove a file below the root (a link goes, never what it points to); whether there was one."""
        return self._in_directory(relative, lambda name, dir_fd: os.unlink(name, dir_fd=dir_fd))

    def _in_directory(self, relative, action):
        """action(name, directory descriptor) for a name below the root; False when it (or its
        directory) does not exist, else True."""
        directory, name = os.path.split(relative)
        try:
            dir_fd = self.subdir(directory)
        except FileNotFoundError:
            return False
        try:
            action(name, dir_fd)
            return True
        except FileNotFoundError:
            return False
        finally:
            os.close(dir_fd)

    def read_file(self, relative, limit=1 << 20):
        """Contents of a file below the root (see open_file), or None when it is missing; a
        file larger than limit bytes is refused (its owner could make it any size)."""
        try:
            fd = self.open_file(relative)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, 'rb') as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise RootError('%s is larger than %d bytes: it is not a file of this collection; remove it'
                            % (os.path.join(self.path, relative), limit))
        return data

    def open_private(self, relative, resume=False):
        """Descriptor (read and write) of a file below the root that only this process's user
        may read and nobody else holds, for data not yet fit for the owner (an unverified
        download): with resume, the one an earlier run left if it still is such a file (at its
        end); else a new one (O_EXCL), whatever had its name removed first. It stays this
        user's, mode 0600, until publish() gives it to the owner: the owner can neither read a
        file of root's nor (fs.protected_hardlinks) link it."""
        if resume:
            try:
                fd = self.open_file(relative, os.O_RDWR)
            except (FileNotFoundError, RootError):
                fd = None
            if fd is not None:
                st = os.fstat(fd)
                if st.st_uid == os.geteuid() and st.st_nlink == 1 and not st.st_mode & 0o077:
                    os.lseek(fd, 0, os.SEEK_END)
                    return fd
                os.close(fd)
        self.remove_file(relative)
        directory, name = os.path.split(relative)
        dir_fd = self.subdir(directory)
        try:
            return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                           dir_fd=dir_fd)
        finally:
            os.close(dir_fd)

    def publish(self, fd, relative, target):
        """Give the file fd of open_private (named relative) to the root's owner under the name
        target in the same directory."""
        if os.geteuid() == 0:
            os.fchown(fd, self.uid, self.gid)
        os.fsync(fd)
        self._same_file(fd, relative, lambda name, dir_fd: os.rename(
            name, os.path.basename(target), src_dir_fd=dir_fd, dst_dir_fd=dir_fd))

    def discard(self, fd, relative):
        """Destroy the file fd of open_private: its data first, so a hard link anyone made to
        it keeps nothing, then its name."""
        os.ftruncate(fd, 0)
        self._same_file(fd, relative, lambda name, dir_fd: os.unlink(name, dir_fd=dir_fd))

    def _same_file(self, fd, relative, action):
        """action(name, directory descriptor) while relative still names the file fd; else
        RootError (the owner moved something else there)."""
        mine = os.fstat(fd)

        def checked(name, dir_fd):
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino):
                raise RootError('%s was replaced while this task wrote it: run the task again'
                                % os.path.join(self.path, relative))
            action(name, dir_fd)
        if not self._in_directory(relative, checked):
            raise RootError('%s was removed while this task wrote it: run the task again'
                            % os.path.join(self.path, relative))

    def write_file(self, relative, data, mode=0o600, replace=True):
        """Write a file below the root whole or not at all (see write_whole), owned by the
        root's owner; with replace=False only when it does not exist yet. Whether it wrote."""
        directory, name = os.path.split(relative)
        dir_fd = self.subdir(directory, create=True)
        try:
            owner = (self.uid, self.gid) if os.geteuid() == 0 else None
            return write_whole(dir_fd, name, lambda f: f.write(data), mode, replace, owner)
        finally:
            os.close(dir_fd)


def write_whole(dir_fd, name, write, mode, replace, owner=None):
    """Make the file name in the directory dir_fd whole or not at all: write(f) fills a new
    temporary file there (never through a link), which is then renamed over name, or with
    replace=False linked to name only when nothing has that name. Whether it wrote."""
    tmp = '.%s.%s.tmp' % (name, uuid.uuid4().hex[:8])
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, 'wb') as f:
            if owner is not None:
                os.fchown(f.fileno(), *owner)
            os.fchmod(f.fileno(), mode)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return True
        try:
            os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            return False
        return True
    finally:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass


def open_regular(path):
    """Descriptor for reading the regular file at path, as this process may open it. What is
    there is looked at through a descriptor that only names it (O_PATH) before it is opened:
    a FIFO would block, and opening a device can act."""
    handle = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise RootError('not a regular file (a FIFO, a device or a directory)')
        return os.open('/proc/self/fd/%d' % handle, os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    finally:
        os.close(handle)


def user_groups(uid, gid):
    """The groups the user uid has when it logs in (gid, its primary group, among them)."""
    try:
        return os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)
    except KeyError:
        return [gid]


def open_as_user(path, uid, gid, timeout=OPEN_AS_TIMEOUT):
    """open_regular(path) as the user uid (with gid and its groups) could: a task run as root
    never reads for that user what it may not read itself (a file of root's, through a link or a
    hard link or not). A forked child takes the user's ids, opens, and passes the descriptor
    back; directly when this process is not root, or uid is root. OSError or RootError."""
    if os.geteuid() != 0 or uid == 0:
        return open_regular(path)
    groups = user_groups(uid, gid)
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the child: system calls only, then _exit (no clean-up of the parent's state)
        try:
            ours.close()
            try:
                os.setgroups(groups)
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
                socket.send_fds(theirs, [b'+'], [open_regular(path)])
            except (OSError, RootError) as e:
                theirs.sendall(b'-' + (e.strerror if isinstance(e, OSError) else str(e)).encode('utf-8', 'replace'))
        finally:
            os._exit(0)
    theirs.close()
    try:
        ours.settimeout(timeout)
        try:
            message, fds, dummy, dummy = socket.recv_fds(ours, 4096, 1)
        except socket.timeout:
            raise RootError('opening it as uid %d took longer than %d s (a stuck network filesystem?)'
                            % (uid, timeout))
    finally:
        ours.close()
        end_child(pid)
    if not fds:
        raise RootError(message[1:].decode('utf-8', 'replace') or 'the process that opened it as uid %d died' % uid)
    os.set_inheritable(fds[0], False)
    return fds[0]


def end_child(pid):
    """Kill and reap a child; one stuck in the kernel for more than 5 s is left (a zombie)."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 5
    while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.time() < deadline:
        time.sleep(0.01)


def marker_fields(path, lifecycle):
    """What a root's marker says (and what a marker must say to be this root's)."""
    return {'root': path, 'created_by': 'embedvirt.libvirt', 'lifecycle': lifecycle}


def write_marker(root_dir, lifecycle, created=None, replace=True):
    """Mark a pinned root as one of this collection's; whether it wrote."""
    fields = dict(marker_fields(root_dir.path, lifecycle),
                  created=created or time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
    return root_dir.write_file(MARKER_NAME, json.dumps(fields, indent=2, sort_keys=True).encode(),
                               mode=MARKER_MODE, replace=replace)


def marker_proof(dir_fd, path):
    """(marker, None) when the marker in the directory dir_fd proves that this directory, at
    path, is a root of this collection; else (None, why not). The one rule for every reader
    of markers (purge, archive, adoption, the rule that roots do not nest).

    A marker proves only what its writer could prove: a regular file (not a link, with no
    other name) of the directory's owner that nobody else may write, naming path, in a
    directory that nobody but that owner may write. Anyone who may write the directory (the
    group, others, a shared directory such as /tmp) could have put the file there, and a
    marker of anyone but the directory's owner is somebody else's claim. Never follows a
    link, never blocks on a FIFO, reads at most MARKER_LIMIT bytes."""
    where = os.path.join(path, MARKER_NAME)
    directory = os.fstat(dir_fd)
    if directory.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None, ("'%s' is writable by group or others (mode %04o), so anyone could have put %s in it"
                      % (path, stat.S_IMODE(directory.st_mode), MARKER_NAME))
    try:
        fd = os.open(MARKER_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None, 'there is no file %s' % MARKER_NAME
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None, '%s is a symbolic link' % where
        return None, 'cannot read %s (%s)' % (where, e.strerror)
    with os.fdopen(fd, 'rb') as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, '%s is not a regular file' % where
        if st.st_uid != directory.st_uid:
            return None, ('%s belongs to uid %d, not to the owner of the root (uid %d), who alone could have '
                          'marked it' % (where, st.st_uid, directory.st_uid))
        if st.st_nlink != 1:
            return None, '%s has other names (hard links)' % where
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None, ('%s is writable by group or others (mode %04o), so anyone could have written it'
                          % (where, stat.S_IMODE(st.st_mode)))
        marker = parse_marker(f.read(MARKER_LIMIT + 1), path)
    if marker is None:
        return None, '%s does not name this root' % where
    return marker, None


def parse_marker(data, path):
    """The fields of a marker's bytes when they are a JSON object of at most MARKER_LIMIT bytes
    naming the root path, else None (what its owner wrote may be anything)."""
    try:
        marker = json.loads(data) if len(data) <= MARKER_LIMIT else None
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        marker = None
    return marker if isinstance(marker, dict) and marker.get('root') == path else None


def check_root_path(path):
    """Return the root path if it satisfies every rule, else raise RootError."""
    if not isinstance(path, str) or not path:
        raise RootError('root must be a non-empty path such as /srv/vms')
    if not os.path.isabs(path):
        raise RootError("root '%s' is relative: libvirt needs an absolute path such as "
                        "/srv/vms" % path)
    if '\0' in path or '\n' in path:
        raise RootError('root %r contains a NUL or newline character: choose a plain path' % path)
    bad = sorted(set(c for c in path if c in UNSAFE_ROOT_CHARACTERS or not c.isprintable()))
    if bad:
        raise RootError('root %r contains %s, which libvirt URIs, systemd units or QEMU options '
                        'read differently: use letters, digits and / . _ - + @ only'
                        % (path, ' '.join(repr(c) for c in bad)))
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
            "root '%s' is %d bytes long, but qemu keeps an image's backing file name in %d bytes and "
            "libvirt names the backing files of snapshots by absolute path below the root: use a root "
            "of at most %d bytes" % (path, len(path.encode('utf-8')), QCOW2_BACKING_MAX, ROOT_MAX_LENGTH))
    return path


def libvirt_root(path, uid):
    """The root as libvirt is given it by a helper running as uid: the path itself, or, when the
    sockets libvirt makes below it would not fit, its alias (see DIRECT_ROOT_MAX)."""
    if len(path.encode('utf-8')) <= DIRECT_ROOT_MAX:
        return path
    directory = ALIAS_DIR_UID0 if uid == 0 else ALIAS_DIR_USER % uid
    return '%s/%s' % (directory, hashlib.sha256(path.encode('utf-8')).hexdigest()[:ALIAS_HASH_CHARACTERS])


def alias_regex(path):
    """A pattern (of str) of the aliases the root path may have had, for any owner."""
    name = hashlib.sha256(path.encode('utf-8')).hexdigest()[:ALIAS_HASH_CHARACTERS]
    return ALIAS_PATTERN + name + '(?=/|$)'


def real_path(path, root):
    """A path libvirt reported, with the root's alias (if it starts with one) replaced by the root."""
    if len(root.encode('utf-8')) <= DIRECT_ROOT_MAX:
        return path
    return re.sub('^' + alias_regex(root), lambda _match: root, path, count=1)


def ensure_alias(path):
    """Make (or find) the alias of root path for the calling user, and return what libvirt is to be
    given (libvirt_root). Called by the helper, which runs as the root's owner: the alias directory
    must be this user's and writable by nobody else, and the alias a link to this very root."""
    uid = os.geteuid()
    alias = libvirt_root(path, uid)
    if alias == path:
        return path
    directory = os.path.dirname(alias)
    try:
        os.mkdir(directory, 0o711 if uid == 0 else PRIVATE_MODE)
    except FileExistsError:
        pass
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o066:
        raise RootError("'%s', where the short alias of root %s belongs, is not a directory of uid %d that only "
                        "it may read and write (mode %04o, uid %d): remove it; the next task makes it again"
                        % (directory, path, uid, stat.S_IMODE(st.st_mode), st.st_uid))
    try:
        os.symlink(path, alias)
    except FileExistsError:
        target = os.readlink(alias) if os.path.islink(alias) else None
        if target != path:
            raise RootError("'%s', the short alias libvirt is to reach root %s through, is taken (%s): if no "
                            "helper of that root runs, remove it; else use a root of at most %d bytes, or another path"
                            % (alias, path, 'a link to %s' % target if target else 'not a link', DIRECT_ROOT_MAX))
    return alias


def remove_alias(path, owner):
    """Remove root path's alias, once the root is gone, if it is the calling user's (made by a helper
    of theirs, the root's owner) and still names that root; another user's alias is left alone."""
    alias = libvirt_root(path, owner)
    if alias == path or os.geteuid() != owner:
        return
    try:
        fd = os.open(os.path.dirname(alias), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if os.fstat(fd).st_uid == owner and os.readlink(os.path.basename(alias), dir_fd=fd) == path:
            os.unlink(os.path.basename(alias), dir_fd=fd)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.EINVAL):  # gone, or not a link
            raise
    finally:
        os.close(fd)


def check_private_dir(st, uid, path):
    """Raise RootError unless st is a directory of uid that nobody else may write to."""
    if not stat.S_ISDIR(st.st_mode):
        raise RootError("'%s' is not a directory: remove what is there" % path)
    if st.st_uid != uid:
        raise RootError("'%s' belongs to uid %d, not to the owner of the root (uid %d), so it is not "
                        "known to be the owner's: if it is (an earlier release made it), give it to the "
                        "owner (chown -R %d '%s'), else remove it" % (path, st.st_uid, uid, uid, path))
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RootError("'%s' is writable by group or others (mode %04o): anyone could replace "
                        "what is in it; chmod go-w it" % (path, stat.S_IMODE(st.st_mode)))


def split_relative(relative):
    names = [name for name in relative.split('/') if name and name != '.']
    if '..' in names or relative.startswith('/'):
        raise ValueError('not a path below the root: %r' % relative)
    return names


def open_component(dir_fd, name, path):
    """Descriptor of the directory name in dir_fd, never through a symbolic link."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise RootError("'%s' has a symbolic link or a file where a directory belongs "
                            "(%s): refusing to follow it; remove it" % (path, name))
        raise


def open_dir_path(path, create=False, uid=None, gid=None, mode=0o700):
    """Descriptor of the directory at the absolute path, resolved one component at a time.

    A symbolic link on the way is followed only when it belongs to root or to the caller
    (anyone else could point it elsewhere between a check and its use); the directory
    itself must not be a link. With create, missing directories are made: parents as
    ordinary directories (0755), the last one with mode and given to uid/gid. Then every
    directory on the way must be one that only root or the root's owner can change (see
    check_ancestors).
    """
    names = [name for name in path.split('/') if name]
    fd = os.open('/', os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    hops = 0
    steps = []  # (directory, entry in it) passed on the way down
    try:
        while names:
            name = names.pop(0)
            last = not names
            created = False
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise RootError("root '%s' does not exist: create it first (the "
                                    "embedvirt.libvirt.root role or root_dir module), or correct "
                                    "the path" % path)
                os.mkdir(name, mode if last else 0o755, dir_fd=fd)
                created = last
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                if last:
                    raise RootError("root '%s' is a symbolic link: give the real path of the "
                                    "directory" % path)
                if st.st_uid not in (0, os.geteuid()):
                    raise RootError("root '%s' goes through the symbolic link '%s', which belongs to "
                                    "uid %d (neither root nor you), who could point it anywhere: "
                                    "give a path without it" % (path, name, st.st_uid))
                hops += 1
                if hops > 40:
                    raise RootError("root '%s': too many symbolic links" % path)
                target = os.readlink(name, dir_fd=fd)
                if target.startswith('/'):
                    os.close(fd)
                    fd = os.open('/', os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                names[:0] = [part for part in target.split('/') if part]
                continue
            if name == '..' or name == '.':
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            else:
                child = open_component(fd, name, path)
                steps.append((os.fstat(fd), os.fstat(child)))
            os.close(fd)
            fd = child
            if created:
                # Through the descriptor: the name may have been replaced since mkdir.
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
                os.fchmod(fd, mode)
        check_ancestors(path, steps, os.fstat(fd).st_uid)
        return fd
    except BaseException:
        os.close(fd)
        raise


def check_ancestors(path, steps, owner):
    """Raise RootError unless every directory above the root can be changed only by root or
    the root's owner: a directory anyone else may write to lets them move the root away and
    put one of their own in its place. In a sticky directory (such as /tmp) only an entry's
    owner may move it, so it is enough that the entry is root's or the owner's."""
    for directory, entry in steps:
        trusted = (0, owner)
        others_write = directory.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if directory.st_uid not in trusted or (
                others_write and not (directory.st_mode & stat.S_ISVTX and entry.st_uid in trusted)):
            raise RootError("root '%s' lies below a directory of uid %d with mode %04o: that user (or, "
                            "with that mode, others) could move the root away and put their own in its "
                            "place; use a root below directories of root's or of the root's owner only"
                            % (path, directory.st_uid, stat.S_IMODE(directory.st_mode)))


def domain_name_problem(name, root=None):
    """What forbids giving libvirt this domain name, as (problem, fix), or None.

    libvirt builds paths from domain names (etc/qemu/<name>.xml, lib/qemu/snapshot/<name>,
    log/qemu/<name>.log): '.' and '..' name directories, and libvirt 9.0's clean-up after a
    failed define then deletes other guests' snapshot metadata or all of lib/qemu. With
    root, the bytes the name adds to that root's deepest socket path are counted too.
    """
    fix = "choose a name without '/' or control characters, other than '.' and '..'"
    if not isinstance(name, str) or not name:
        return 'the domain name is empty', 'give the domain a name'
    if name in ('.', '..'):
        return ("domain name '%s' names a directory: libvirt makes paths of domain names, so it would "
                "act on the directories that hold the other guests' files" % name, fix)
    if '/' in name:
        return "domain name %r contains '/': libvirt makes paths of domain names" % name, fix
    control = sorted(set(c for c in name if ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f))
    if control:
        return ('domain name %r contains the control character(s) %s, which the paths, logs and '
                'command lines built from it misread' % (name, ' '.join(repr(c) for c in control)), fix)
    if name.startswith(PROBE_PREFIX):
        return ("domain names starting with '%s' are reserved: this collection defines scratch "
                "domains under them and removes any it finds" % PROBE_PREFIX, 'choose another name')
    head = name[:SOCKET_NAME_CHARACTERS]
    try:
        head_bytes = len(head.encode('utf-8'))
    except UnicodeEncodeError:
        return 'domain name %r is not valid UTF-8' % name, fix
    if root is not None:
        # An aliased root's sockets are below its alias, of at most DIRECT_ROOT_MAX bytes.
        base = root if len(root.encode('utf-8')) <= DIRECT_ROOT_MAX else 'x' * DIRECT_ROOT_MAX
        size = len((base + AGENT_SOCKET_DIR + head + AGENT_SOCKET_NAME).encode('utf-8'))
        if size > SOCKET_PATH_MAX:
            return ("domain name '%s' is too long for root %s in bytes: libvirt puts its first %d "
                    "characters (%d bytes) in the guest agent socket path, which is then %d bytes "
                    "long (with a domain id of 4 digits), and a UNIX socket path holds at most %d bytes"
                    % (name, root, SOCKET_NAME_CHARACTERS, head_bytes, size, SOCKET_PATH_MAX),
                    'use a name whose first %d characters take at most %d bytes (an ASCII character '
                    'takes 1 byte, most CJK characters 3)%s'
                    % (SOCKET_NAME_CHARACTERS, head_bytes - (size - SOCKET_PATH_MAX),
                       ', or a root %d bytes shorter' % (size - SOCKET_PATH_MAX) if base == root else ''))
    return None


def snapshot_name_problem(name):
    """What forbids giving libvirt this snapshot name (see SNAPSHOT_NAME), as (problem, fix), or None."""
    if isinstance(name, str) and SNAPSHOT_NAME.fullmatch(name):
        return None
    return ('snapshot name %r is not usable: libvirt makes a file name of it and QEMU reads it as one word' % name,
            'give 1 to 100 letters, digits and . _ + @ : -, starting with a letter or digit')
