# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A root as one unit, read back (root_dir state=restored); the format is _archive_format's.

Restoring checks the whole archive against its manifest before it writes anything, then
unpacks it into a directory beside the new root that only its maker may enter, checking
each file again as it writes it; rewrites the paths that named the old root, gives the tree
to its owner and renames it into place. A failure leaves nothing behind.
"""


import ctypes
import grp
import os
import pwd
import re
import stat
import struct
import time
import uuid
from xml.etree import ElementTree

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _confinement, _qemu_conf as qemu_conf
from ansible_collections.embedvirt.libvirt.plugins.module_utils._archive_format import (
    ArchiveError, check_budget, copy_member, moved_path, names_root, read_archive, summary)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import Manager
from ansible_collections.embedvirt.libvirt.plugins.module_utils._lifecycle import RootLifecycle
from ansible_collections.embedvirt.libvirt.plugins.module_utils._marker import parse_marker, write_marker
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import (
    AUTOSTART_DIR, MARKER_NAME, QCOW2_BACKING_MAX, QEMU_CONF, RootError, real_path, root_regex)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import RootDir, open_dir_path
from ansible_collections.embedvirt.libvirt.plugins.module_utils._marker import enclosing_root
from ansible_collections.embedvirt.libvirt.plugins.module_utils._tree import DirStack, delete_tree
from ansible_collections.embedvirt.libvirt.plugins.module_utils._volume import QCOW2_MAGIC, qcow2_header


# The largest file whose text a restore rewrites (it is held in memory).
REWRITE_LIMIT = 16 << 20
# A restored file skips (leaves a hole for) each block of zeros this large: raw images stay sparse.
SPARSE_BLOCK = 64 << 10
# Modes a restored file or directory may have: group and others never write in a root.
RESTORED_MODE_MASK = 0o755
RENAME_NOREPLACE = 1
# Characters of a path, as a root may have them (check_root_path); a root's path in a text
# ends before anything else.
PATH_BYTES = rb'A-Za-z0-9._+@\x80-\xff-'


# What a root of uid 0 may hold from an archive that is not uid 0's own (check_for_root):
# qemu.conf settings root_dir writes itself (but swtpm's account, which only matters to a TPM),
# and no definition element that runs a host program, hands QEMU a host device or passes it
# options of its own.
ROOT_QEMU_CONF_KEYS = ('user', 'group', 'stdio_handler', 'security_driver', 'cgroup_controllers', 'namespaces')
# A TPM runs swtpm, a host program, on state the archive's writer made.
ROOT_REFUSED_TAGS = ('script', 'downscript', 'hostdev', 'tpm')
QEMU_NAMESPACE = '{http://libvirt.org/schemas/domain/qemu/1.0}'
# Free text in a definition: not read as paths.
FREE_TEXT = ('metadata', 'description', 'title')
EMULATOR_NAME = re.compile(r'^qemu-(system-[A-Za-z0-9_]+|kvm)$')
# A definition checked is parsed whole: a megabyte of '<a/>' is already 250000 Python objects.
DEFINITION_LIMIT = 1 << 20


def rewrite_paths(data, old, new):
    """(data with every absolute path at or below the root old made to name new, how many).

    Only old as a whole path: not /old-2 or /x/old, whatever quotes or tags surround it. An alias
    of old (what libvirt knows a long root by, such as in the NVRAM paths it fills in) names it too."""
    pattern = re.compile(rb'(?<![/' + PATH_BYTES + rb'])' + root_regex(old).encode() + rb'(?![' + PATH_BYTES + rb'])')
    return pattern.subn(lambda _match: new.encode(), data)


def moved_backing(header, old, new):
    """The backing name a restored qcow2 image gets at the new root: None when it needs none
    (no backing file, a relative name, a file outside the old root). ArchiveError when the
    name goes through '..' (it could name anything, and the check would not see it) or the
    new name does not fit where qemu keeps it (in the image's first cluster, 1023 bytes at most)."""
    backing = header['backing'] if header else None
    if not backing:
        return None
    if (header['cluster_size'] is None or header['backing_size'] > QCOW2_BACKING_MAX
            or header['backing_offset'] + header['backing_size'] > header['cluster_size']):
        raise ArchiveError('an image has a qcow2 header whose backing file name (%d bytes at %d) does not fit in its '
                           'first cluster, or whose cluster size is not one qemu takes: qemu would refuse it; convert '
                           'it (qemu-img convert -O qcow2) and archive again'
                           % (header['backing_size'], header['backing_offset']))
    if '..' in backing.split('/'):
        raise ArchiveError("an image names its backing file through '..' (%s): a restore rewrites whole paths only; "
                           "rebase the image to a plain path (qemu-img rebase -u) and archive again" % backing)
    moved = moved_path(real_path(backing, old), old, new)
    if moved is not None and (len(moved.encode()) > QCOW2_BACKING_MAX
                              or header['backing_offset'] + len(moved.encode()) > header['cluster_size']):
        raise ArchiveError('an image names its backing file %s, whose name at %s would not fit in the image\'s '
                           'header: restore it at a shorter path' % (backing, new))
    return moved


def set_backing_name(fd, header, name):
    """Rename an image's backing file in place (what qemu-img rebase -u does): the name where the
    header says, then its length. The rest of the first cluster is the header's; nothing else
    of the image changes, encrypted or not."""
    data = name.encode()
    os.pwrite(fd, data + b'\0' * max(0, header['backing_size'] - len(data)), header['backing_offset'])
    os.pwrite(fd, struct.pack('>I', len(data)), 16)


def check_for_root(relative, data, root):
    """ArchiveError unless a file of an archive not uid 0's own, as restored at root, is fit for a
    root of uid 0, whose guests run as uid 0: no definition may name a program or a file outside
    the root, and qemu.conf may hold root_dir's own settings only, none naming a path."""
    problem = qemu_conf_problem(data) if relative == QEMU_CONF else definition_problem(data, root)
    if problem:
        raise ArchiveError("its %s %s, and the restored root would be root's: QEMU and libvirt would act on it as root. "
                           "Restore it with owner= the user whose root it was, or remove that from the root and "
                           "archive it again" % (relative, problem))


def qemu_conf_problem(data):
    """Why a qemu.conf is not fit for a root of uid 0, or None."""
    for token in re.findall(r'"[^"\n]*"|\'[^\'\n]*\'|#[^\n]*|[^"\'#]+|.', data.decode('utf-8', 'replace')):
        if token.startswith('#'):
            continue
        if token in ('"', "'"):
            return 'has a quote that does not end on its line'
        if '/' in token:
            return 'names the path %s' % token.strip()[:200]
        for key in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)\s*=', token):
            if key not in ROOT_QEMU_CONF_KEYS:
                return 'sets %s, a setting root_dir does not write' % key
    return None


def definition_problem(data, root):
    """Why a definition (domain, snapshot, checkpoint, secret XML) is not fit for a root of uid 0, or None."""
    if len(data) > DEFINITION_LIMIT:
        return 'has %d bytes, more than a definition of libvirt holds' % len(data)
    if b'<!DOCTYPE' in data or b'<!ENTITY' in data:
        return 'has a DOCTYPE or an entity'
    try:
        todo = [ElementTree.fromstring(data)]
    except ElementTree.ParseError as e:
        return 'is not XML (%s)' % e
    while todo:
        element = todo.pop()
        tag = element.tag if isinstance(element.tag, str) else ''
        if tag in FREE_TEXT:
            continue
        if tag.startswith(QEMU_NAMESPACE) or tag in ROOT_REFUSED_TAGS:
            return 'has a <%s> element, which runs a host program, hands over a host device or passes QEMU options' % (
                tag[len(QEMU_NAMESPACE):] if tag.startswith(QEMU_NAMESPACE) else tag)
        text = (element.text or '').strip()
        if tag == 'emulator':
            if not root_program(text):
                return ('names the emulator %s, which is not a qemu-system-* or qemu-kvm of root\'s in directories '
                        'only root may write' % text[:200])
            text = ''
        for value in list(element.attrib.values()) + [text]:
            if '/' in value and (moved_path(value, root, root) is None or '..' in value.split('/')):
                return 'names %s, outside the root' % value[:200]
        todo.extend(element)
    return None


def root_program(path):
    """Whether path is a QEMU emulator only root could have put there: a qemu-system-* or qemu-kvm
    file at its real path, of uid 0, that group and others cannot write, in directories alike."""
    if not path.startswith('/') or os.path.realpath(path) != path or not EMULATOR_NAME.match(os.path.basename(path)):
        return False
    while True:
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if st.st_uid != 0 or st.st_mode & 0o022:
            return False
        if path == '/':
            return True
        path = os.path.dirname(path)


def rename_noreplace(dir_fd, old, new):
    """Rename old to new in one directory unless new exists (renameat2 RENAME_NOREPLACE: an
    empty directory someone made there meanwhile is not replaced)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(dir_fd, os.fsencode(old), dir_fd, os.fsencode(new), RENAME_NOREPLACE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), new)


def write_sparse(fd, chunk):
    """Write chunk at fd's offset, leaving holes for blocks of zeros."""
    view = memoryview(chunk)
    for start in range(0, len(view), SPARSE_BLOCK):
        block = view[start:start + SPARSE_BLOCK]
        if block.tobytes().count(0) == len(block):
            os.lseek(fd, len(block), os.SEEK_CUR)
        else:
            while block:
                block = block[os.write(fd, block):]


class RootRestore(Manager):
    """root_dir state=restored: a root from an archive, at the path of the task's root."""

    def __init__(self, module):
        super().__init__(module)
        self.path = module.client.root.path
        self.rewritten = []
        self.rebased = []
        self.restored_uid = None

    def run(self):
        started = time.time()
        src = self.params['src']
        if os.path.lexists(self.path):
            self.module.fail("'%s' exists: a restore never writes over anything; purge that root first "
                             "(root_dir state=absent) or give a path that does not exist" % self.path,
                             error_kind='exists')
        outer = enclosing_root(self.path)
        if outer is not None:
            self.module.fail("'%s' is inside the root %s: libvirt would mix their files; restore it outside"
                             % (self.path, outer), error_kind='root')
        if not os.path.isdir(os.path.dirname(self.path)):
            self.module.fail("the directory %s, in which the root is restored, does not exist: create it first"
                             % os.path.dirname(self.path), error_kind='root')
        with self.open_src(src) as archive:
            manifest, files, uid, gid = self.checked(self.verify, archive)
            old = manifest['root']
            self.plan('restore %s from %s' % (self.path, src))
            if not self.module.check_mode:
                archive.seek(0)
                self.checked(self.module.guard, self.restore, archive, manifest, uid, gid)
        missing = [p for p in manifest.get('outside', []) if not os.path.exists(p)]
        if missing:
            self.module.warn('the guests of %s name files outside the root that are not on this host: %s'
                             % (self.path, ', '.join(missing)))
        return dict(changed=self.changed, actions=self.actions, root=self.path, src=src, manifest=summary(manifest, files),
                    rewritten=self.rewritten if old != self.path else [], rebased=self.rebased, owner=uid, group=gid,
                    autostart=[os.path.basename(e['path'])[:-4] for e in manifest['files'] if e['type'] == 'autostart'],
                    seconds=round(time.time() - started, 2))

    def open_src(self, src):
        """The archive, opened through its directory's descriptor (links on the way only of uid 0 or
        the caller's), never through a link itself, never blocking on a FIFO, a regular file of one link."""
        directory, name = os.path.split(src)
        try:
            dir_fd = open_dir_path(directory)
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
            finally:
                os.close(dir_fd)
        except (OSError, RootError) as e:
            self.module.fail("cannot read src '%s' (%s): give the path of an archive root_dir state=archived wrote, "
                             "not a link, in a directory only root or its owner may change"
                             % (src, getattr(e, 'strerror', None) or e), error_kind='src')
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self.module.fail("src '%s' is not a regular file: give the path of an archive root_dir state=archived "
                             "wrote" % src, error_kind='src')
        if st.st_nlink != 1:
            # A hard link in a user's directory could make root read a file that user cannot.
            os.close(fd)
            self.module.fail("src '%s' has %d hard links: give the path of a copy of the archive (cp), not a link"
                             % (src, st.st_nlink), error_kind='src')
        return os.fdopen(fd, 'rb')

    def owner_ids(self, manifest, src, writer):
        """uid and gid of the restored root: as asked, else the archived root's owner (a user's root stays
        the user's: its qemu.conf and definitions are what that user wrote), who must exist here. The
        manifest names that owner only when uid 0 or the task's user wrote the archive (writer): anyone
        may write a manifest."""
        params = self.params
        owner = manifest.get('owner')
        if not params['owner'] and writer is None:
            self.module.fail("src '%s' belongs to uid %d (mode %04o), not to root alone: the owner its manifest names "
                             "(%s) is the word of whoever may write it; give owner= for the restored root (the user "
                             "whose root it was, to restore it as theirs)"
                             % (params['src'], src.st_uid, stat.S_IMODE(src.st_mode), owner), error_kind='owner')
        if params['owner'] or owner in (None, 'root'):
            uid, gid = RootLifecycle(self.module).owner_ids(None)
            if uid == 0 and owner not in (None, 'root'):
                self.module.warn("the archived root was %s's and is restored as root's: its guests run as root with "
                                 "the definitions and qemu.conf %s wrote" % (owner, owner))
            return uid, gid
        try:
            account = pwd.getpwnam(owner)
            gid = grp.getgrnam(params['group']).gr_gid if params['group'] else account.pw_gid
        except KeyError:
            self.module.fail("the archived root belonged to %s, who has no account (or group %s) on this host: give "
                             "owner= (and group=) for the restored root" % (owner, params['group']), error_kind='owner')
        return account.pw_uid, gid

    def checked(self, function, *args):
        try:
            return function(*args)
        except ArchiveError as e:
            self.module.fail("src '%s' is refused, nothing was written: %s" % (self.params['src'], e), error_kind='archive')

    def verify(self, archive):
        """(manifest, file entries, uid, gid) once every member matched the manifest. The archive must
        fit where it is restored (checked before any member is read), and a root of uid 0 holds
        only what uid 0 may run, unless uid 0's own archive of a root of uid 0."""
        src = os.fstat(archive.fileno())
        members = read_archive(archive)
        manifest = next(members)
        where = os.path.dirname(self.path)
        fs = os.statvfs(where)
        check_budget(manifest, src.st_size, fs.f_bavail * fs.f_frsize, where)
        # Only the task's user or uid 0 wrote a file of theirs that nobody else may write.
        writer = src.st_uid if src.st_uid in (0, os.geteuid()) and not src.st_mode & 0o022 else None
        uid, gid = self.owner_ids(manifest, src, writer)
        untrusted = uid == 0 and (writer != 0 or manifest.get('owner') not in (None, 'root'))
        files = []
        for entry, stream in members:
            rewritten = names_root(entry['path'])
            if (rewritten or entry['path'] == MARKER_NAME) and entry['size'] > REWRITE_LIMIT:
                raise ArchiveError('its %s has %d bytes, more than such a file of libvirt holds' % (entry['path'], entry['size']))
            chunks = []
            head = copy_member(entry, stream, chunks.append if untrusted and rewritten else None)
            if chunks:
                check_for_root(entry['path'], rewrite_paths(b''.join(chunks), manifest['root'], self.path)[0], self.path)
            header = qcow2_header(lambda offset, length, head=head: head[offset:offset + length])
            if header and header['data_file']:
                raise ArchiveError('its image %s keeps its data in an external file, which QEMU would open wherever '
                                   'the image names it: convert it (qemu-img convert -O qcow2) and archive again'
                                   % entry['path'])
            moved_backing(header, manifest['root'], self.path)
            files.append(entry)
        return manifest, files, uid, gid

    def restore(self, archive, manifest, uid, gid):
        parent_path, name = os.path.split(self.path)
        parent = open_dir_path(parent_path)
        try:
            # Only its maker may enter it until it is complete and its owner's.
            tmp = '.%s.restore-%s' % (name, uuid.uuid4().hex[:8])
            os.mkdir(tmp, 0o700, dir_fd=parent)
            try:
                staged = RootDir(self.path, os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                                    dir_fd=parent))
                try:
                    if staged.uid != os.geteuid() or os.listdir(staged.fd):
                        raise RootError('%s/%s was replaced as soon as it was made: someone else writes in %s; restore '
                                        'in a directory only root or the owner may write' % (parent_path, tmp, parent_path))
                    os.fchmod(staged.fd, 0o700)
                    self.restored_uid = uid
                    self.unpack(staged, archive, manifest)
                    self.give(staged, manifest, uid, gid)
                    os.fchmod(staged.fd, manifest['mode'] & RESTORED_MODE_MASK)
                    # Everything on disk before the root appears under its name.
                    ctypes.CDLL(None, use_errno=True).syncfs(staged.fd)
                finally:
                    staged.close()
                rename_noreplace(parent, tmp, name)
            except BaseException:
                dirs = DirStack(parent, parent_path, os.fstat(parent).st_dev)
                try:
                    delete_tree(dirs, tmp)
                finally:
                    dirs.close()
                raise
        finally:
            os.close(parent)

    def move_account(self, data, old):
        """(qemu.conf data for the new root, changes): the old root's QEMU account becomes the new root's,
        created here; an earlier release's default (QEMU as uid 0) becomes today's."""
        if self.restored_uid != 0:
            return data, 0
        if qemu_conf.is_legacy_default(data):
            data, count = qemu_conf.render(qemu_conf.settings_for(0, self.path)).encode(), 1
        else:
            data, count = re.subn(rb'\b%s\b' % _confinement.name(old).encode(), _confinement.name(self.path).encode(), data)
        if qemu_conf.setting(data.decode('utf-8', 'replace'), 'user') == _confinement.name(self.path):
            if _confinement.ensure(self.path)[1]:
                self.actions.append('create account %s' % _confinement.name(self.path))
        return data, count

    def unpack(self, staged, archive, manifest):
        """Write the archive's tree below staged (checking every member again), rewritten for the new path."""
        old = manifest['root']
        members = read_archive(archive)
        if next(members) != manifest:
            raise ArchiveError('it changed while it was restored')
        for entry in manifest['files']:
            if entry['type'] == 'dir':
                dir_fd = staged.subdir(os.path.dirname(entry['path']))
                try:
                    os.mkdir(os.path.basename(entry['path']), 0o700, dir_fd=dir_fd)
                finally:
                    os.close(dir_fd)
                dir_fd = staged.subdir(entry['path'])
                try:
                    os.fchmod(dir_fd, entry['mode'] & RESTORED_MODE_MASK)
                finally:
                    os.close(dir_fd)
        marker = None
        images = []
        for entry, stream in members:
            if entry['path'] == MARKER_NAME or names_root(entry['path']):
                chunks = []
                copy_member(entry, stream, chunks.append)
                data = b''.join(chunks)
                if entry['path'] == MARKER_NAME:
                    marker = data
                    continue
                data, count = rewrite_paths(data, old, self.path)
                if entry['path'] == QEMU_CONF:
                    data, accounts = self.move_account(data, old)
                    count += accounts
                if count:
                    self.rewritten.append(entry['path'])
                self.write_file(staged, entry, lambda fd, data=data: write_sparse(fd, data))
            else:
                head = self.write_file(staged, entry, lambda fd, entry=entry, stream=stream: copy_member(
                    entry, stream, lambda chunk: write_sparse(fd, chunk)))
                if head[:4] == QCOW2_MAGIC:
                    images.append(entry['path'])
        fields = parse_marker(marker or b'', old)
        if fields is None:
            raise ArchiveError('its marker %s does not name the root its manifest names' % MARKER_NAME)
        write_marker(staged, fields.get('lifecycle', 'persistent'), created=fields.get('created'))
        for entry in manifest['files']:
            if entry['type'] == 'autostart':
                dir_fd = staged.subdir(AUTOSTART_DIR)
                try:
                    os.symlink(os.path.join(self.path, entry['target']), os.path.basename(entry['path']), dir_fd=dir_fd)
                finally:
                    os.close(dir_fd)
        if old != self.path:
            for relative in images:
                self.rebase(staged, relative, old)

    def write_file(self, staged, entry, write):
        """Create a file below staged with its manifest mode, write(fd) filling it; what write returns."""
        dir_fd = staged.subdir(os.path.dirname(entry['path']))
        try:
            fd = os.open(os.path.basename(entry['path']), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        try:
            result = write(fd)
            os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR))  # the holes at its end
            os.fchmod(fd, entry['mode'] & RESTORED_MODE_MASK)
            return result
        finally:
            os.close(fd)

    def rebase(self, staged, relative, old):
        """Point a qcow2 image whose backing file names the old root to the new one. Done here, not
        by qemu-img: the image comes from the archive, and no program of uid 0 parses it."""
        dir_fd = staged.subdir(os.path.dirname(relative))
        try:
            fd = os.open(os.path.basename(relative), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        try:
            header = qcow2_header(lambda offset, length: os.pread(fd, length, offset))
            backing = moved_backing(header, old, self.path)
            if backing is None:
                return
            set_backing_name(fd, header, backing)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.rebased.append(relative)

    def give(self, staged, manifest, uid, gid):
        """Give the staged tree to uid and gid: what is deepest first, so that each directory is
        still its maker's (checked by subdir) while what is in it changes hands."""
        for entry in reversed(manifest['files']):
            dir_fd = staged.subdir(os.path.dirname(entry['path']))
            try:
                os.chown(os.path.basename(entry['path']), uid, gid, dir_fd=dir_fd, follow_symlinks=False)
            finally:
                os.close(dir_fd)
        os.fchown(staged.fd, uid, gid)
