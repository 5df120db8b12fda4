# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Base images: downloads from a real HTTP server on loopback, verified, resumed, cached."""

import hashlib
import http.server
import os
import re
import stat
import threading
import time

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _images
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import BASE_IMAGES
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import EmbedRoot

IMAGE = os.urandom(3 << 20) + b'end'
DIGEST = 'sha256:' + hashlib.sha256(IMAGE).hexdigest()


class Server(http.server.ThreadingHTTPServer):
    """Serves IMAGE at /img.qcow2 with range requests; cut drops the next reply after that many bytes."""

    def __init__(self):
        super().__init__(('127.0.0.1', 0), Handler)
        self.cut = 0
        self.ranges = []
        self.midway = None  # called when half a reply's body is sent
        self.sums = None  # served at /SUMS when set

    @property
    def url(self):
        return 'http://127.0.0.1:%d/img.qcow2' % self.server_address[1]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path == '/SUMS' and self.server.sums is not None:
            self.send_response(200)
            self.send_header('Content-Length', str(len(self.server.sums)))
            self.end_headers()
            self.wfile.write(self.server.sums)
            return
        if self.path != '/img.qcow2':
            self.send_error(404)
            return
        match = re.match(r'bytes=(\d+)-$', self.headers.get('Range', ''))
        start = int(match.group(1)) if match else 0
        self.server.ranges.append(start if match else None)
        self.send_response(206 if match else 200)
        self.send_header('Content-Length', str(len(IMAGE) - start))
        self.end_headers()
        body = IMAGE[start:]
        if self.server.cut:
            body, self.server.cut = body[:self.server.cut], 0
            self.close_connection = True
        if self.server.midway:
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.server.midway()
            body = body[len(body) // 2:]
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = Server()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def root_dir(short_tmp):
    with EmbedRoot(short_tmp).open() as pinned:
        os.close(pinned.subdir(BASE_IMAGES, create=True))
        yield pinned


def listing(root_dir):
    return sorted(os.listdir(os.path.join(root_dir.path, BASE_IMAGES)))


def test_a_download_is_verified_and_cached_under_its_digest(server, root_dir):
    image = _images.BaseImage(root_dir, server.url, DIGEST, 60)
    assert image.name == DIGEST[7:19] + '-img.qcow2'
    assert not image.present()
    assert image.fetch() == len(IMAGE)
    assert image.present()
    assert listing(root_dir) == [image.name]
    with open(image.path, 'rb') as f:
        assert f.read() == IMAGE


def test_a_cut_download_is_kept_and_resumed_where_it_stopped(server, root_dir):
    server.cut = 1 << 20
    image = _images.BaseImage(root_dir, server.url, DIGEST, 60)
    with pytest.raises(_images.ImageError, match='cut off after 1048576 .*the next run resumes it') as err:
        image.fetch()
    assert err.value.kind == 'download'
    assert listing(root_dir) == ['.%s.partial' % image.name]
    assert image.fetch() == len(IMAGE) - (1 << 20)
    assert server.ranges == [None, 1 << 20]
    with open(image.path, 'rb') as f:
        assert f.read() == IMAGE


def test_a_wrong_checksum_leaves_nothing(server, root_dir):
    wrong = 'sha256:' + '0' * 64
    with pytest.raises(_images.ImageError, match='it was removed, nothing is kept') as err:
        _images.BaseImage(root_dir, server.url, wrong, 60).fetch()
    assert err.value.kind == 'checksum'
    assert listing(root_dir) == []


def test_a_missing_url_and_an_unreadable_file_name_the_fix(server, root_dir):
    with pytest.raises(_images.ImageError, match='HTTP 404 .*check the URL'):
        _images.BaseImage(root_dir, server.url + '.missing', None, 60).fetch()
    with pytest.raises(_images.ImageError, match='cannot be read'):
        _images.BaseImage(root_dir, '/nonexistent/img.qcow2', None, 60).fetch()
    assert listing(root_dir) == []


def test_a_local_image_is_copied_into_the_cache(root_dir, short_tmp):
    source = os.path.join(short_tmp, 'local.img')
    with open(source, 'wb') as f:
        f.write(IMAGE)
    image = _images.BaseImage(root_dir, source, DIGEST, 60)
    image.fetch()
    assert image.present() and image.remove() and not image.present()


@pytest.mark.parametrize('text', ['sha256:abc', 'md5:' + '0' * 32, 'sha256', 'sha256:' + 'g' * 64])
def test_checksums_that_are_not_one_are_refused_with_an_example(text):
    with pytest.raises(_images.ImageError, match='give one such as sha256:0000'):
        _images.parse_checksum(text)


def sums_line(name, data=IMAGE):
    return ('%s  %s\n' % (hashlib.sha512(data).hexdigest(), name)).encode()


def test_a_checksums_file_gives_the_digest_of_the_image_it_names(server, root_dir):
    # As Debian's SHA512SUMS: other images first, one whose name ends like ours, binary-mode marks.
    server.sums = (sums_line('other.qcow2', b'other') + sums_line('x-img.qcow2', b'x')
                   + sums_line('*img.qcow2').replace(b'  *', b' *'))
    sums = server.url.replace('img.qcow2', 'SUMS')
    assert _images.parse_checksum('sha512:' + sums) == ('sha512', sums)
    image = _images.BaseImage(root_dir, server.url, 'sha512:' + sums, 60)
    assert image.checksum == ('sha512', hashlib.sha512(IMAGE).hexdigest())
    assert image.name == hashlib.sha512(IMAGE).hexdigest()[:12] + '-img.qcow2'
    image.fetch()
    assert image.present()


def test_a_checksums_file_without_the_image_or_too_big_or_missing_fails_naming_it(server, root_dir):
    sums = server.url.replace('img.qcow2', 'SUMS')
    server.sums = sums_line('other.qcow2') + ('%s  img.qcow2\n' % hashlib.sha256(IMAGE).hexdigest()).encode()
    with pytest.raises(_images.ImageError, match='has no sha512 line for img.qcow2') as err:
        _images.BaseImage(root_dir, server.url, 'sha512:' + sums, 60)
    assert err.value.kind == 'checksum'
    server.sums = b'#' * (_images.SUMS_MAX_BYTES + 1)
    with pytest.raises(_images.ImageError, match='over 1048576 bytes, not a checksums file'):
        _images.BaseImage(root_dir, server.url, 'sha512:' + sums, 60)
    with pytest.raises(_images.ImageError, match='fetching the checksums file .*HTTP 404'):
        _images.BaseImage(root_dir, server.url, 'sha512:' + server.url + '.sums', 60)
    assert listing(root_dir) == []


def test_cache_names_stay_inside_the_cache():
    assert _images.cache_name('http://h/x/../../etc/passwd', None) == 'passwd'
    assert _images.cache_name('http://h/.hidden', None) == '_hidden'
    assert _images.cache_name('/srv/a b/c;d.img', ('sha256', 'f' * 64)) == 'ffffffffffff-c_d.img'


# --- a root of another user, the task running as root ---------------------------------
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason='needs root to make a root of another user')


@pytest.fixture
def nobody_root(short_tmp):
    """A root of uid 65534 in short_tmp, which that user may enter (so the files put there
    are what it can and cannot read)."""
    os.chmod(short_tmp, 0o755)
    path = os.path.join(short_tmp, 'r')
    os.mkdir(path, 0o700)
    os.chown(path, NOBODY, NOBODY)
    with EmbedRoot(path).open() as pinned:
        os.close(pinned.subdir(BASE_IMAGES, create=True))
        yield pinned


def write(path, data, mode):
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)


@needs_root
def test_a_local_image_is_read_as_the_roots_owner(nobody_root, short_tmp):
    secret = os.path.join(short_tmp, 'secret')
    write(secret, IMAGE, 0o600)
    os.symlink('/etc/shadow', os.path.join(short_tmp, 'shadow-link'))
    os.link(secret, os.path.join(short_tmp, 'secret-link'))
    for path in ('/etc/shadow', os.path.join(short_tmp, 'shadow-link'), secret, os.path.join(short_tmp, 'secret-link')):
        with pytest.raises(_images.ImageError, match=r"cannot be read \(it is read as the root's owner, uid 65534\): "
                           "Permission denied") as err:
            _images.BaseImage(nobody_root, path, None, 60).fetch()
        assert err.value.kind == 'image'
        assert listing(nobody_root) == []
    readable = os.path.join(short_tmp, 'readable')
    write(readable, IMAGE, 0o644)
    image = _images.BaseImage(nobody_root, readable, DIGEST, 60)
    assert image.fetch() == len(IMAGE)
    assert os.stat(image.path).st_uid == NOBODY and listing(nobody_root) == [image.name]


@needs_root
def test_a_fifo_or_a_device_is_refused_at_once(nobody_root, short_tmp):
    fifo = os.path.join(short_tmp, 'fifo')
    os.mkfifo(fifo, 0o666)
    # A writer that comes late (O_RDWR never waits for a reader): an open that waited for it
    # would take its empty stream.
    writer = threading.Timer(3, lambda: os.close(os.open(fifo, os.O_RDWR)))
    writer.start()
    try:
        for path in (fifo, '/dev/zero'):
            started = time.time()
            with pytest.raises(_images.ImageError, match='not a regular file'):
                _images.BaseImage(nobody_root, path, None, 60).fetch()
            assert time.time() - started < 2
    finally:
        writer.join()
    assert listing(nobody_root) == []


@needs_root
def test_an_unverified_download_is_roots_until_its_checksum_matched(server, nobody_root):
    server.cut = 1 << 20
    image = _images.BaseImage(nobody_root, server.url, DIGEST, 60)
    with pytest.raises(_images.ImageError, match='the next run resumes it'):
        image.fetch()
    partial = os.stat(os.path.join(nobody_root.path, image.partial))
    assert (partial.st_uid, stat.S_IMODE(partial.st_mode)) == (0, 0o600)
    image.fetch()
    assert server.ranges == [None, 1 << 20]
    assert os.stat(image.path).st_uid == NOBODY


@needs_root
def test_a_hard_link_to_a_partial_keeps_nothing_of_a_wrong_download(server, nobody_root, short_tmp):
    wrong = 'sha256:' + '0' * 64
    image = _images.BaseImage(nobody_root, server.url, wrong, 60)
    kept = os.path.join(nobody_root.path, 'kept')

    def link():  # what the owner could do while the download runs (fs.protected_hardlinks aside)
        partial = os.path.join(nobody_root.path, image.partial)
        for dummy in range(100):
            if os.path.exists(partial):
                break
            time.sleep(0.05)
        os.link(partial, kept)
    server.midway = link
    with pytest.raises(_images.ImageError, match='nothing is kept'):
        image.fetch()
    assert os.stat(kept).st_size == 0
    assert listing(nobody_root) == []


@needs_root
def test_a_partial_the_owner_planted_is_not_written_into(nobody_root, short_tmp):
    readable = os.path.join(short_tmp, 'readable')
    write(readable, IMAGE, 0o644)
    image = _images.BaseImage(nobody_root, readable, 'sha256:' + '0' * 64, 60)
    planted = os.path.join(nobody_root.path, image.partial)
    write(planted, b'', 0o644)
    os.chown(planted, NOBODY, NOBODY)
    kept = os.path.join(nobody_root.path, 'kept')
    os.link(planted, kept)
    with pytest.raises(_images.ImageError, match='nothing is kept'):
        image.fetch()
    assert os.stat(kept).st_size == 0
    assert listing(nobody_root) == []
