# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The per-root helper: the one process that opens a root's embedded drivers.

libvirt allows one process per embedded root and needs a running event loop before an
embedded URI opens, so a helper process owns both for one root and serves small typed
requests (JSON lines) over a private UNIX socket, several clients at once.

The client copies this file into the root and runs it with the module's Python, so it
must stay self-contained: Python's standard library plus the libvirt bindings, which are
imported only in the helper process (the client imports this file for its protocol
functions and never needs libvirt).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import hashlib
import json
import logging
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

PROTOCOL = 1
STOP_DRAIN_SECONDS = 60

# libvirt's virDomainState values, by name.
DOMAIN_STATES = ('nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff',
                 'crashed', 'pmsuspended')

log = logging.getLogger('embedvirt.helper')


def encode(message):
    return (json.dumps(message, separators=(',', ':'), sort_keys=True) + '\n').encode('utf-8')


def decode(line):
    return json.loads(line.decode('utf-8'))


def code_version(source):
    """Version of helper code: the hash of its source, so any change means a new helper."""
    return hashlib.sha256(source).hexdigest()


def peer_credentials(sock):
    """(pid, uid, gid) of the process at the other end of a UNIX socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize('3i'))
    return struct.unpack('3i', creds)


class HelperError(Exception):
    """An error a request reports back to its client: kind, message and a hint."""

    def __init__(self, kind, message, hint=None):
        super(HelperError, self).__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint

    def to_dict(self):
        return {'kind': self.kind, 'message': self.message, 'hint': self.hint}


def explain_open_error(message, root, pidfile):
    """Turn libvirt's message for a failed embedded open into a HelperError with a fix."""
    for what in ('user', 'group'):
        marker = "Failed to parse %s '" % what
        if marker in message:
            name = message.split(marker, 1)[1].split("'", 1)[0]
            command = ('useradd --system --no-create-home --shell /usr/sbin/nologin %s' % name
                       if what == 'user' else 'groupadd --system %s' % name)
            return HelperError(
                'account', message,
                "running privileged, libvirt's QEMU driver looks up the %s '%s' (its build "
                "default) before it reads qemu.conf, even when qemu.conf names another %s: "
                "create it ('%s')"
                % (what, name, what, command))
    if 'Failed to acquire pid file' in message:
        return HelperError(
            'root_busy', message,
            "root '%s' is already open in %s, which is not this collection's helper; libvirt "
            "allows one process per embedded root: stop that process (or let it finish) and "
            "retry, or use another root" % (root, describe_pidfile_owner(pidfile)))
    if 'no connection driver available' in message:
        return HelperError(
            'driver_missing', message,
            "libvirt's QEMU or secret driver module is not installed: install "
            "libvirt-daemon-driver-qemu and libvirt-daemon (Debian/Ubuntu) or "
            "libvirt-daemon-driver-qemu and libvirt-daemon-driver-secret (Fedora/RHEL)")
    return HelperError('libvirt', message)


def describe_pidfile_owner(pidfile):
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            command = f.read().replace(b'\0', b' ').decode('utf-8', 'replace').strip()
        return 'process %d (%s)' % (pid, command[:120])
    except (OSError, ValueError):
        return 'another process'


class Driver:
    """The libvirt side: the event loop thread and the root's two embedded connections."""

    def __init__(self, root, pidfile):
        self.root = root
        self.pidfile = pidfile
        self.libvirt = None
        self.secret = None
        self.qemu = None

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
                '(Debian/Ubuntu, Fedora/RHEL) or "pip install libvirt-python", or set '
                'ansible_python_interpreter to a Python that has them')
        self.libvirt = libvirt
        # libvirt prints every error to stderr by default; send them to our log instead.
        libvirt.registerErrorHandler(lambda _ctx, err: log.debug('libvirt: %s', err[2]), None)
        libvirt.virEventRegisterDefaultImpl()
        loop = threading.Thread(target=self._run_event_loop, name='libvirt-event-loop')
        loop.daemon = True
        loop.start()
        try:
            self.secret = libvirt.open('secret:///embed?root=%s' % self.root)
            self.qemu = libvirt.open('qemu:///embed?root=%s' % self.root)
        except libvirt.libvirtError as e:
            raise explain_open_error(str(e), self.root, self.pidfile)

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

    def versions(self):
        return {
            'libvirt': format_version(self.libvirt.getVersion()),
            'qemu': format_version(self.qemu.getVersion()),
            'python_libvirt': getattr(self.libvirt, '__version__', None)
            or format_version(self.libvirt.getVersion()),
        }

    def domain_summary(self, dom):
        state, reason = dom.state()
        persistent = bool(dom.isPersistent())
        return {
            'name': dom.name(),
            'uuid': dom.UUIDString(),
            'id': dom.ID() if dom.ID() >= 0 else None,
            'state': DOMAIN_STATES[state] if state < len(DOMAIN_STATES) else str(state),
            'state_reason': reason,
            'persistent': persistent,
            'autostart': bool(dom.autostart()) if persistent else False,
        }

    def domain_list(self, names=None, states=None):
        result = []
        for dom in self.qemu.listAllDomains(0):
            summary = self.domain_summary(dom)
            if names and summary['name'] not in names:
                continue
            if states and summary['state'] not in states:
                continue
            result.append(summary)
        return sorted(result, key=lambda d: d['name'])


def format_version(number):
    return '%d.%d.%d' % (number // 1000000, number // 1000 % 1000, number % 1000)


class Helper:
    """Serves requests for one root until stopped, told to, or idle for too long."""

    def __init__(self, root, socket_path, idle_timeout, version):
        self.root = root
        self.socket_path = socket_path
        self.idle_timeout = idle_timeout
        self.version = version
        self.started = time.time()
        self.last_activity = time.time()
        self.busy = 0
        self.served = 0
        self.lock = threading.Lock()
        self.stop_requested = threading.Event()
        self.connections = set()
        self.allowed_uids = {0, os.geteuid(), os.stat(root).st_uid}
        self.driver = Driver(root, os.path.join(root, 'run', 'qemu', 'driver.pid'))
        self.server = None
        self.ops = {
            'hello': self.op_hello,
            'status': self.op_status,
            'stop': self.op_stop,
            'versions': self.driver.versions,
            'domain_list': self.driver.domain_list,
        }

    # --- lifecycle -------------------------------------------------------------------
    def start(self):
        self.driver.open()
        if os.path.lexists(self.socket_path):
            # The client holds the start lock and found nobody answering: stale.
            os.unlink(self.socket_path)
        old_umask = os.umask(0o177)
        try:
            self.server = Server(self.socket_path, self)
        finally:
            os.umask(old_umask)
        self.socket_inode = os.stat(self.socket_path).st_ino
        threading.Thread(target=self.server.serve_forever, name='accept', daemon=True).start()
        threading.Thread(target=self._watch_idle, name='idle-watch', daemon=True).start()

    def wait_and_stop(self):
        self.stop_requested.wait()
        log.info('stopping: closing the socket, finishing requests in flight')
        self.server.shutdown()
        self.server.server_close()
        try:
            if os.stat(self.socket_path).st_ino == self.socket_inode:
                os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        with self.lock:
            for sock in self.connections:
                try:
                    # Wakes handlers waiting for their next request; one inside a request
                    # still finishes and answers it.
                    sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
        deadline = time.time() + STOP_DRAIN_SECONDS
        while time.time() < deadline:
            with self.lock:
                if self.busy == 0:
                    break
            time.sleep(0.05)
        self.driver.close()
        log.info('stopped after serving %d requests', self.served)

    def _watch_idle(self):
        while not self.stop_requested.is_set():
            time.sleep(0.5)
            with self.lock:
                idle = self.busy == 0 and time.time() - self.last_activity
                timeout = self.idle_timeout
            if timeout and idle and idle > timeout:
                log.info('idle for %d s (idle timeout %d s)', idle, timeout)
                self.stop_requested.set()

    # --- requests ----------------------------------------------------------------------
    def handle(self, request):
        op = request.get('op')
        method = self.ops.get(op)
        if method is None:
            raise HelperError('protocol', 'unknown operation %r' % (op,))
        args = request.get('args') or {}
        try:
            return method(**args)
        except TypeError as e:
            raise HelperError('protocol', 'bad arguments for %s: %s' % (op, e))
        except self.driver.libvirt.libvirtError as e:
            raise HelperError('libvirt', str(e))

    def op_hello(self, version=None, idle_timeout=None):
        if idle_timeout is not None and version == self.version:
            with self.lock:
                self.idle_timeout = int(idle_timeout)
        return self.op_status()

    def op_status(self):
        return {
            'pid': os.getpid(),
            'uid': os.geteuid(),
            'version': self.version,
            'protocol': PROTOCOL,
            'root': self.root,
            'idle_timeout': self.idle_timeout,
            'uptime': round(time.time() - self.started, 3),
            'requests_served': self.served,
            'python': sys.executable,
        }

    def op_stop(self):
        self.stop_requested.set()
        return {'stopping': True, 'pid': os.getpid()}


class Handler(socketserver.StreamRequestHandler):
    """One client connection: requests answered in order, one JSON line each."""

    def handle(self):
        helper = self.server.helper
        with helper.lock:
            helper.connections.add(self.connection)
        try:
            while not helper.stop_requested.is_set():
                line = self.rfile.readline()
                if not line:
                    break
                with helper.lock:
                    helper.busy += 1
                try:
                    self.wfile.write(encode(self.answer(helper, line)))
                    self.wfile.flush()
                finally:
                    with helper.lock:
                        helper.busy -= 1
                        helper.served += 1
                        helper.last_activity = time.time()
        except (OSError, ValueError):
            pass
        finally:
            with helper.lock:
                helper.connections.discard(self.connection)

    @staticmethod
    def answer(helper, line):
        request_id = None
        try:
            request = decode(line)
            request_id = request.get('id')
            return {'id': request_id, 'ok': True, 'result': helper.handle(request)}
        except HelperError as e:
            return {'id': request_id, 'ok': False, 'error': e.to_dict()}
        except ValueError as e:
            return {'id': request_id, 'ok': False,
                    'error': HelperError('protocol', 'malformed request: %s' % e).to_dict()}
        except Exception as e:  # pylint: disable=broad-except
            log.exception('request failed')
            return {'id': request_id, 'ok': False,
                    'error': HelperError('internal', '%s: %s' % (type(e).__name__, e)).to_dict()}


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path, helper):
        self.helper = helper
        socketserver.UnixStreamServer.__init__(self, path, Handler)

    def verify_request(self, request, client_address):
        pid, uid, _gid = peer_credentials(request)
        if uid in self.helper.allowed_uids:
            return True
        log.warning('refused a connection from pid %d uid %d: only uids %s may use this root',
                    pid, uid, sorted(self.helper.allowed_uids))
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(description='embedvirt.libvirt helper for one root')
    parser.add_argument('--root', required=True)
    parser.add_argument('--socket', required=True)
    parser.add_argument('--idle-timeout', type=int, default=0)
    args = parser.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format='%(asctime)s helper[%(process)d] %(levelname)s %(message)s')
    with open(os.path.abspath(__file__), 'rb') as f:
        version = code_version(f.read())
    # stdout is the client's pipe: one line saying ready or why not, then it is closed.
    ready = os.fdopen(os.dup(1), 'wb')
    os.dup2(2, 1)
    helper = Helper(args.root, args.socket, args.idle_timeout, version)
    signal.signal(signal.SIGTERM, lambda *_: helper.stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: helper.stop_requested.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        helper.start()
    except HelperError as e:
        log.error('cannot start: %s', e.message)
        ready.write(encode({'ok': False, 'error': e.to_dict()}))
        ready.close()
        return 1
    log.info('serving root %s on %s (version %s, idle timeout %s s)',
             args.root, args.socket, version[:16], args.idle_timeout)
    ready.write(encode({'ok': True, 'result': helper.op_status()}))
    ready.close()
    helper.wait_and_stop()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
