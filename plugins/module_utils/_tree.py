# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Walking a root's tree as a purge or an archive needs: one directory descriptor at a time,
never across a mount point or onto another filesystem, never through a link; and finding
what else holds the root (mount points, an enclosing root, its guests' QEMU processes).
"""


import os
import re
import stat

from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import QEMU_RUN_DIRS, RootError, root_regex


def unescape_mountinfo(field):
    """A path of /proc/self/mountinfo: the kernel writes space, tab, newline and \\ as \\ooo."""
    return re.sub(br'\\([0-7]{3})', lambda m: bytes([int(m.group(1), 8)]), field).decode('utf-8', 'surrogateescape')


def mount_points(path):
    """Mount points at or below path, as this process's mount namespace sees them.

    The only way to find a bind mount of the root's own filesystem: its st_dev is the same."""
    found = []
    with open('/proc/self/mountinfo', 'rb') as f:
        for line in f:
            point = unescape_mountinfo(line.split(b' ')[4])
            if point == path or point.startswith(path + '/'):
                found.append(point)
    return found


# Directory descriptors a walk keeps open: a tree thousands of levels deep would otherwise
# need as many (the soft limit is often 1024); shallower ones are opened again from the root.
HELD_DIRS = 64


class MountAppeared(RootError):
    """A directory met during a walk is on another filesystem than the root."""

    def __init__(self, path):
        super().__init__(path)
        self.path = path


class DirStack:
    """The directories from a pinned root down to the one a walk is in, each entered by name
    through its parent's descriptor: never through a link, never onto another filesystem
    (MountAppeared). Only the deepest HELD_DIRS stay open."""

    def __init__(self, root_fd, path, dev):
        self.root_fd, self.root_path, self.dev = root_fd, path, dev
        self.names = []
        self.fds = []

    @property
    def path(self):
        return os.path.join(self.root_path, *self.names)

    @property
    def fd(self):
        if not self.names:
            return self.root_fd
        if self.fds[-1] is None:
            self.reopen()
        return self.fds[-1]

    def open(self, parent_fd, name):
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        if os.fstat(fd).st_dev != self.dev:
            os.close(fd)
            raise MountAppeared(os.path.join(self.path, name))
        return fd

    def enter(self, name):
        fd = self.open(self.fd, name)
        self.names.append(name)
        self.fds.append(fd)
        if len(self.fds) > HELD_DIRS and self.fds[-HELD_DIRS - 1] is not None:
            os.close(self.fds[-HELD_DIRS - 1])
            self.fds[-HELD_DIRS - 1] = None

    def leave(self):
        """Go up; the name of the directory left."""
        fd = self.fds.pop()
        if fd is not None:
            os.close(fd)
        return self.names.pop()

    def reopen(self):
        """Open the closed descriptors again, from the root down (those kept are the deepest)."""
        names, self.names, self.fds = self.names, [], []
        for name in names:
            self.enter(name)

    def close(self):
        while self.names:
            self.leave()


def other_filesystems(fd, path, dev):
    """Paths below the directory fd (at path) on a device other than dev, found by a walk that
    never follows a link and does not go into what it finds."""
    found = []
    dirs = DirStack(fd, path, dev)
    try:
        todo = [same_filesystem_dirs(dirs, found)]  # per level: subdirectories still to walk
        while todo:
            if not todo[-1]:
                todo.pop()
                if dirs.names:
                    dirs.leave()
                continue
            name = todo[-1].pop()
            try:
                dirs.enter(name)
            except MountAppeared as e:  # mounted since the scan
                found.append(e.path)
                continue
            todo.append(same_filesystem_dirs(dirs, found))
    finally:
        dirs.close()
    return found


def same_filesystem_dirs(dirs, found):
    """Names of the subdirectories of dirs' current directory on the root's filesystem; paths
    of its entries on another one go to found."""
    subdirs = []
    with os.scandir(dirs.fd) as entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if st.st_dev != dirs.dev:
                found.append(os.path.join(dirs.path, entry.name))
            elif stat.S_ISDIR(st.st_mode):
                subdirs.append(entry.name)
    return subdirs


def delete_tree(dirs, name):
    """Delete the directory name in dirs' current directory and everything below it, by
    descriptors: links are removed, never followed; a directory on another filesystem stops
    the delete (MountAppeared) before anything in it is touched. Iterative, so any depth."""
    depth = len(dirs.names)
    dirs.enter(name)
    try:
        while len(dirs.names) > depth:
            subdir = None
            with os.scandir(dirs.fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        subdir = entry.name
                        break
                    os.unlink(entry.name, dir_fd=dirs.fd)
            if subdir is not None:
                dirs.enter(subdir)
            else:
                os.rmdir(dirs.leave(), dir_fd=dirs.fd)
    finally:
        while len(dirs.names) > depth:
            dirs.leave()


def is_guest_of(cmdline, root):
    """Whether a command line (NUL-separated, as in /proc/<pid>/cmdline) is a QEMU guest of
    root: a qemu-system-* whose monitor socket or pidfile is in the root's lib/qemu or
    run/qemu. Not qemu-img or qemu-nbd, nor a guest of another root with a disk here."""
    argv = cmdline.split(b'\0')
    if not os.path.basename(argv[0]).startswith(b'qemu-system'):
        return False
    # A path starts an argument or an option value (path=...; a root holds no comma, which QEMU
    # would double); a long root's guests name its alias.
    dirs = root_regex(root).encode() + b'/(?:' + b'|'.join(re.escape(d.encode()) for d in QEMU_RUN_DIRS) + b')'
    return any(re.search(b'(?:^|[=,])' + dirs, arg) for arg in argv[1:])


def qemu_processes(root):
    """pids of QEMU guests of root (see is_guest_of)."""
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as f:
                cmdline = f.read()
        except OSError:
            continue
        if is_guest_of(cmdline, root):
            pids.append(int(entry))
    return pids
