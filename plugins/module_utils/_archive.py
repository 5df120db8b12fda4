# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A root as one unit, written out (root_dir state=archived); the format is _archive_format's.

Archiving reads the root only through its pinned descriptors (_root_dir.RootDir): never through
a link, never a file of a stranger. Its guests are shut down and its helper stopped (with the
root's start lock held) while it copies, so nothing writes meanwhile.
"""


import hashlib
import io
import json
import os
import pwd
import stat
import tarfile
import time
from xml.etree import ElementTree

from ansible_collections.embedvirt.libvirt.plugins.module_utils._archive_format import (
    CHUNK, FORMAT, FORMAT_VERSION, MANIFEST, MEMBER_PREFIX, matches, moved_path, summary)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._client import HelperClientError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper_start import start_lock
from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import Manager
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import ACTIVE_STATES
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import (
    ARCHIVED_EMPTY, AUTOSTART_DIR, NOT_ARCHIVED, SAVE_DIR, RootError, real_path)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import open_dir_path, write_whole
from ansible_collections.embedvirt.libvirt.plugins.module_utils._marker import proven_marker
from ansible_collections.embedvirt.libvirt.plugins.module_utils._tree import mount_points, qemu_processes
from ansible_collections.embedvirt.libvirt.plugins.module_utils._volume import qcow2_header


ARCHIVE_MODE = 0o600  # it holds the root's secret values
# gzip level 1: disk images dominate, and higher levels cost far more time than they save space.
COMPRESS_LEVEL = 1


def boot_files(xml):
    """The files a domain's definition boots from: kernel, initrd, firmware, NVRAM template."""
    element = ElementTree.fromstring(xml).find('os')
    if element is None:
        return []
    found = [child.text.strip() for child in element if child.tag in ('kernel', 'initrd', 'loader') and child.text]
    nvram = element.find('nvram')
    return found + ([nvram.get('template')] if nvram is not None and nvram.get('template') else [])


class HashingWriter:
    """A file object that counts and hashes what is written to it."""

    def __init__(self, f):
        self.f = f
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data):
        self.size += len(data)
        self.digest.update(data)
        return self.f.write(data)

    def flush(self):
        self.f.flush()


class HashingReader:
    """A file object that hashes what is read from it."""

    def __init__(self, f):
        self.f = f
        self.digest = hashlib.sha256()

    def read(self, size=-1):
        data = self.f.read(size)
        self.digest.update(data)
        return data


def scan(root_dir, warnings):
    """Manifest entries (no sha256 yet) of what an archive of the pinned root holds, each
    directory before what is in it. Only directories checked like every directory of the root
    (RootDir.subdir: the owner's, nobody else may write), on the root's filesystem; links
    other than libvirt's autostart links, FIFOs and devices are refused (RootError), sockets
    skipped with a warning."""
    entries = []
    todo = ['']
    while todo:
        relative = todo.pop(0)
        fd = root_dir.subdir(relative) if relative else os.dup(root_dir.fd)
        try:
            for name in sorted(os.listdir(fd)):
                path = os.path.join(relative, name)
                if any(matches(path, pattern) for pattern in NOT_ARCHIVED):
                    continue
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                where = os.path.join(root_dir.path, path)
                if stat.S_ISDIR(st.st_mode):
                    if st.st_dev != root_dir.dev:
                        raise RootError("%s is another filesystem mounted in the root: an archive holds the root's "
                                        "own files; unmount it (umount %s) and archive again" % (where, where))
                    entries.append(dict(path=path, type='dir', mode=stat.S_IMODE(st.st_mode)))
                    if path not in ARCHIVED_EMPTY:
                        todo.append(path)
                elif stat.S_ISREG(st.st_mode):
                    if relative == SAVE_DIR:
                        raise RootError("%s is a guest's managed-save image, which names the root's paths inside "
                                        "it: start that guest (it resumes from it) or remove it, then archive again"
                                        % where)
                    # Opened now, so that a file the archive would refuse (a stranger's) stops it before any
                    # guest is shut down.
                    os.close(root_dir.open_file(path))
                    entries.append(dict(path=path, type='file', mode=stat.S_IMODE(st.st_mode), size=st.st_size))
                elif stat.S_ISLNK(st.st_mode) and relative == AUTOSTART_DIR and name.endswith('.xml') and \
                        real_path(os.readlink(name, dir_fd=fd), root_dir.path) == os.path.join(root_dir.path, 'etc/qemu', name):
                    entries.append(dict(path=path, type='autostart', target='etc/qemu/' + name))
                elif stat.S_ISSOCK(st.st_mode):
                    warnings.append('left out the socket %s: a socket holds nothing to archive' % where)
                else:
                    raise RootError("%s is a symbolic link, FIFO or device: an archive holds the root's directories "
                                    "and files (and libvirt's autostart links) only, and a link is never followed; "
                                    "move it out of the root and archive again" % where)
        finally:
            os.close(fd)
    return entries


def check_dest_dir(st, directory):
    """Raise RootError unless the directory of an archive may be written by uid 0 or the caller only
    (or is sticky): anyone else could replace the archive before it is complete."""
    if st.st_uid not in (0, os.geteuid()) or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
        raise RootError("the directory %s of dest may be written by others (uid %d, mode %04o), who could replace the "
                        "archive before it is complete: write it to a directory of yours or of root's"
                        % (directory, st.st_uid, stat.S_IMODE(st.st_mode)))


class RootArchive(Manager):
    """root_dir state=archived."""

    def __init__(self, module):
        super().__init__(module)
        self.root = module.client.root
        self.path = self.root.path
        self.warnings = []

    def run(self):
        started = time.time()
        dest = self.check_dest()
        if not os.path.isdir(self.path):
            self.module.fail("root '%s' does not exist: nothing to archive; correct the path" % self.path,
                             error_kind='root_missing')
        root_dir = self.module.guard(self.root.open)
        try:
            marker, why_not = proven_marker(root_dir)
            if marker is None:
                self.module.fail("'%s' has no embedvirt marker that proves it is a root of this collection (%s): "
                                 "refusing to archive it" % (self.path, why_not), error_kind='not_ours')
            # A bind mount of the root's own filesystem has its st_dev: only the mount table shows it.
            points = [p for p in mount_points(self.path) if p != self.path]
            if points:
                self.module.fail("root '%s' has %s mounted inside it: an archive holds the root's own files; unmount "
                                 "(umount %s) and archive again" % (self.path, ', '.join(points), ' '.join(points)),
                                 error_kind='mount', mount_points=points)
            result = self.archive(root_dir, dest)
        finally:
            root_dir.close()
        for warning in self.warnings:
            self.module.warn(warning)
        result.update(changed=self.changed, actions=self.actions, root=self.path, dest=dest,
                      seconds=round(time.time() - started, 2))
        return result

    def check_dest(self):
        dest = self.params['dest']
        if not os.path.isabs(dest) or dest.endswith('/'):
            self.module.fail("dest '%s' is not the absolute path of a file: give one such as /srv/backup/vms.tar.gz"
                             % dest, error_kind='dest')
        real = os.path.realpath(dest)
        if real.startswith(os.path.realpath(self.path) + '/'):
            self.module.fail("dest '%s' is inside the root %s: the archive would archive itself, and belong to the "
                             "root's owner; write it outside the root" % (dest, self.path), error_kind='dest')
        directory = os.path.dirname(dest)
        if not os.path.isdir(directory):
            self.module.fail("the directory %s of dest does not exist: create it first" % directory, error_kind='dest')
        dir_fd = self.module.guard(open_dir_path, directory)
        try:
            self.module.guard(check_dest_dir, os.fstat(dir_fd), directory)
        finally:
            os.close(dir_fd)
        if os.path.lexists(dest):
            if not self.params['force']:
                self.module.fail("dest '%s' exists: an archive never replaces a file unless asked; set force=true "
                                 "to replace it, or give another dest" % dest, error_kind='dest_exists')
            if not stat.S_ISREG(os.lstat(dest).st_mode):
                self.module.fail("dest '%s' exists and is not a regular file: remove it or give another dest"
                                 % dest, error_kind='dest')
        return dest

    def archive(self, root_dir, dest):
        helper = self.module.helper_or_fail
        domains = helper.domain_list()
        stuck = ['%s (%s%s)' % (d['name'], d['state'], '' if d['persistent'] else ', transient') for d in domains
                 if d['state'] in ACTIVE_STATES and (d['state'] in ('paused', 'pmsuspended') or not d['persistent'])]
        if stuck:
            self.module.fail('root %s has the guests %s, which an archive cannot shut down and start again (a transient '
                             "guest's definition goes when it stops, a paused one cannot shut down): resume or shut "
                             'them down, or define them, and archive again' % (self.path, ', '.join(stuck)),
                             error_kind='guest_state')
        running = [d['name'] for d in domains if d['state'] in ACTIVE_STATES]
        # Refusals (links, devices, mounts) come before any guest is shut down.
        entries = self.module.guard(scan, root_dir, [])
        disks = [disk['path'] for disk in helper.domain_disks()] + [
            path for d in domains if d['persistent'] for path in boot_files(helper.domain_get(d['name'])['xml'])]
        if self.module.check_mode:
            for action in ['shutdown %s' % name for name in running] + ['stop helper', 'write %s' % dest] + [
                    'start %s' % name for name in running]:
                self.plan(action)
            return dict(manifest=summary(self.manifest(root_dir, domains, {}, disks, entries)), restarted=running)
        versions = helper.versions()
        stopped = []
        try:
            for name in running:
                self.shutdown(name)
                stopped.append(name)
            # The start lock keeps other tasks from starting a helper while the root is copied.
            lock = start_lock(self.module.client.root, root_dir)
            try:
                self.plan('stop helper')
                self.module.client.stop()
                left = qemu_processes(self.path)
                if left:
                    raise HelperClientError('QEMU processes %s of root %s run without its helper knowing them, and '
                                            'could write to its disks' % (', '.join(map(str, left)), self.path),
                                            'guest_state', 'stop them and archive again')
                manifest = self.manifest(root_dir, domains, versions, disks, scan(root_dir, self.warnings))
                self.plan('write %s' % dest)
                written = self.write(root_dir, manifest, dest)
            finally:
                os.close(lock)
        finally:
            self.restart(stopped)
        return dict(manifest=summary(manifest), restarted=stopped, size=written.size,
                    sha256=written.digest.hexdigest())

    def shutdown(self, name):
        self.plan('shutdown %s' % name)
        timeout = self.params['shutdown_timeout']
        if not self.module.client.domain_shutdown(name=name, timeout=timeout, force=False)['done']:
            raise HelperClientError(
                'guest %s did not shut down within %d s: an archive holds guests shut down, never powered off half '
                'way' % (name, timeout), 'shutdown_timeout', 'shut it down yourself (or raise shutdown_timeout) and '
                'archive again')

    def restart(self, names):
        """Start the guests the archive shut down, even when it failed; a guest that does not
        start is a warning (the task's result says what was archived)."""
        for name in names:
            self.plan('start %s' % name)
            try:
                self.module.client.domain_start(name)
            except HelperClientError as e:
                self.module.warn('could not start guest %s again after the archive shut it down (%s): start it '
                                 'yourself (embedvirt.libvirt.domain state=running)' % (name, e))

    def manifest(self, root_dir, domains, versions, disks, entries):
        """The manifest (with every file's sha256 unless in check mode)."""
        for entry in entries:
            if entry['type'] == 'file' and not self.module.check_mode:
                with os.fdopen(root_dir.open_file(entry['path']), 'rb') as f:
                    reader = HashingReader(f)
                    entry['size'] = sum(len(chunk) for chunk in iter(lambda: reader.read(CHUNK), b''))
                    entry['sha256'] = reader.digest.hexdigest()
        try:
            owner = pwd.getpwuid(root_dir.uid).pw_name
        except KeyError:
            owner = str(root_dir.uid)
        return dict(format=FORMAT, version=FORMAT_VERSION, root=self.path, owner=owner,
                    created=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                    mode=stat.S_IMODE(os.fstat(root_dir.fd).st_mode),
                    libvirt=versions.get('libvirt'), qemu=versions.get('qemu'),
                    guests=[dict(name=d['name'], state=d['state'], autostart=d['autostart']) for d in domains],
                    outside=self.outside(root_dir, disks, entries), files=entries)

    def outside(self, root_dir, disks, entries):
        """Files outside the root that its guests (disks, kernels, firmware) or its images (backing
        files) name: an archive does not hold them; they must be where the restored root's guests look."""
        found = set(disks)
        for entry in entries:
            if entry['type'] != 'file' or not entry['path'].startswith('images/'):
                continue
            with os.fdopen(root_dir.open_file(entry['path']), 'rb') as f:
                header = qcow2_header(lambda offset, length: os.pread(f.fileno(), length, offset))
            if header and header['backing']:
                found.add(os.path.normpath(os.path.join(os.path.dirname(os.path.join(self.path, entry['path'])),
                                                        header['backing'])))
        return sorted(p for p in found if moved_path(p, self.path, self.path) is None)

    def write(self, root_dir, manifest, dest):
        """Write the archive to dest whole or not at all; its size and sha256 (a HashingWriter)."""
        directory, name = os.path.split(dest)
        dir_fd = open_dir_path(directory)
        written = []

        def write(raw):
            written.append(HashingWriter(raw))
            self.write_tar(root_dir, manifest, written[0])
        try:
            check_dest_dir(os.fstat(dir_fd), directory)
            if not write_whole(dir_fd, name, write, ARCHIVE_MODE, self.params['force']):
                raise RootError("dest '%s' appeared while the archive was written: it is kept; set force=true "
                                "to replace it, or give another dest" % dest)
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return written[0]

    def write_tar(self, root_dir, manifest, out):
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        with tarfile.open(fileobj=out, mode='w:gz', compresslevel=COMPRESS_LEVEL, format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(data))
            for entry in manifest['files']:
                if entry['type'] != 'file':
                    continue
                with os.fdopen(root_dir.open_file(entry['path']), 'rb') as f:
                    info = tarfile.TarInfo(MEMBER_PREFIX + entry['path'])
                    info.size, info.mode, info.mtime = entry['size'], entry['mode'], int(os.fstat(f.fileno()).st_mtime)
                    reader = HashingReader(f)
                    try:
                        tar.addfile(info, reader)
                    except OSError:  # tarfile: "unexpected end of data"
                        reader = None
                    if reader is None or reader.digest.hexdigest() != entry['sha256'] or f.read(1):
                        raise RootError('%s changed while it was archived: something writes to the root although '
                                        'its guests and helper are stopped; stop it and archive again'
                                        % os.path.join(self.path, entry['path']))
