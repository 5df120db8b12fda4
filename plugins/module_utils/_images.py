# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""Base images of a root: an image from a URL or a local file, verified and cached under the
root (images/base/), so that the root stays self-contained and guests' overlays name their
base with a relative path.

A download goes to images/base/.<name>.partial, resumed with an HTTP range request when a
run was interrupted, and becomes <name> only once its checksum matches; a wrong checksum
leaves nothing behind. Every file is opened through the pinned root (_root_dir.RootDir); a local
image is read only as the root's owner may read it.
"""

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.parse

from ansible.module_utils.urls import open_url

from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import BASE_IMAGES, RootError, open_as_user

ALGORITHMS = ('sha256', 'sha384', 'sha512')
CHUNK_BYTES = 1 << 20
# A server that sends nothing for this long is given up on (the whole download is bounded
# by the module's download_timeout).
READ_TIMEOUT = 60
SAFE_NAME = re.compile(r'[^A-Za-z0-9._+-]')
# A checksums file (SHA512SUMS of a whole release directory is a few KiB) is read whole, bounded.
SUMS_MAX_BYTES = 1 << 20
SUMS_SECONDS = 60


class ImageError(Exception):
    """A base image that cannot be had; the message names the fix. kind is the error_kind."""

    def __init__(self, message, kind='image'):
        super().__init__(message)
        self.kind = kind


def parse_checksum(text):
    """(algorithm, hex digest) of '<algorithm>:<hex>', (algorithm, URL) of '<algorithm>:<URL of a
    checksums file>', or None for no checksum."""
    if not text:
        return None
    algorithm, _sep, digest = text.partition(':')
    algorithm = algorithm.lower()
    digest = digest.strip()
    if algorithm in ALGORITHMS and is_url(digest):
        return algorithm, digest
    digest = digest.lower()
    if algorithm not in ALGORITHMS or not is_digest(digest, algorithm):
        raise ImageError("checksum '%s' is not <algorithm>:<hex digest> or <algorithm>:<URL of a checksums file>: "
                         "give one such as sha256:%s or sha512:https://.../SHA512SUMS (algorithms: %s)"
                         % (text, '0' * 64, ', '.join(ALGORITHMS)), 'checksum')
    return algorithm, digest


def is_digest(text, algorithm):
    return len(text) == hashlib.new(algorithm).digest_size * 2 and all(c in '0123456789abcdef' for c in text)


def file_name(image):
    """The last part of image's path (a URL's without its query)."""
    return os.path.basename((urllib.parse.urlsplit(image).path if is_url(image) else image).rstrip('/'))


def listed_digest(url, algorithm, image):
    """The digest that the checksums file at url (lines '<hex>  <file name>', as sha512sum writes
    them) gives for image's file name. Read whole within SUMS_SECONDS, at most SUMS_MAX_BYTES."""
    name = file_name(image)
    deadline = time.time() + SUMS_SECONDS
    data = b''
    try:
        with open_url(url, timeout=READ_TIMEOUT) as response:
            while len(data) <= SUMS_MAX_BYTES:
                if time.time() > deadline:
                    raise ImageError('the checksums file %s did not come within %d s; try again, or give the checksum '
                                     'itself (<algorithm>:<hex>)' % (url, SUMS_SECONDS), 'checksum')
                chunk = response.read(1 << 16)
                if not chunk:
                    break
                data += chunk
    except urllib.error.HTTPError as e:
        raise ImageError('fetching the checksums file %s failed: HTTP %d %s; check its URL' % (url, e.code, e.reason),
                         'checksum')
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise ImageError('fetching the checksums file %s failed: %s; check its URL and that the host can reach it'
                         % (url, getattr(e, 'reason', e)), 'checksum')
    if len(data) > SUMS_MAX_BYTES:
        raise ImageError('%s is over %d bytes, not a checksums file: check its URL, or give the checksum itself'
                         % (url, SUMS_MAX_BYTES), 'checksum')
    for line in data.decode('utf-8', 'replace').splitlines():
        fields = line.split()
        # '*' marks a binary-mode line of sha*sum.
        if len(fields) == 2 and fields[1].lstrip('*') == name and is_digest(fields[0].lower(), algorithm):
            return fields[0].lower()
    raise ImageError('the checksums file %s has no %s line for %s: check that it lists the image (its file name) '
                     'and the algorithm, or give the checksum itself' % (url, algorithm, name), 'checksum')


def is_url(image):
    return urllib.parse.urlsplit(image).scheme in ('http', 'https')


def cache_name(image, checksum):
    """The name of image in images/base: its file name, prefixed by the start of its digest
    when one is known, so two images of one name never meet."""
    base = SAFE_NAME.sub('_', file_name(image)) or 'image'
    if base.startswith('.'):
        base = '_' + base[1:]
    return '%s-%s' % (checksum[1][:12], base) if checksum else base


class BaseImage:
    """images/base/<name> of a pinned root (a _root_dir.RootDir)."""

    def __init__(self, root_dir, image, checksum, timeout):
        self.root_dir = root_dir
        self.image = image
        self.checksum = parse_checksum(checksum)
        if self.checksum is not None and is_url(self.checksum[1]):
            self.checksum = (self.checksum[0], listed_digest(self.checksum[1], self.checksum[0], image))
        self.timeout = timeout
        self.name = cache_name(image, self.checksum)
        self.relative = os.path.join(BASE_IMAGES, self.name)
        self.path = os.path.join(root_dir.path, self.relative)
        self.partial = os.path.join(BASE_IMAGES, '.%s.partial' % self.name)

    def present(self):
        """Whether the cached image is there (a regular file of the root's owner)."""
        try:
            os.close(self.root_dir.open_file(self.relative))
            return True
        except FileNotFoundError:
            return False

    def fetch(self):
        """Put the image in the cache; bytes it took (a resumed download counts only the rest).

        A local image is opened as the root's owner (_root.open_as_user). The partial file is
        this task's user's alone (RootDir.open_private) until its checksum matched; one that
        does not match, or a copy that failed, is emptied before it goes, so a hard link
        anyone kept to it gets nothing. A download cut off is kept for the next run.
        """
        deadline = time.time() + self.timeout
        source = None if is_url(self.image) else self.open_local()
        with os.fdopen(self.root_dir.open_private(self.partial, resume=source is None), 'r+b') as partial:
            try:
                if source is None:
                    taken = self.download(partial, deadline)
                else:
                    with source:
                        taken = self.copy(source, partial, deadline)
                self.verify(partial)
                partial.flush()
            except BaseException as e:
                if not (isinstance(e, ImageError) and e.kind == 'download' and partial.tell()):
                    self.root_dir.discard(partial.fileno(), self.partial)
                raise
            self.root_dir.publish(partial.fileno(), self.partial, self.relative)
        return taken

    def remove(self):
        """Remove the cached image (and any partial download); whether there was one."""
        removed = [self.root_dir.remove_file(relative) for relative in (self.relative, self.partial)]
        return any(removed)

    # --- internals ---------------------------------------------------------------------
    def open_local(self):
        try:
            fd = open_as_user(self.image, self.root_dir.uid, self.root_dir.gid)
        except (OSError, RootError) as e:
            raise ImageError("image '%s' cannot be read (it is read as the root's owner, uid %d): %s; give the path of "
                             "a regular file that user may read, or an http(s) URL"
                             % (self.image, self.root_dir.uid, e.strerror if isinstance(e, OSError) else e), 'image')
        return os.fdopen(fd, 'rb')

    def copy(self, source, partial, deadline):
        taken = 0
        for chunk in iter(lambda: source.read(CHUNK_BYTES), b''):
            if time.time() > deadline:
                raise ImageError('copying %s took longer than download_timeout (%d s); raise it, or copy from a '
                                 'faster disk' % (self.image, self.timeout), 'image')
            partial.write(chunk)
            taken += len(chunk)
        return taken

    def download(self, partial, deadline):
        """Download into the partial file (at its end), resuming what an interrupted run left."""
        have = partial.tell()
        try:
            response = open_url(self.image, headers={'Range': 'bytes=%d-' % have} if have else {}, timeout=READ_TIMEOUT)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:
                return 0  # the partial file is already whole: verify() decides
            raise ImageError("downloading %s failed: HTTP %d %s; check the URL" % (self.image, e.code, e.reason),
                             'download')
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise ImageError('downloading %s failed: %s; check the URL and that the host can reach it'
                             % (self.image, getattr(e, 'reason', e)), 'download')
        taken = 0
        with response:
            if not (have and response.status == 206):
                partial.seek(0)
                partial.truncate()
            while True:
                if time.time() > deadline:
                    raise ImageError('downloading %s took longer than download_timeout (%d s); what came is '
                                     'kept and the next run resumes it' % (self.image, self.timeout), 'download')
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as e:
                    raise ImageError('downloading %s was cut off after %d bytes (%s); what came is kept and '
                                     'the next run resumes it' % (self.image, have + taken, e), 'download')
                if not chunk:
                    break
                partial.write(chunk)
                taken += len(chunk)
        length = response.headers.get('Content-Length')
        if length is not None and taken < int(length):
            raise ImageError('downloading %s was cut off after %d of %s bytes; what came is kept and the next run '
                             'resumes it' % (self.image, taken, length), 'download')
        return taken

    def verify(self, partial):
        """The partial file matches the checksum, or the task fails (and fetch removes it)."""
        if self.checksum is None:
            return
        algorithm, wanted = self.checksum
        digest = hashlib.new(algorithm)
        partial.seek(0)
        for chunk in iter(lambda: partial.read(CHUNK_BYTES), b''):
            digest.update(chunk)
        if digest.hexdigest() != wanted:
            raise ImageError('%s has %s %s, not %s as checksum says: it was removed, nothing is kept; check the '
                             'checksum and the URL' % (self.image, algorithm, digest.hexdigest(), wanted), 'checksum')
