# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The archive's pure logic: the manifest and member checks a restore makes before it writes
anything (each tamper case refused), path rewriting, and qcow2 backing names."""

import copy
import hashlib
import io
import json
import os
import pwd
import shutil
import socket
import stat
import struct
import subprocess
import tarfile
import time
import tracemalloc
import zlib

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils._archive import boot_files, scan
from ansible_collections.embedvirt.libvirt.plugins.module_utils._archive_format import (
    FORMAT, FORMAT_VERSION, MANIFEST, ArchiveError, check_budget, check_manifest, copy_member, moved_path, names_root,
    read_archive)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._qemu_conf import render, settings_for
from ansible_collections.embedvirt.libvirt.plugins.module_utils._restore import (
    RootRestore, check_for_root, moved_backing, rewrite_paths, set_backing_name)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import RootError, libvirt_root
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import RootDir, open_dir_path
from ansible_collections.embedvirt.libvirt.plugins.module_utils._volume import qcow2_header

OLD = '/srv/vms'
FILES = {
    '.embedvirt-root': b'{"root": "/srv/vms"}',
    'etc/qemu/g.xml': b"<domain><source file='/srv/vms/images/g.qcow2'/></domain>",
    'images/g.qcow2': b'\0' * 70000 + b'data',
}


def entry(path, data):
    return dict(path=path, type='file', mode=0o600, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def good_manifest():
    return dict(format=FORMAT, version=FORMAT_VERSION, root=OLD, mode=0o700, files=[
        entry('.embedvirt-root', FILES['.embedvirt-root']),
        dict(path='etc', type='dir', mode=0o700),
        dict(path='images', type='dir', mode=0o700),
        dict(path='etc/qemu', type='dir', mode=0o755),
        dict(path='etc/qemu/autostart', type='dir', mode=0o755),
        entry('etc/qemu/g.xml', FILES['etc/qemu/g.xml']),
        dict(path='etc/qemu/autostart/g.xml', type='autostart', target='etc/qemu/g.xml'),
        entry('images/g.qcow2', FILES['images/g.qcow2']),
    ])


def make_archive(manifest=None, members=None, manifest_first=True):
    """An archive as bytes: the manifest, then members [(name, data or ('type', a TarInfo type))]."""
    manifest = good_manifest() if manifest is None else manifest
    if members is None:
        members = [('root/' + e['path'], FILES[e['path']]) for e in manifest['files'] if e['type'] == 'file']
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz', format=tarfile.PAX_FORMAT) as tar:
        data = json.dumps(manifest).encode()
        listed = [(MANIFEST, data)] + list(members)
        if not manifest_first:
            listed = listed[1:] + listed[:1]
        for name, content in listed:
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type, info.linkname = content[1], '/etc/shadow'
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def verify(data):
    """What a restore's first pass does: every member read and checked."""
    members = read_archive(io.BytesIO(data))
    manifest = next(members)
    return manifest, [copy_member(e, stream) and e['path'] for e, stream in members]


def test_a_good_archive_verifies():
    manifest, paths = verify(make_archive())
    assert manifest == good_manifest()
    assert paths == ['.embedvirt-root', 'etc/qemu/g.xml', 'images/g.qcow2']


def test_copy_member_writes_what_it_checked():
    members = read_archive(io.BytesIO(make_archive()))
    next(members)
    written = {}
    for e, stream in members:
        chunks = []
        copy_member(e, stream, chunks.append)
        written[e['path']] = b''.join(chunks)
    assert written == FILES


def changed_byte():
    files = dict(FILES)
    files['etc/qemu/g.xml'] = b'X' + FILES['etc/qemu/g.xml'][1:]
    return [('root/' + p, files[p]) for p in ('.embedvirt-root', 'etc/qemu/g.xml', 'images/g.qcow2')]


def listed(*paths):
    return [('root/' + p, FILES[p]) for p in paths]


@pytest.mark.parametrize('members, says', [
    (changed_byte(), 'root/etc/qemu/g.xml does not have the sha256 its manifest lists'),
    (listed('.embedvirt-root', 'etc/qemu/g.xml', 'images/g.qcow2') + [('root/etc/qemu/evil.xml', b'x')],
     'root/etc/qemu/evil.xml is not in its manifest'),
    (listed('.embedvirt-root', 'etc/qemu/g.xml'), 'lacks the member root/images/g.qcow2'),
    (listed('.embedvirt-root', 'images/g.qcow2', 'etc/qemu/g.xml'), 'root/images/g.qcow2 is not the next'),
    (listed('.embedvirt-root', 'etc/qemu/g.xml', 'etc/qemu/g.xml'), 'root/etc/qemu/g.xml is not the next'),
    (listed('.embedvirt-root') + [('root/etc/qemu/g.xml', ('type', tarfile.SYMTYPE))], 'is a link, device or directory'),
    (listed('.embedvirt-root') + [('root/etc/qemu/g.xml', ('type', tarfile.CHRTYPE))], 'is a link, device or directory'),
    (listed('.embedvirt-root') + [('root/etc/qemu/g.xml', FILES['etc/qemu/g.xml'] + b' ')],
     'root/etc/qemu/g.xml has %d bytes, its manifest says %d' % (len(FILES['etc/qemu/g.xml']) + 1,
                                                                 len(FILES['etc/qemu/g.xml']))),
    (listed('.embedvirt-root') + [('/etc/qemu/g.xml', b'x')], 'is not the next its manifest lists'),
    (listed('.embedvirt-root') + [('root/../etc/qemu/g.xml', b'x')], 'is not the next its manifest lists'),
])
def test_a_tampered_member_is_refused(members, says):
    with pytest.raises(ArchiveError) as err:
        verify(make_archive(members=members))
    assert says in str(err.value)


def tampered(change):
    manifest = good_manifest()
    change(manifest)
    return manifest


@pytest.mark.parametrize('manifest, says', [
    (tampered(lambda m: m.update(version=2)), 'format version 2, and this release of embedvirt.libvirt reads version 1'),
    (tampered(lambda m: m.update(format='tar')), 'not an archive of a root made by embedvirt.libvirt'),
    (tampered(lambda m: m.update(root='srv/vms')), 'names no valid root'),
    (tampered(lambda m: m.update(root='/' + 'a' * 701)), 'names no valid root'),
    (tampered(lambda m: m['files'].append(entry('/etc/passwd', b'x'))), "'/etc/passwd', which is not a path below a root"),
    (tampered(lambda m: m['files'].append(entry('etc/../../x', b'x'))), 'which is not a path below a root'),
    (tampered(lambda m: m['files'].append(entry('etc//x', b'x'))), 'which is not a path below a root'),
    (tampered(lambda m: m['files'].append(entry('etc/qemu/g.xml', b'x'))), 'lists etc/qemu/g.xml twice'),
    (tampered(lambda m: m['files'].append(entry('lib/x', b'x'))), 'lists lib/x before (or without) its directory'),
    (tampered(lambda m: m['files'].insert(0, dict(path='etc/qemu/x', type='dir', mode=0o700))), 'before (or without)'),
    (tampered(lambda m: m['files'][-1].update(sha256='0' * 63)), 'no valid size and sha256'),
    (tampered(lambda m: m['files'][-1].update(size=-1)), 'no valid size and sha256'),
    (tampered(lambda m: m['files'][-1].update(mode='0644')), 'no valid mode'),
    (tampered(lambda m: m['files'][-1].update(type='link')), "as a 'link'"),
    (tampered(lambda m: m['files'][6].update(target='../../etc/shadow')), "not one of libvirt's autostart links"),
    (tampered(lambda m: m['files'][6].update(path='etc/qemu/autostart/h.xml')), "not one of libvirt's autostart links"),
    (tampered(lambda m: m['files'].pop(5)), 'names etc/qemu/g.xml, which it does not hold'),
    (tampered(lambda m: m['files'].pop(0)), 'lists no .embedvirt-root'),
    (tampered(lambda m: m.update(files={})), 'no list of files'),
    (tampered(lambda m: m.update(outside=[{}])), 'no valid list of the files outside the root'),
    (tampered(lambda m: m.update(files=m['files'] * 3000)), 'more than the 20000 of a root'),
    (tampered(lambda m: m['files'].append(entry('run/qemu/g.xml', b'x'))), 'run/qemu/g.xml, which an archive of root_dir never holds'),
    (tampered(lambda m: m['files'].append(entry('lib/qemu/save/g.save', b'x'))), 'lib/qemu/save/g.save, which an archive'),
    (tampered(lambda m: m['files'].append(dict(path='lib/qemu/domain-1-g', type='dir', mode=0o700))), 'never holds'),
])
def test_a_tampered_manifest_is_refused(manifest, says):
    with pytest.raises(ArchiveError) as err:
        check_manifest(manifest)
    assert says in str(err.value)
    # Before any member is read.
    with pytest.raises(ArchiveError):
        next(read_archive(io.BytesIO(make_archive(manifest, members=[]))))


@pytest.mark.parametrize('data, says', [
    (b'not gzip at all', 'not a readable gzip tar file'),
    (make_archive()[:200], 'not a readable gzip tar file'),
    (make_archive(manifest_first=False), 'its first member is not manifest.json'),
])
def test_what_is_not_an_archive_is_refused(data, says):
    with pytest.raises(ArchiveError) as err:
        verify(data)
    assert says in str(err.value)


def test_a_manifest_that_is_not_json_is_refused():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size = 3
        tar.addfile(info, io.BytesIO(b'{x]'))
    with pytest.raises(ArchiveError) as err:
        verify(buffer.getvalue())
    assert 'not JSON' in str(err.value)


def test_the_good_manifest_is_not_changed_by_checking():
    manifest = good_manifest()
    before = copy.deepcopy(manifest)
    assert [e['path'] for e in check_manifest(manifest)] == ['.embedvirt-root', 'etc/qemu/g.xml', 'images/g.qcow2']
    assert manifest == before


# --- path rewriting ---------------------------------------------------------------------------
@pytest.mark.parametrize('text, wanted, count', [
    (b"<source file='/srv/vms/images/g.qcow2'/>", b"<source file='/new/r/images/g.qcow2'/>", 1),
    (b'<nvram>/srv/vms/lib/qemu/nvram/g_VARS.fd</nvram>', b'<nvram>/new/r/lib/qemu/nvram/g_VARS.fd</nvram>', 1),
    (b'<volume>/srv/vms/images/enc.qcow2</volume>', b'<volume>/new/r/images/enc.qcow2</volume>', 1),
    (b'"/srv/vms"', b'"/new/r"', 1),
    (b'/srv/vms', b'/new/r', 1),
    (b'path=/srv/vms/log/x,append=on', b'path=/new/r/log/x,append=on', 1),
    (b"<a>/srv/vms/a</a><b>/srv/vms</b>", b"<a>/new/r/a</a><b>/new/r</b>", 2),
])
def test_rewrite_paths_moves_the_root(text, wanted, count):
    assert rewrite_paths(text, OLD, '/new/r') == (wanted, count)


def test_rewrite_paths_moves_what_libvirt_named_below_a_long_root_s_alias():
    old = '/home/u/' + 'v' * 150
    for uid in (0, 1000):
        text = ("<nvram>%s/lib/qemu/nvram/g_VARS.fd</nvram><disk>%s/images/g.qcow2</disk><o>%sx/a</o>"
                % (libvirt_root(old, uid), old, libvirt_root(old, uid))).encode()
        assert rewrite_paths(text, old, '/new/r') == (
            ("<nvram>/new/r/lib/qemu/nvram/g_VARS.fd</nvram><disk>/new/r/images/g.qcow2</disk><o>%sx/a</o>"
             % libvirt_root(old, uid)).encode(), 2)


# Another root that starts alike, a path that merely ends alike.
@pytest.mark.parametrize('text', [
    b"'/srv/vms-2/images/g.qcow2'", b"'/srv/vms2/x'", b"'/srv/vms.old/x'", b"'/x/srv/vms/images/g.qcow2'",
    b"'a/srv/vms/x'", b'/srv/vm/x',
])
def test_rewrite_paths_leaves_other_paths(text):
    assert rewrite_paths(text, OLD, '/new/r') == (text, 0)


def test_rewrite_paths_takes_the_new_root_literally():
    assert rewrite_paths(b'/srv/vms/x', OLD, '/a\\1@b')[0] == b'/a\\1@b/x'


@pytest.mark.parametrize('path, moved', [
    ('/srv/vms', '/new'), ('/srv/vms/images/x', '/new/images/x'), ('/srv/vms-2/x', None), ('/srv', None),
    ('images/x', None),
])
def test_moved_path(path, moved):
    assert moved_path(path, OLD, '/new') == moved


@pytest.mark.parametrize('path, rewritten', [
    ('etc/qemu/g.xml', True), ('etc/secrets/u.xml', True), ('lib/qemu/snapshot/g/s.xml', True),
    ('etc/qemu.conf', True), ('etc/qemu/autostart/g.xml', False), ('etc/secrets/u.base64', False),
    ('lib/qemu/snapshot/g.xml', False), ('images/g.xml', False), ('log/qemu/g.log', False),
])
def test_which_files_name_the_root(path, rewritten):
    assert names_root(path) == rewritten


# --- qcow2 headers ----------------------------------------------------------------------------
def qcow2(backing=None, backing_format=None, version=3, encrypted=False):
    header_length = 104 if version >= 3 else 72
    extensions = b''
    if backing_format:
        name = backing_format.encode()
        extensions += struct.pack('>II', 0xE2792ACA, len(name)) + name + b'\0' * (-len(name) % 8)
    extensions += struct.pack('>II', 0, 0)
    offset = header_length + len(extensions) if backing else 0
    header = struct.pack('>4sIQI', b'QFI\xfb', version, offset, len(backing.encode()) if backing else 0)
    header += struct.pack('>IQI', 16, 1 << 24, 1 if encrypted else 0)
    header = header.ljust(100, b'\0') + (struct.pack('>I', header_length) if version >= 3 else b'')
    return header[:header_length] + extensions + (backing.encode() if backing else b'')


def reader(data):
    return lambda offset, length: data[offset:offset + length]


@pytest.mark.parametrize('data, wanted', [
    (qcow2('/srv/vms/images/base/b.qcow2', 'qcow2'),
     dict(backing='/srv/vms/images/base/b.qcow2', format='qcow2', encrypted=False)),
    (qcow2('base/b.qcow2', 'raw', encrypted=True), dict(backing='base/b.qcow2', format='raw', encrypted=True)),
    (qcow2('/b.img', version=2), dict(backing='/b.img', format=None, encrypted=False)),
    (qcow2(), dict(backing=None, format=None, encrypted=False)),
    (b'\0' * 512, None),
    (b'QFI', None),
])
def test_qcow2_header(data, wanted):
    header = qcow2_header(reader(data))
    assert (header if wanted is None else dict((key, header[key]) for key in wanted)) == wanted


def test_a_backing_name_through_dotdot_or_too_long_for_its_header_is_refused():
    for backing in ('/srv/old/../../etc/shadow', 'base/../../x'):
        with pytest.raises(ArchiveError, match="through '..'"):
            moved_backing(qcow2_header(reader(qcow2(backing))), '/srv/old', '/srv/new')
    header = qcow2_header(reader(qcow2('/srv/old/images/b.qcow2')))
    assert moved_backing(header, '/srv/old', '/srv/new') == '/srv/new/images/b.qcow2'
    assert moved_backing(header, '/srv/other', '/srv/new') is None
    assert moved_backing(qcow2_header(reader(qcow2('b.qcow2'))), '/srv/old', '/srv/new') is None
    with pytest.raises(ArchiveError, match='would not fit'):
        moved_backing(dict(header, cluster_size=header['backing_offset'] + 23), '/srv/old', '/srv/newer')


@pytest.mark.skipif(shutil.which('qemu-img') is None, reason='needs qemu-img')
def test_a_renamed_backing_file_is_what_qemu_img_reads(short_tmp):
    old = os.path.join(short_tmp, 'o')
    new = os.path.join(short_tmp, 'a-much-longer-new-root-path')
    for root in (old, new):
        os.mkdir(root)
        subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', root + '/base.qcow2', '1M'])
    overlay = os.path.join(short_tmp, 'overlay.qcow2')
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', old + '/base.qcow2', '-F', 'qcow2', overlay])
    fd = os.open(overlay, os.O_RDWR)
    try:
        header = qcow2_header(lambda offset, length: os.pread(fd, length, offset))
        set_backing_name(fd, header, moved_backing(header, old, new))
    finally:
        os.close(fd)
    info = json.loads(subprocess.check_output(['qemu-img', 'info', '--output=json', '-f', 'qcow2', overlay]))
    assert info['backing-filename'] == new + '/base.qcow2' and info['backing-filename-format'] == 'qcow2'
    subprocess.check_call(['qemu-img', 'check', '-q', '-f', 'qcow2', overlay])


@pytest.mark.skipif(shutil.which('qemu-img') is None, reason='needs qemu-img')
def test_an_image_with_an_external_data_file_is_seen(short_tmp):
    image = os.path.join(short_tmp, 'd.qcow2')
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'data_file=' + image + '.data', image, '1M'])
    with open(image, 'rb') as f:
        assert qcow2_header(lambda offset, length: os.pread(f.fileno(), length, offset))['data_file']


@pytest.mark.skipif(shutil.which('qemu-img') is None, reason='needs qemu-img')
def test_qcow2_header_of_images_qemu_img_made(short_tmp):
    base = os.path.join(short_tmp, 'base.qcow2')
    overlay = os.path.join(short_tmp, 'overlay.qcow2')
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', base, '1M'])
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay])
    for path, wanted in ((base, None), (overlay, base)):
        with open(path, 'rb') as f:
            header = qcow2_header(lambda offset, length: os.pread(f.fileno(), length, offset))
        assert header['backing'] == wanted
        assert header['format'] == ('qcow2' if wanted else None)


# --- what an archive of a root holds ----------------------------------------------------------
def make_root(path):
    for directory in ('etc/qemu/autostart', 'images', 'run/qemu', 'lib/qemu/channel/target', 'lib/qemu/domain-1-g',
                      'cache/qemu'):
        os.makedirs(os.path.join(path, directory), mode=0o700)
    for name in ('.embedvirt-root', 'etc/qemu/g.xml', 'images/g.qcow2', 'run/qemu/driver.pid',
                 'lib/qemu/domain-1-g/master-key.aes', 'cache/qemu/caps.xml'):
        with open(os.path.join(path, name), 'wb') as f:
            f.write(b'x')
    os.symlink(os.path.join(path, 'etc/qemu/g.xml'), os.path.join(path, 'etc/qemu/autostart/g.xml'))
    return RootDir(path, open_dir_path(path))


def test_scan_holds_the_root_less_its_runtime_state(short_tmp):
    with make_root(short_tmp) as root_dir:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(os.path.join(short_tmp, 'images/s.sock'))
        sock.close()
        warnings = []
        entries = scan(root_dir, warnings)
    assert [(e['path'], e['type']) for e in entries] == [
        ('.embedvirt-root', 'file'), ('cache', 'dir'), ('etc', 'dir'), ('images', 'dir'), ('lib', 'dir'),
        ('run', 'dir'), ('etc/qemu', 'dir'), ('images/g.qcow2', 'file'), ('lib/qemu', 'dir'),
        ('etc/qemu/autostart', 'dir'), ('etc/qemu/g.xml', 'file'), ('lib/qemu/channel', 'dir'),
        ('etc/qemu/autostart/g.xml', 'autostart')]
    assert entries[-1]['target'] == 'etc/qemu/g.xml'
    assert warnings == ['left out the socket %s/images/s.sock: a socket holds nothing to archive' % short_tmp]
    check_manifest(dict(format=FORMAT, version=FORMAT_VERSION, root=short_tmp, mode=0o700,
                        files=[dict(e, sha256='0' * 64) if e['type'] == 'file' else e for e in entries]))


@pytest.mark.parametrize('make', [
    lambda path: os.symlink('/etc/shadow', os.path.join(path, 'images/x')),
    lambda path: os.symlink('/elsewhere/g.xml', os.path.join(path, 'etc/qemu/autostart/h.xml')),
    lambda path: os.mkfifo(os.path.join(path, 'images/fifo')),
])
def test_scan_refuses_links_and_fifos(short_tmp, make):
    with make_root(short_tmp) as root_dir:
        make(short_tmp)
        with pytest.raises(RootError) as err:
            scan(root_dir, [])
    assert 'symbolic link, FIFO or device' in str(err.value)


def test_scan_refuses_a_directory_others_may_write(short_tmp):
    with make_root(short_tmp) as root_dir:
        os.chmod(os.path.join(short_tmp, 'images'), 0o777)
        with pytest.raises(RootError) as err:
            scan(root_dir, [])
    assert 'writable by group or others' in str(err.value)


@pytest.mark.parametrize('xml, files', [
    ("<domain><os><type>hvm</type><kernel>/k/vmlinuz</kernel><initrd>/k/initrd.img</initrd></os></domain>",
     ['/k/vmlinuz', '/k/initrd.img']),
    ("<domain><os><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>"
     "<nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/r/lib/qemu/nvram/g_VARS.fd</nvram></os></domain>",
     ['/usr/share/OVMF/OVMF_CODE.fd', '/usr/share/OVMF/OVMF_VARS.fd']),
    ("<domain><os><type>hvm</type></os></domain>", []),
    ("<domain/>", []),
])
def test_boot_files(xml, files):
    assert boot_files(xml) == files


def test_scan_refuses_a_file_of_another_user(short_tmp):
    with make_root(short_tmp) as root_dir:
        os.chown(os.path.join(short_tmp, 'images/g.qcow2'), 1, 1)
        with pytest.raises(RootError) as err:
            scan(root_dir, [])
    assert 'belongs to uid 1, not to the owner of the root' in str(err.value)


# --- a restore, up to qemu-img (faked) ---------------------------------------------------------
class FakeModule:
    """What RootRestore needs of EmbedvirtModule."""

    def __init__(self, path):
        self.params = dict(src='archive')
        self.check_mode = False
        self.client = type('Client', (), {'root': type('Root', (), {'path': path})})()

    def fail(self, msg, **kwargs):
        raise Failed(msg, kwargs)


class Failed(Exception):
    """What FakeModule.fail raises: (msg, the other fields)."""


def restorable(old, backing='/images/base.qcow2'):
    """(manifest, archive bytes) of a root at old: a domain XML, a marker, an autostart link and a
    qcow2 image whose backing file is named by its absolute path in the root."""
    files = {
        '.embedvirt-root': json.dumps({'root': old, 'lifecycle': 'persistent', 'created': 'then'}).encode(),
        'etc/qemu/g.xml': ("<domain><source file='%s/images/g.qcow2'/></domain>" % old).encode(),
        'images/g.qcow2': qcow2(old + backing, 'qcow2'),
        'images/base.qcow2': qcow2(),
    }
    manifest = dict(format=FORMAT, version=FORMAT_VERSION, root=old, mode=0o750, files=[
        entry('.embedvirt-root', files['.embedvirt-root']),
        dict(path='etc', type='dir', mode=0o700), dict(path='images', type='dir', mode=0o777),
        dict(path='etc/qemu', type='dir', mode=0o755), dict(path='etc/qemu/autostart', type='dir', mode=0o755),
        entry('etc/qemu/g.xml', files['etc/qemu/g.xml']),
        dict(path='etc/qemu/autostart/g.xml', type='autostart', target='etc/qemu/g.xml'),
        dict(entry('images/g.qcow2', files['images/g.qcow2']), mode=0o4755),
        entry('images/base.qcow2', files['images/base.qcow2'])])
    members = [('root/' + e['path'], files[e['path']]) for e in manifest['files'] if e['type'] == 'file']
    return manifest, make_archive(manifest, members)


def test_a_restore_rewrites_the_old_root_and_leaves_nothing_else(short_tmp):
    new = os.path.join(short_tmp, 'new')
    manifest, data = restorable('/srv/old')
    module = FakeModule(new)
    restorer = RootRestore(module)
    restorer.restore(io.BytesIO(data), manifest, os.geteuid(), os.getegid())
    assert os.listdir(short_tmp) == ['new']
    with open(os.path.join(new, 'etc/qemu/g.xml'), 'rb') as f:
        assert f.read() == ("<domain><source file='%s/images/g.qcow2'/></domain>" % new).encode()
    with open(os.path.join(new, '.embedvirt-root')) as f:
        assert json.load(f) == {'root': new, 'lifecycle': 'persistent', 'created': 'then',
                                'created_by': 'embedvirt.libvirt'}
    assert os.readlink(os.path.join(new, 'etc/qemu/autostart/g.xml')) == new + '/etc/qemu/g.xml'
    assert restorer.rewritten == ['etc/qemu/g.xml']
    assert restorer.rebased == ['images/g.qcow2']
    with open(os.path.join(new, 'images/g.qcow2'), 'rb') as f:
        header = qcow2_header(lambda offset, length: os.pread(f.fileno(), length, offset))
    assert (header['backing'], header['format']) == (new + '/images/base.qcow2', 'qcow2')
    # Group and others never write, and no set-uid bit survives.
    modes = dict((path, stat.S_IMODE(os.lstat(os.path.join(new, path)).st_mode))
                 for path in ('', 'images', 'images/g.qcow2', 'etc/qemu'))
    assert modes == {'': 0o750, 'images': 0o755, 'images/g.qcow2': 0o755, 'etc/qemu': 0o755}


@pytest.mark.parametrize('fail', ['backing', 'changed'])
def test_a_failed_restore_leaves_nothing(short_tmp, fail):
    new = os.path.join(short_tmp, 'new')
    # A backing name the first pass would have refused fails the last step of the unpacking.
    manifest, data = restorable('/srv/old', '/images/../../etc/x' if fail == 'backing' else '/images/base.qcow2')
    if fail == 'changed':  # the archive differs from the manifest the first pass checked
        manifest = copy.deepcopy(manifest)
        manifest['created'] = 'earlier'
    with pytest.raises((RootError, ArchiveError)) as err:
        RootRestore(FakeModule(new)).restore(io.BytesIO(data), manifest, os.geteuid(), os.getegid())
    assert ("through '..'" if fail == 'backing' else 'it changed while it was restored') in str(err.value)
    assert os.listdir(short_tmp) == []


# --- hostile archives: refused in bounded memory and time ---------------------------------------
def tar_header(name, size, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(tarfile.USTAR_FORMAT)


def padded(data):
    return data + bytes(-len(data) % 512)


def pax(records):
    data = b''
    for key, value in records.items():
        record = ' %s=%s\n' % (key, value)
        length = len(record)
        while len(str(length)) + len(record) != length:
            length = len(str(length)) + len(record)
        data += ('%d%s' % (length, record)).encode()
    return tar_header('././@PaxHeader', len(data), tarfile.XHDTYPE) + padded(data)


def gzipped(*parts):
    """A gzip stream of the parts, each bytes or (block, count): count copies of block, compressed once
    and repeated (after a full flush, deflate refers to nothing before): a gzip bomb costs the test nothing."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    out, crc, size = [b'\x1f\x8b\x08\0\0\0\0\0\0\xff'], 0, 0
    for part in parts:
        block, count = part if isinstance(part, tuple) else (part, 1)
        out.append((compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)) * count)
        for _copy in range(count):
            crc = zlib.crc32(block, crc)
        size += len(block) * count
    out += [compressor.flush(), struct.pack('<II', crc, size & 0xffffffff)]
    return b''.join(out)


def member(name, data):
    return tar_header(name, len(data)) + padded(data)


def manifest_member(manifest):
    return member(MANIFEST, json.dumps(manifest).encode())


def huge_manifest(size):
    """The good manifest and its first two members, its image declared of size bytes."""
    manifest = good_manifest()
    manifest['files'][-1].update(size=size)
    return manifest_member(manifest) + b''.join(member('root/' + p, FILES[p]) for p in ('.embedvirt-root', 'etc/qemu/g.xml'))


MIB = 1 << 20


@pytest.mark.parametrize('data, says', [
    # Extension headers declaring 64 MiB that the stream really holds (tarfile reads them whole).
    (gzipped(tar_header('././@PaxHeader', 64 * MIB, tarfile.XHDTYPE), (bytes(MIB), 64)), 'PAX header of 67108864 bytes'),
    (gzipped(tar_header('././@LongLink', 64 * MIB, tarfile.GNUTYPE_LONGNAME), (bytes(MIB), 64)),
     'its first member is not manifest.json'),
    # A sparse member of 16 GiB (tarfile would present, and copy_member hash, 16 GiB of zeros).
    (gzipped(huge_manifest(16 << 30), pax({'GNU.sparse.major': 1, 'GNU.sparse.minor': 0, 'GNU.sparse.realsize': 16 << 30,
                                           'GNU.sparse.name': 'root/images/g.qcow2'}),
             member('root/images/g.qcow2', b'0\n'), bytes(1024)), "PAX header record b'GNU.sparse.major'"),
    # A manifest of a million empty objects, of a million numbers, and one nested two million deep.
    (gzipped(member(MANIFEST, b'[' + b','.join([b'{}'] * 1000000) + b']')), 'more lists, objects or values'),
    (gzipped(member(MANIFEST, b'[' + b','.join([b'1.5'] * 1000000) + b']')), 'more lists, objects or values'),
    (gzipped(tar_header(MANIFEST, 2 * MIB) + b'[' * 2 * MIB), 'more lists, objects or values'),
    (gzipped(tar_header(MANIFEST, 64 * MIB), (bytes(MIB), 64)), 'its first member is not manifest.json'),
])
def test_a_hostile_archive_is_refused_in_bounded_memory_and_time(data, says):
    assert len(data) < 4 * MIB
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(Exception) as err:
            verify(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MIB and time.monotonic() - started < 5
    assert err.type is ArchiveError and says in str(err.value)


def test_a_member_is_read_in_bounded_chunks_whatever_its_size():
    """A gzip bomb of a member: 256 MiB of zeros in 256 KiB, read and hashed chunk by chunk."""
    data = gzipped(huge_manifest(256 * MIB), tar_header('root/images/g.qcow2', 256 * MIB), (bytes(16 * MIB), 16), bytes(1024))
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveError, match='does not have the sha256'):
            verify(data)
        assert tracemalloc.get_traced_memory()[1] < 8 * MIB
    finally:
        tracemalloc.stop()


def test_what_a_manifest_declares_is_checked_against_the_archive_and_free_space():
    manifest = good_manifest()
    manifest['files'][-1].update(size=1 << 40)
    with pytest.raises(ArchiveError, match='more than gzip can hold'):
        check_budget(manifest, MIB, 1 << 50, '/srv')
    with pytest.raises(ArchiveError, match='/srv has 1000 bytes free'):
        check_budget(good_manifest(), MIB, 1000, '/srv')
    check_budget(good_manifest(), MIB, MIB, '/srv')


def test_a_restore_refuses_what_the_manifest_declares_before_it_reads_the_members(short_tmp):
    """1 GiB of zeros in the archive, and a manifest that declares 8 GiB: refused before any is read."""
    manifest = good_manifest()
    manifest['files'][-1].update(size=(8 << 30) - 1)
    manifest['owner'] = 'nobody'
    path = os.path.join(short_tmp, 'a.tar.gz')
    with open(path, 'wb') as f:
        f.write(gzipped(manifest_member(manifest), b''.join(member('root/' + p, FILES[p]) for p in ('.embedvirt-root', 'etc/qemu/g.xml')),
                        tar_header('root/images/g.qcow2', (8 << 30) - 1), (bytes(16 * MIB), 64)))
    module = FakeModule(os.path.join(short_tmp, 'new'))
    module.params.update(owner=None, group=None)
    started = time.monotonic()
    with open(path, 'rb') as archive:
        with pytest.raises(ArchiveError, match='more than gzip can hold'):
            RootRestore(module).verify(archive)
    assert time.monotonic() - started < 1


def test_a_qcow2_header_declaring_more_than_its_first_cluster_is_refused():
    """qemu takes a backing name of 1023 bytes at most, in the first cluster (512 B to 2 MiB): a header
    declaring 2 GiB would have set_backing_name allocate and write 2 GiB."""
    data = bytearray(qcow2('/srv/old/images/b.qcow2'))
    for field, value in ((16, struct.pack('>I', 1 << 31)), (20, struct.pack('>I', 31))):
        changed = bytearray(data)
        changed[field:field + 4] = value
        with pytest.raises(ArchiveError, match='qemu would refuse it'):
            moved_backing(qcow2_header(reader(bytes(changed))), '/srv/old', '/srv/new')


# --- what a root of root's takes from an archive that is not root's own ---------------------------
DOMAIN = '''<domain type='qemu'><name>g</name><description>see /etc/x</description>
<metadata><x:os xmlns:x='http://libosinfo.org/xmlns/libvirt/domain/1.0' id='http://debian.org/debian/12'/></metadata>
<devices><emulator>%s</emulator><disk type='file'><source file='%s'/></disk></devices></domain>'''
EMULATOR = '/usr/bin/qemu-system-x86_64'


@pytest.mark.parametrize('relative, data, says', [
    ('etc/qemu/g.xml', DOMAIN % ('/tmp/evil', '/new/images/g.qcow2'), 'names the emulator /tmp/evil'),
    ('etc/qemu/g.xml', DOMAIN % ('/new/bin/qemu-system-x86_64', '/new/images/g.qcow2'), 'names the emulator'),
    ('etc/qemu/g.xml', DOMAIN % (EMULATOR, '/etc/shadow'), 'names /etc/shadow, outside the root'),
    ('etc/qemu/g.xml', DOMAIN % (EMULATOR, '/new/../etc/shadow'), 'outside the root'),
    ('etc/qemu/g.xml', "<domain><os><kernel>/boot/vmlinuz</kernel></os></domain>", 'names /boot/vmlinuz'),
    ('etc/qemu/g.xml', "<domain xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><qemu:commandline>"
     "<qemu:arg value='-plugin'/></qemu:commandline></domain>", 'has a <commandline> element'),
    ('etc/qemu/g.xml', "<domain><devices><hostdev mode='subsystem'/></devices></domain>", 'has a <hostdev> element'),
    ('etc/qemu/g.xml', "<domain><devices><interface type='ethernet'><script path='evil'/></interface></devices>"
     "</domain>", 'has a <script> element'),
    ('etc/qemu/g.xml', "<!DOCTYPE d [<!ENTITY e '/etc/shadow'>]><domain>&e;</domain>", 'has a DOCTYPE'),
    pytest.param('etc/qemu/g.xml', '<domain>%s</domain>' % ('<a/>' * 1000000), 'more than a definition of libvirt holds',
                 id='a million elements'),
    ('lib/qemu/snapshot/g/s.xml', '<domainsnapshot>%s</domainsnapshot>' % (DOMAIN % ('/tmp/evil', '/new/x')),
     'names the emulator /tmp/evil'),
    ('etc/qemu.conf', render(settings_for(1000, '/r', dict(extra={'bridge_helper': '"/tmp/evil"'}))), 'sets bridge_helper'),
    ('etc/qemu.conf', render(settings_for(1000, '/r', dict(extra={'lock_manager': '"lockd"'}))), 'sets lock_manager'),
    ('etc/qemu.conf', render(settings_for(1000, '/r', dict(security_driver='/x'))), 'names the path "/x"'),
    ('etc/qemu.conf', 'user = "root"\ngroup = "root\nbridge_helper = "/tmp/evil"', 'a quote that does not end'),
])
def test_a_root_of_roots_refuses_programs_and_files_outside_it(relative, data, says):
    with pytest.raises(ArchiveError) as err:
        check_for_root(relative, data.encode(), '/new')
    assert says in str(err.value) and 'owner=' in str(err.value)


@pytest.mark.parametrize('relative, data', [
    ('etc/qemu/g.xml', DOMAIN % (EMULATOR, '/new/images/g.qcow2')),
    ('etc/qemu.conf', render(settings_for(0, '/r', mount_namespace=True))),
    ('etc/qemu.conf', render(settings_for(1000, '/r'))),
    ('etc/secrets/s.xml', "<secret><usage type='volume'><volume>/new/images/e.qcow2</volume></usage></secret>"),
])
def test_a_root_of_roots_takes_what_names_only_the_root_and_qemu(relative, data):
    if not os.path.exists(EMULATOR):
        pytest.skip('needs ' + EMULATOR)
    check_for_root(relative, data.encode(), '/new')


def test_what_is_not_gzip_is_refused_without_quoting_it():
    with pytest.raises(ArchiveError) as err:
        verify(b'root:$y$secret:19000:0:99999:7:::\n')
    assert 'root' not in str(err.value) and "b'ro'" not in str(err.value)


@pytest.mark.parametrize('mode, says', [(0o600, None), (0o644, None), (0o620, 'not to root alone'), (0o606, 'not to root alone')])
def test_a_manifest_names_the_owner_only_in_an_archive_nobody_else_may_write(short_tmp, mode, says):
    manifest = good_manifest()
    manifest['owner'] = 'nobody'
    path = os.path.join(short_tmp, 'a.tar.gz')
    with open(path, 'wb') as f:
        f.write(make_archive(manifest))
    os.chmod(path, mode)
    module = FakeModule(os.path.join(short_tmp, 'new'))
    module.params.update(owner=None, group=None)
    with open(path, 'rb') as archive:
        if says is None:
            assert RootRestore(module).verify(archive)[2] == pwd.getpwnam('nobody').pw_uid
        else:
            with pytest.raises(Failed) as err:
                RootRestore(module).verify(archive)
            assert says in err.value.args[0] and 'give owner=' in err.value.args[0]
            assert err.value.args[1] == dict(error_kind='owner')
