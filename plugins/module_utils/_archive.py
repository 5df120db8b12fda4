# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A root as one unit (root_dir state=archived and state=restored).

An archive is a gzip tar file: its first member is a manifest (JSON) that lists every
directory and file of the root with its mode, size and sha256; the files follow as
root/<path>, in the manifest's order, and nothing else.

Archiving reads the root only through its pinned descriptors (_root.RootDir): never through
a link, never a file of a stranger. Its guests are shut down and its helper stopped (with the
root's start lock held) while it copies, so nothing writes meanwhile.

Restoring checks the whole archive against its manifest before it writes anything, then
unpacks it into a directory beside the new root that only its maker may enter, checking
each file again as it writes it; rewrites the paths that named the old root, gives the tree
to its owner and renames it into place. A failure leaves nothing behind.
"""


import ctypes
import fnmatch
import grp
import gzip
import hashlib
import io
import json
import os
import pwd
import re
import stat
import struct
import tarfile
import time
import uuid
import zlib
from xml.etree import ElementTree

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _confinement, _qemu_conf as qemu_conf
from ansible_collections.embedvirt.libvirt.plugins.module_utils._client import HelperClientError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import Manager
from ansible_collections.embedvirt.libvirt.plugins.module_utils._lifecycle import (
    DirStack, RootLifecycle, delete_tree, enclosing_root, mount_points, proven_marker, qemu_processes)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import ACTIVE_STATES
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import (
    ARCHIVED_EMPTY, AUTOSTART_DIR, MARKER_NAME, NAMES_ROOT, NOT_ARCHIVED, QCOW2_BACKING_MAX, QEMU_CONF, SAVE_DIR,
    RootDir, RootError, alias_regex, check_root_path, libvirt_root, open_dir_path, parse_marker, real_path, write_marker,
    write_whole)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._volume import QCOW2_MAGIC, qcow2_header

FORMAT = 'embedvirt.libvirt root archive'
FORMAT_VERSION = 1
MANIFEST = 'manifest.json'
MEMBER_PREFIX = 'root/'
ARCHIVE_MODE = 0o600  # it holds the root's secret values
# Bounds on what a restore holds in memory: the manifest (about 170 bytes an entry), and a file
# whose text is rewritten.
MANIFEST_LIMIT = 4 << 20
ENTRIES_LIMIT = 20000
REWRITE_LIMIT = 16 << 20
CHUNK = 1 << 20
# A restored file skips (leaves a hole for) each block of zeros this large: raw images stay sparse.
SPARSE_BLOCK = 64 << 10
# gzip level 1: disk images dominate, and higher levels cost far more time than they save space.
COMPRESS_LEVEL = 1
# Modes a restored file or directory may have: group and others never write in a root.
RESTORED_MODE_MASK = 0o755
QCOW2_HEAD = 64 << 10
RENAME_NOREPLACE = 1
# What reading a damaged or foreign archive raises.
READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, UnicodeError, gzip.BadGzipFile)
# The tar format our writer (tarfile, PAX format) emits: 512-byte blocks in records of 20, and
# a PAX header before a member only for a long or non-ASCII path or a size of 8 GiB or more.
BLOCK = 512
RECORD = 20 * BLOCK
PAX_KEYS = ('path', 'size', 'mtime', 'hdrcharset')
PAX_LIMIT = 8 << 10
REGULAR = 'file'
# deflate never packs more than 1032 bytes in one: an archive declaring more lies.
DEFLATE_RATIO = 1032
# Characters of a path, as a root may have them (check_root_path); a root's path in a text
# ends before anything else.
PATH_BYTES = rb'A-Za-z0-9._+@\x80-\xff-'


# What a root of root's may hold from an archive that is not root's own (check_for_root):
# qemu.conf settings root_dir writes itself, and no definition element that runs a host
# program, hands QEMU a host device or passes it options of its own.
ROOT_QEMU_CONF_KEYS = ('user', 'group', 'stdio_handler', 'security_driver', 'cgroup_controllers', 'namespaces')
ROOT_REFUSED_TAGS = ('script', 'downscript', 'hostdev')
QEMU_NAMESPACE = '{http://libvirt.org/schemas/domain/qemu/1.0}'
# Free text in a definition: not read as paths.
FREE_TEXT = ('metadata', 'description', 'title')
EMULATOR_NAME = re.compile(r'^qemu-(system-[A-Za-z0-9_]+|kvm)$')
# A definition checked is parsed whole: a megabyte of '<a/>' is already 250000 Python objects.
DEFINITION_LIMIT = 1 << 20


class ArchiveError(Exception):
    """An archive that is not one of this collection's, or does not match its manifest."""


# --- pure logic ------------------------------------------------------------------------------
def matches(relative, pattern):
    """Whether a path below a root matches a pattern of _root (fnmatch per path component)."""
    names, patterns = relative.split('/'), pattern.split('/')
    return len(names) == len(patterns) and all(fnmatch.fnmatchcase(n, p) for n, p in zip(names, patterns))


def names_root(relative):
    return any(matches(relative, pattern) for pattern in NAMES_ROOT)


def rewrite_paths(data, old, new):
    """(data with every absolute path at or below the root old made to name new, how many).

    Only old as a whole path: not /old-2 or /x/old, whatever quotes or tags surround it. An alias
    of old (what libvirt knows a long root by, such as in the NVRAM paths it fills in) names it too."""
    name = re.escape(old.encode())
    if libvirt_root(old, 0) != old:
        name = b'(?:' + name + b'|' + alias_regex(old).encode() + b')'
    pattern = re.compile(rb'(?<![/' + PATH_BYTES + rb'])' + name + rb'(?![' + PATH_BYTES + rb'])')
    return pattern.subn(lambda _match: new.encode(), data)


def moved_path(path, old, new):
    """path with the root old replaced by new, or None when it is not at or below old."""
    if path == old or path.startswith(old + '/'):
        return new + path[len(old):]
    return None


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


def boot_files(xml):
    """The files a domain's definition boots from: kernel, initrd, firmware, NVRAM template."""
    element = ElementTree.fromstring(xml).find('os')
    if element is None:
        return []
    found = [child.text.strip() for child in element if child.tag in ('kernel', 'initrd', 'loader') and child.text]
    nvram = element.find('nvram')
    return found + ([nvram.get('template')] if nvram is not None and nvram.get('template') else [])


def never_archived(path, kind):
    """Whether scan() leaves path out of every archive: below a directory archived empty, a running
    guest's directory, a managed-save image (its definition would bypass every check)."""
    parent = os.path.dirname(path)
    return (any(path.startswith(empty + '/') for empty in ARCHIVED_EMPTY)
            or any(matches('/'.join(path.split('/')[:pattern.count('/') + 1]), pattern) for pattern in NOT_ARCHIVED)
            or (parent == SAVE_DIR and kind == 'file'))


def check_budget(manifest, archive_size, free, where):
    """ArchiveError unless what the manifest declares is as much as an archive of archive_size
    bytes can hold and fits in free bytes: checked before a member is read, it bounds the work."""
    need = sum(e['size'] for e in manifest['files'] if e['type'] == 'file')
    if need > DEFLATE_RATIO * archive_size:
        raise ArchiveError('its manifest declares %d bytes, more than gzip can hold in its %d: it was not written by '
                           'root_dir' % (need, archive_size))
    if need > free:
        raise ArchiveError('%s has %d bytes free, and the archive holds %d bytes: free space there, or restore '
                           'elsewhere' % (where, free, need))


def check_for_root(relative, data, root):
    """ArchiveError unless a file of an archive not root's own, as restored at root, is fit for a
    root of root's, whose guests run as root: no definition may name a program or a file outside
    the root, and qemu.conf may hold root_dir's own settings only, none naming a path."""
    problem = qemu_conf_problem(data) if relative == QEMU_CONF else definition_problem(data, root)
    if problem:
        raise ArchiveError("its %s %s, and the restored root would be root's: QEMU and libvirt would act on it as root. "
                           "Restore it with owner= the user whose root it was, or remove that from the root and "
                           "archive it again" % (relative, problem))


def qemu_conf_problem(data):
    """Why a qemu.conf is not fit for a root of root's, or None."""
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
    """Why a definition (domain, snapshot, checkpoint, secret XML) is not fit for a root of root's, or None."""
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
    file at its real path, of root's, that group and others cannot write, in directories alike."""
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


def check_relative(path):
    if (not isinstance(path, str) or not path or path.startswith('/') or '\0' in path
            or any(name in ('', '.', '..') for name in path.split('/'))):
        raise ArchiveError('its manifest names %r, which is not a path below a root' % (path,))


def check_manifest(manifest):
    """The file entries of a manifest, in order; ArchiveError unless every entry is a clean
    path below the root, listed once, after its directory."""
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
        raise ArchiveError('it is not an archive of a root made by embedvirt.libvirt (its first member is not '
                           'such a manifest)')
    if manifest.get('version') != FORMAT_VERSION:
        raise ArchiveError('it has format version %r, and this release of embedvirt.libvirt reads version %d '
                           'only: restore it with the release that made it' % (manifest.get('version'), FORMAT_VERSION))
    try:
        check_root_path(manifest.get('root'))
    except RootError as e:
        raise ArchiveError('its manifest names no valid root (%s)' % e)
    entries = manifest.get('files')
    if not isinstance(entries, list) or not isinstance(manifest.get('mode'), int):
        raise ArchiveError('its manifest has no list of files or no mode')
    outside = manifest.get('outside', [])
    if not isinstance(outside, list) or len(outside) > ENTRIES_LIMIT or not all(isinstance(p, str) for p in outside):
        raise ArchiveError('its manifest has no valid list of the files outside the root')
    if len(entries) > ENTRIES_LIMIT:
        raise ArchiveError('its manifest lists %d files and directories, more than the %d of a root this release '
                           'archives' % (len(entries), ENTRIES_LIMIT))
    kinds = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ArchiveError('its manifest lists a %s, which is not a file entry' % type(entry).__name__)
        path, kind = entry.get('path'), entry.get('type')
        check_relative(path)
        if never_archived(path, kind):
            raise ArchiveError('its manifest lists %s, which an archive of root_dir never holds (runtime state, a '
                               'managed-save image): it was not made by root_dir' % path)
        if path in kinds:
            raise ArchiveError('its manifest lists %s twice' % path)
        parent = os.path.dirname(path)
        if parent and kinds.get(parent) != 'dir':
            raise ArchiveError('its manifest lists %s before (or without) its directory' % path)
        if kind == 'file':
            if (not isinstance(entry.get('size'), int) or entry['size'] < 0
                    or not re.match(r'^[0-9a-f]{64}$', str(entry.get('sha256')))):
                raise ArchiveError('its manifest gives %s no valid size and sha256' % path)
        elif kind == 'autostart':
            name = os.path.basename(path)
            if parent != AUTOSTART_DIR or not name.endswith('.xml') or entry.get('target') != 'etc/qemu/' + name:
                raise ArchiveError("its manifest lists a link %s -> %r, which is not one of libvirt's autostart "
                                   "links" % (path, entry.get('target')))
        elif kind != 'dir':
            raise ArchiveError('its manifest lists %s as a %r: an archive holds directories, files and '
                               'autostart links only' % (path, kind))
        if kind != 'autostart' and (not isinstance(entry.get('mode'), int) or not 0 <= entry['mode'] <= 0o7777):
            raise ArchiveError('its manifest gives %s no valid mode' % path)
        kinds[path] = kind
    if kinds.get(MARKER_NAME) != 'file':
        raise ArchiveError('its manifest lists no %s: it is not the archive of a root' % MARKER_NAME)
    for entry in entries:
        if entry['type'] == 'autostart' and kinds.get(entry['target']) != 'file':
            raise ArchiveError('its autostart link %s names %s, which it does not hold' % (entry['path'], entry['target']))
    return [entry for entry in entries if entry['type'] == 'file']


def summary(manifest, files=None):
    """What a task reports of a manifest: no file's sha256 (a secret value's digest is no one's business)."""
    files = [e for e in manifest['files'] if e['type'] == 'file'] if files is None else files
    return dict(version=manifest.get('version'), root=manifest.get('root'), created=manifest.get('created'),
                owner=manifest.get('owner'), libvirt=manifest.get('libvirt'), qemu=manifest.get('qemu'),
                guests=manifest.get('guests'), outside=manifest.get('outside', []),
                files=len(files), bytes=sum(e.get('size') or 0 for e in files))


def read_archive(fileobj):
    """Generator: the manifest of a gzip tar archive, then (file entry, stream of its data) for
    each member, each checked to be the member its manifest lists next (name, type, size).
    ArchiveError for anything else: a missing or unlisted member, a link, a device, a tar
    header of a kind our writer never emits. Only what the manifest lists is read, in bounded
    chunks: no header's declared size is ever allocated."""
    try:
        tar = TarStream(gzip.GzipFile(fileobj=fileobj, mode='rb'))
        first = tar.next()
        if first is None or first[0] != MANIFEST or first[1] != REGULAR or first[2] > MANIFEST_LIMIT:
            raise ArchiveError('it is not an archive of a root made by embedvirt.libvirt (its first member is '
                               'not %s of at most %d bytes)' % (MANIFEST, MANIFEST_LIMIT))
        manifest = parse_manifest(tar.read_data(first[2]))
        files = check_manifest(manifest)
        yield manifest
        for entry in files:
            expected = MEMBER_PREFIX + entry['path']
            member = tar.next()
            if member is None:
                raise ArchiveError('it lacks the member %s its manifest lists' % expected)
            name, kind, size = member
            if name != expected:
                raise ArchiveError('its member %s is not the next its manifest lists (%s): unlisted, repeated or '
                                   'out of order' % (name, expected))
            if kind != REGULAR:
                raise ArchiveError('its member %s is a link, device or directory (tar type %r), not a file' % (name, kind))
            if size != entry['size']:
                raise ArchiveError('its member %s has %d bytes, its manifest says %d' % (name, size, entry['size']))
            yield entry, MemberStream(tar)
        extra = tar.next()
        if extra is not None:
            raise ArchiveError('its member %s is not in its manifest' % extra[0])
        tar.end()
    except READ_ERRORS as e:
        # Not gzip's message, which quotes the file's first bytes.
        raise ArchiveError('it is not a readable gzip tar file (%s)' % ('not gzip' if isinstance(e, gzip.BadGzipFile) else e))


def parse_manifest(data):
    """The manifest's JSON, parsed only when its containers and values are as few as a manifest of
    ENTRIES_LIMIT entries has (a megabyte of '[]' or '1.5,' would be a million Python objects)."""
    if data.count(b'{') + data.count(b'[') > 2 * ENTRIES_LIMIT + 16 or data.count(b',') > 10 * ENTRIES_LIMIT:
        raise ArchiveError('its manifest holds more lists, objects or values than one of %d files' % ENTRIES_LIMIT)
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise ArchiveError('its manifest is not JSON')


def octal(field):
    """A ustar number field: octal digits ended by NUL or space (base-256 numbers are refused)."""
    digits = field.rstrip(b'\0 ').lstrip(b' ')
    if not re.fullmatch(rb'[0-7]{0,12}', digits):
        raise ArchiveError('it has a tar header whose number field %r is not octal' % field)
    return int(digits or b'0', 8)


def pax_records(data):
    """{key: value} of a PAX extended header, the keys our writer emits only."""
    records = {}
    while data:
        length, _space, rest = data.partition(b' ')
        if not length.isdigit() or not 0 < int(length) <= len(data) or data[int(length) - 1:int(length)] != b'\n':
            raise ArchiveError('it has a malformed PAX header')
        key, equals, value = rest[:int(length) - len(length) - 2].partition(b'=')
        if not equals or key.decode('ascii', 'replace') not in PAX_KEYS:
            raise ArchiveError('it has a PAX header record %r, which root_dir never writes (GNU sparse files and other '
                               'tar extensions are refused)' % key[:40])
        records[key.decode()] = value.decode('utf-8', 'surrogateescape')
        data = data[int(length):]
    return records


class TarStream:
    """A strict reader of the tar files our writer makes (tarfile, PAX format): regular files,
    each after at most one PAX header of a path or size; every header bounded and checked
    before it is believed. tarfile's own reader would allocate a PAX or GNU long-name header
    whole and present a sparse member at its declared size."""

    def __init__(self, f):
        self.f = f
        self.data = 0  # what is left of the current member's data
        self.pad = 0  # and of the zeros after it, to its last block

    def read(self, size):
        """Exactly size bytes of the stream (the caller bounds size); ArchiveError when it ends."""
        data = self.f.read(size)
        if len(data) != size:
            raise ArchiveError('it ends within a member: it was cut off')
        return data

    def read_data(self, size):
        """At most size bytes of the current member's data; b'' at its end."""
        data = self.read(min(size, self.data))
        self.data -= len(data)
        return data

    def next(self):
        """(name, kind, size) of the next member, or None at the end of the archive."""
        while self.data:
            self.read_data(CHUNK)
        self.read(self.pad)
        pax = {}
        while True:
            block = self.read(BLOCK)
            if block == bytes(BLOCK):
                if pax:
                    raise ArchiveError('it has a PAX header followed by no member')
                return None
            if block[257:265] != b'ustar\x0000':
                raise ArchiveError('it has a tar header that is not POSIX ustar')
            if octal(block[148:156]) != sum(block[:148]) + 32 * 8 + sum(block[156:]):
                raise ArchiveError('it has a tar header whose checksum is wrong')
            kind, size = block[156:157], octal(block[124:136])
            if kind != b'x':
                break
            if pax or size > PAX_LIMIT:
                raise ArchiveError('it has a PAX header of %d bytes, or two in a row: root_dir writes one of at most '
                                   '%d bytes' % (size, PAX_LIMIT))
            pax = pax_records(self.read(size))
            self.read(-size % BLOCK)
        prefix, name = block[345:500].rstrip(b'\0'), block[:100].rstrip(b'\0')
        name = pax.get('path') or (prefix + b'/' + name if prefix else name).decode('utf-8', 'surrogateescape')
        if kind not in (b'0', b'\0'):
            return name, kind.decode('ascii', 'replace'), 0
        if 'size' in pax:
            if not pax['size'].isdigit():
                raise ArchiveError('it has a PAX header whose size %r is not a number' % pax['size'][:40])
            size = int(pax['size'])
        self.data, self.pad = size, -size % BLOCK
        return name, REGULAR, size

    def end(self):
        """After the end-of-archive block: nothing but the zeros that pad the last record."""
        rest = self.f.read(RECORD + 1)
        if len(rest) > RECORD or rest.count(0) != len(rest):
            raise ArchiveError('it has data after its end')


class MemberStream:
    """The data of a TarStream's current member, as a file object."""

    def __init__(self, tar):
        self.read = tar.read_data


def copy_member(entry, stream, write=None):
    """Read a member's data (to write(chunk) when given) and check its sha256; the first bytes."""
    digest = hashlib.sha256()
    head = b''
    left = entry['size']
    try:
        while left:
            chunk = stream.read(min(CHUNK, left))
            if not chunk:
                raise ArchiveError('its member %s%s ends early' % (MEMBER_PREFIX, entry['path']))
            left -= len(chunk)
            digest.update(chunk)
            if len(head) < QCOW2_HEAD:
                head += chunk[:QCOW2_HEAD - len(head)]
            if write is not None:
                write(chunk)
    except READ_ERRORS as e:
        raise ArchiveError('it is not a readable gzip tar file (%s)' % e)
    if digest.hexdigest() != entry['sha256']:
        raise ArchiveError('its member %s%s does not have the sha256 its manifest lists: it was changed'
                           % (MEMBER_PREFIX, entry['path']))
    return head


# --- the host side ---------------------------------------------------------------------------
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
    """Raise RootError unless the directory of an archive may be written by root or the caller only
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
        helper = self.module.helper
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
                self.act(action)
            return dict(manifest=summary(self.manifest(root_dir, domains, {}, disks, entries)), restarted=running)
        versions = helper.versions()
        stopped = []
        try:
            for name in running:
                self.shutdown(name)
                stopped.append(name)
            # The start lock keeps other tasks from starting a helper while the root is copied.
            lock = self.module.client.start_lock(root_dir)
            try:
                self.act('stop helper')
                self.module.client.stop()
                left = qemu_processes(self.path)
                if left:
                    raise HelperClientError('QEMU processes %s of root %s run without its helper knowing them, and '
                                            'could write to its disks' % (', '.join(map(str, left)), self.path),
                                            'guest_state', 'stop them and archive again')
                manifest = self.manifest(root_dir, domains, versions, disks, scan(root_dir, self.warnings))
                self.act('write %s' % dest)
                written = self.write(root_dir, manifest, dest)
            finally:
                os.close(lock)
        finally:
            self.restart(stopped)
        return dict(manifest=summary(manifest), restarted=stopped, size=written.size,
                    sha256=written.digest.hexdigest())

    def shutdown(self, name):
        self.act('shutdown %s' % name)
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
            self.act('start %s' % name)
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
            self.act('restore %s from %s' % (self.path, src))
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
        """The archive, opened through its directory's descriptor (links on the way only of root's or
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
        manifest names that owner only when root or the task's user wrote the archive (writer): anyone
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
        fit where it is restored (checked before any member is read), and a root of root's holds
        only what root may run, unless root's own archive of a root of root's."""
        src = os.fstat(archive.fileno())
        members = read_archive(archive)
        manifest = next(members)
        where = os.path.dirname(self.path)
        fs = os.statvfs(where)
        check_budget(manifest, src.st_size, fs.f_bavail * fs.f_frsize, where)
        # Only the task's user or root wrote a file of theirs that nobody else may write.
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
        created here; an earlier release's default (QEMU as root) becomes today's."""
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
        by qemu-img: the image comes from the archive, and no program of root's parses it."""
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
