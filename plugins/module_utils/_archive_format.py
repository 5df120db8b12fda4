# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What an archive of a root is, for both directions (root_dir state=archived and state=restored).

An archive is a gzip tar file: its first member is a manifest (JSON) that lists every
directory and file of the root with its mode, size and sha256; the files follow as
root/<path>, in the manifest's order, and nothing else. Here: the manifest's checks, and a tar
reader that bounds what it reads (sizes and names in an archive are claims, not facts).
"""


import fnmatch
import gzip
import hashlib
import json
import os
import re
import tarfile
import zlib

from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import (
    ARCHIVED_EMPTY, AUTOSTART_DIR, MARKER_NAME, NAMES_ROOT, NOT_ARCHIVED, SAVE_DIR, RootError, check_root_path)

FORMAT = 'embedvirt.libvirt root archive'
FORMAT_VERSION = 1
MANIFEST = 'manifest.json'
MEMBER_PREFIX = 'root/'
# Bounds on what a restore holds in memory of the manifest (about 170 bytes an entry).
MANIFEST_LIMIT = 4 << 20
ENTRIES_LIMIT = 20000
CHUNK = 1 << 20
QCOW2_HEAD = 64 << 10
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


class ArchiveError(Exception):
    """An archive that is not one of this collection's, or does not match its manifest."""


def matches(relative, pattern):
    """Whether a path below a root matches a pattern of _root (fnmatch per path component)."""
    names, patterns = relative.split('/'), pattern.split('/')
    return len(names) == len(patterns) and all(fnmatch.fnmatchcase(n, p) for n, p in zip(names, patterns))


def names_root(relative):
    return any(matches(relative, pattern) for pattern in NAMES_ROOT)


def moved_path(path, old, new):
    """path with the root old replaced by new, or None when it is not at or below old."""
    if path == old or path.startswith(old + '/'):
        return new + path[len(old):]
    return None


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
