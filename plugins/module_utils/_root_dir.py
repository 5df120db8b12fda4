# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A root on disk: its paths (EmbedRoot), and the root pinned by a directory descriptor (RootDir),
through which every file operation below it goes: descriptors of directories checked to belong
to the root's owner, never a path, never a link. The layout and the rules are _root's.
"""


import errno
import fnmatch
import os
import stat
import uuid

from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import (
    DRIVER_PIDFILE, DRIVER_RUN_DIRS, GUEST_DIR, LENT_FILES, LIBVIRT_LENDS, LIBVIRT_OPENS, LOCK, LOG, LOG_DIR,
    PASSAGE_MODE, PRIVATE_MODE, QEMU_CONF, QEMU_PASSAGE, SECRETS_DIR, SECRET_DIGESTS, SOCKET, STATE_DIR, RootError,
    check_root_path)


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

    def driver_holder(self, rootdir):
        """pid named by one of libvirt's driver pidfiles of the root (rootdir, this root
        pinned), or None."""
        for pidfile in self.driver_pidfiles:
            try:
                text = rootdir.read_file(os.path.relpath(pidfile, self.path), limit=64)
                return int(text.strip()) if text else None
            except (RootError, OSError, ValueError):
                continue
        return None

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
        a root of uid 0 whose group (not uid 0's) may search it."""
        st = os.fstat(self.fd)
        return self.uid == 0 and st.st_gid != 0 and bool(st.st_mode & stat.S_IXGRP)

    @property
    def qemu_ids(self):
        """(uid, gid) of the account QEMU of a root of uid 0 runs as by its qemu.conf, which libvirt
        lends guests' files to; None when QEMU runs as uid 0 or the owner, or the account does not exist."""
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
        """Make LIBVIRT_OPENS (those that exist) uid 0's alone, mode 0700; the paths changed."""
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
        is uid 0's again (LIBVIRT_LENDS lists parents first): what QEMU made there becomes uid 0's."""
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
        owner's, or uid 0's with no other name (an earlier release made it as uid 0; a second
        name would be a hard link to a file of uid 0 elsewhere), or one libvirt lent the root's
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
        file of uid 0 nor (fs.protected_hardlinks) link it."""
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
    directory on the way must be one that only uid 0 or the root's owner can change (see
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
    """Raise RootError unless every directory above the root can be changed only by uid 0 or
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
