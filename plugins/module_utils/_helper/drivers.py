# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""The helper's libvirt side: the event loop, a root's two embedded connections, and what
libvirt needs in a thread before that thread uses them.

libvirt allows one process per embedded root and needs a running event loop before an
embedded URI opens; this is the only file that opens one.
"""

import ctypes
import errno
import logging
import os
import shutil
import sys
import threading
import urllib.parse

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _root, _root_dir
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.errors import (
    HelperError, explain_open_error)

log = logging.getLogger('embedvirt.helper')


class Drivers:
    """The event loop thread and the root's two embedded connections (qemu, secret).

    root is the root's EmbedRoot: every path comes from it.
    """

    def __init__(self, root):
        self.root = root
        self.libvirt = None
        self.libvirt_qemu = None
        self.secret = None
        self.qemu = None
        self.thread_context = None
        # Set by an operation after which libvirt must forget what it loaded (secret_undefine).
        self.restart_requested = False

    def open(self):
        # The seed: RTLD_GLOBAL is required when libvirt.so was itself dlopen()ed, as
        # Python's extension loading does, so that driver modules can resolve its symbols.
        sys.setdlopenflags(os.RTLD_NOW | os.RTLD_GLOBAL)
        try:
            import libvirt
        except ImportError as e:
            raise HelperError(
                'bindings_missing', 'cannot import libvirt in %s: %s' % (sys.executable, e),
                'install the libvirt Python bindings for this interpreter: python3-libvirt '
                '(Debian/Ubuntu, Fedora/RHEL) or "pip install libvirt-python", or give helper_python: '
                'a Python that has them')
        self.libvirt = libvirt
        import libvirt_qemu  # part of the same bindings; the guest agent's door
        self.libvirt_qemu = libvirt_qemu
        # libvirt prints every error to stderr by default; send them to our log instead.
        libvirt.registerErrorHandler(lambda _ctx, err: log.debug('libvirt: %s', err[2]), None)
        libvirt.virEventRegisterDefaultImpl()
        loop = threading.Thread(target=self._run_event_loop, name='libvirt-event-loop')
        loop.daemon = True
        loop.start()
        try:
            libvirt_root = _root.ensure_alias(self.root.path)
        except (_root.RootError, OSError) as e:
            raise HelperError('root', 'cannot give libvirt a path to %s short enough for its sockets: %s'
                              % (self.root.path, e), 'see the message; a root of at most %d bytes needs no alias'
                              % _root.DIRECT_ROOT_MAX)
        # Escaped as virt-qemu-run does: libvirt unescapes the URI's query.
        query = urllib.parse.quote(libvirt_root, safe='/')
        try:
            self.secret = libvirt.open('secret:///embed?root=%s' % query)
            # The QEMU driver starts autostart guests inside its open, in this thread: their
            # disks' secrets must be reachable from here before it opens.
            self.thread_context = SecretThreadContext(self.secret)
            self.prepare_thread()
            self.qemu = libvirt.open('qemu:///embed?root=%s' % query)
        except libvirt.libvirtError as e:
            raise explain_open_error(str(e), self.root.path, self.root.driver_pidfile('qemu'))
        self.check_drivers_own_root()

    def check_drivers_own_root(self):
        """Both drivers must have locked exactly this root's pidfiles.

        Read from /proc/locks: opening a pidfile here and closing it again would drop
        libvirt's POSIX lock on it, and with it the one-process-per-root guarantee.
        """
        with open('/proc/locks') as f:
            held = set(tuple(line.split()[4:6]) for line in f if len(line.split()) > 5)
        for driver in _root.DRIVER_RUN_DIRS:
            pidfile = self.root.driver_pidfile(driver)
            st = os.stat(pidfile, follow_symlinks=False)
            device = '%02x:%02x:%d' % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
            if (str(os.getpid()), device) not in held:
                raise HelperError('root', 'libvirt did not lock %s: it opened the %s driver somewhere '
                                  'other than %s' % (pidfile, driver, self.root.path),
                                  'report this as a bug, with the root path; use a plain path meanwhile')

    def prepare_thread(self):
        """Make libvirt calls from the current thread able to use the root's secrets."""
        self.thread_context.apply()

    def forget_last_errors(self):
        """libvirt keeps a copy of each connection's last error until the next one: after a
        request with a huge name, that name twice over (in the message and on its own)."""
        for conn in (self.qemu, self.secret):
            if conn is not None:
                conn.virConnResetLastError()

    def _run_event_loop(self):
        while True:
            self.libvirt.virEventRunDefaultImpl()

    def close(self):
        for conn in (self.qemu, self.secret):
            if conn is not None:
                try:
                    conn.close()
                except self.libvirt.libvirtError as e:
                    log.warning('closing %s: %s', conn.getURI(), e)

    def libvirt_version(self):
        """The libvirt library's version: the embedded drivers' (asking the QEMU driver for
        QEMU's would probe QEMU and write its capability cache)."""
        return format_version(self.libvirt.getVersion())

    def versions(self):
        """The versions operation."""
        return {
            'libvirt': self.libvirt_version(),
            'qemu': format_version(self.qemu.getVersion()),
            'python_libvirt': getattr(self.libvirt, '__version__', None) or self.libvirt_version(),
        }


class DriverUser:
    """Base of the helper's operation classes: the root and its drivers they use."""

    def __init__(self, drivers):
        self.drivers = drivers
        self.root = drivers.root

    @property
    def libvirt(self):
        return self.drivers.libvirt

    @property
    def qemu(self):
        return self.drivers.qemu

    @property
    def secret(self):
        return self.drivers.secret


def format_version(number):
    return '%d.%d.%d' % (number // 1000000, number // 1000 % 1000, number % 1000)


def reset_runtime_state_after_reboot(root):
    """Clear what a tmpfs /run would have lost, once per boot.

    An embedded root keeps its run/ on disk. After a reboot libvirt would take the stale
    status files there for guests still running, skip their autostart and then find them
    crashed. No QEMU process survives a reboot, so the first helper of a new boot removes
    the drivers' runtime state. A root without a record of the last boot is left alone: its
    guests may be running (started by another program).
    """
    record = root.join(_root.BOOT_RECORD)
    try:
        with open('/proc/sys/kernel/random/boot_id') as f:
            boot_id = f.read().strip()
    except OSError:
        return
    try:
        # Not through a link (write_whole then replaces it), never blocking on a FIFO.
        with os.fdopen(os.open(record, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), 'rb') as f:
            last = f.read(64).decode('ascii', 'replace').strip()
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ELOOP):
            raise
        last = None
    if last == boot_id:
        return
    if last is not None:
        log.info('first helper since a reboot: clearing the stale runtime state of the drivers')
        for run in _root.DRIVER_RUN_DIRS.values():
            shutil.rmtree(root.join(run), ignore_errors=True)
    write_whole(record, (boot_id + '\n').encode('ascii'))


def write_whole(path, data):
    """Write a file of the helper's own whole or not at all (_root_dir.write_whole): never through
    a link, and no temporary file left behind when the disk is full."""
    dir_fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _root_dir.write_whole(dir_fd, os.path.basename(path), lambda f: f.write(data), 0o600, True)
    finally:
        os.close(dir_fd)


class SecretThreadContext:
    """What the embedded QEMU driver needs in a thread to resolve a guest's secrets.

    libvirt 9's QEMU driver fetches a disk's passphrase through a secret connection cached
    per thread and with the thread's current identity, both of which only libvirtd's RPC
    dispatch sets. In an embedded process a start then fails with "No current identity to
    elevate" (in the thread that opened the drivers) or opens secret:///system ("Missing URI
    parameter 'root'", in any other thread). libvirt.so exports the private functions that
    set both (libvirt 9 and 11 alike); without them (another build) guests without secrets
    still work, and a start that needs one fails with the hint in errors.EMBEDDED_MODE_HINTS.
    """

    def __init__(self, secret_conn):
        self.local = threading.local()
        self.error = None
        try:
            lib = ctypes.CDLL('libvirt.so.0')
            lib.virIdentityGetSystem.restype = ctypes.c_void_p
            lib.virIdentitySetCurrent.argtypes = [ctypes.c_void_p]
            lib.virSetConnectSecret.argtypes = [ctypes.c_void_p]
            capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
            capsule_pointer.restype = ctypes.c_void_p
            capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
            self.lib = lib
            self.identity = lib.virIdentityGetSystem()
            # pylint: disable-next=protected-access
            self.secret_pointer = capsule_pointer(secret_conn._o, b'virConnectPtr')
        except (OSError, AttributeError, ValueError) as e:
            self.error = e
            log.warning('guests with secrets will not start: cannot reach libvirt internals (%s)', e)

    def apply(self):
        if self.error is not None or getattr(self.local, 'applied', False):
            return
        # Both are thread-local in libvirt and keep their own reference.
        if self.lib.virIdentitySetCurrent(self.identity) < 0 or self.lib.virSetConnectSecret(self.secret_pointer) < 0:
            log.warning('could not set the secret context of this thread')
        self.local.applied = True
