# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A root's marker (MARKER_NAME): what proves a directory is a root of this collection, which
root_dir and the root role purge only then, and which no root inside another root can prove.
"""


import errno
import json
import os
import stat
import time

from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import MARKER_LIMIT, MARKER_MODE, MARKER_NAME


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


def proven_marker(root_dir):
    """(marker, None) when the marker proves the pinned root is one of this collection's,
    else (None, why not): marker_proof's rule, and no root encloses it (roots do not nest,
    so a marker inside another root, say in a directory a user was given in root's root,
    proves nothing)."""
    marker, why_not = marker_proof(root_dir.fd, root_dir.path)
    outer = enclosing_root(root_dir.path) if marker is not None else None
    if outer is not None:
        return None, 'it lies inside the root %s, and roots do not nest' % outer
    return marker, why_not


def enclosing_root(path):
    """The outermost directory above path whose marker proves it a root (marker_proof), or None.

    A marker that proves nothing (one a user planted in /tmp, say) blocks nobody; one inside
    a root proves nothing either (roots do not nest), so the outermost is the root."""
    found = None
    parent = os.path.dirname(path)
    while parent != os.path.dirname(parent):
        try:
            fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            fd = None  # missing (not made yet), a link (a root never is one), or not ours to read
        if fd is not None:
            try:
                if marker_proof(fd, parent)[0] is not None:
                    found = parent
            finally:
                os.close(fd)
        parent = os.path.dirname(parent)
    return found
