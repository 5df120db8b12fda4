# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Base images: downloads from a real HTTP server on loopback, verified, resumed, cached."""

import hashlib
import http.server
import os
import re
import threading

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _images
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import BASE_IMAGES, EmbedRoot

IMAGE = os.urandom(3 << 20) + b'end'
DIGEST = 'sha256:' + hashlib.sha256(IMAGE).hexdigest()


class Server(http.server.ThreadingHTTPServer):
    """Serves IMAGE at /img.qcow2 with range requests; cut drops the next reply after that many bytes."""

    def __init__(self):
        super().__init__(('127.0.0.1', 0), Handler)
        self.cut = 0
        self.ranges = []

    @property
    def url(self):
        return 'http://127.0.0.1:%d/img.qcow2' % self.server_address[1]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
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


def test_cache_names_stay_inside_the_cache():
    assert _images.cache_name('http://h/x/../../etc/passwd', None) == 'passwd'
    assert _images.cache_name('http://h/.hidden', None) == '_hidden'
    assert _images.cache_name('/srv/a b/c;d.img', ('sha256', 'f' * 64)) == 'ffffffffffff-c_d.img'
