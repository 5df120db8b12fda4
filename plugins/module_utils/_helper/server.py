# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""The helper's server: one process per root that owns the root's drivers and serves
_protocol's operations over a private UNIX socket, several clients at once, until it is
stopped, told to, or idle for too long.

The client runs it as the root's owner: `python -I -c BOOTSTRAP` reads the helper's bundle
(_bundle.py: this package and what it imports) on stdin and calls main() with its hash as the
version. Standard library only, plus the libvirt bindings (imported by drivers.py).
"""

import argparse
import collections
import ctypes
import errno
import logging
import os
import shutil
import resource
import select
import signal
import socketserver
import sys
import threading
import time

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _protocol
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.agent import GuestAgent
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.confine import Confinement
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.domains import (
    Domains, unmark_autostart_of_clone_sources)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.drivers import (
    Drivers, reset_runtime_state_after_reboot)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.errors import (
    HelperError, hint_for_libvirt_error)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.events import Events
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.secrets import Secrets
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.snapshots import Snapshots
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import RootError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import EmbedRoot

POLL_SECONDS = 0.2
# Connections waiting to be accepted: many parallel tasks connect at once.
LISTEN_BACKLOG = 1024
# What a client asks the helper about itself: not work that a stopping helper waits for.
CONTROL = ('hello', 'helper_status', 'stop')
# Requests larger than _protocol.SMALL_MESSAGE_BYTES read and answered at once, and how long
# one may take to arrive once its turn came: what floods of large requests make the helper
# hold is bounded, and small requests (a status, most tasks) never wait behind them.
LARGE_TURNS = 2
LARGE_TURN_SECONDS = 10
# A connection that sends nothing this long after it was accepted is closed (a client sends
# its hello at once, and gives up on it after 30 s); so is one that does not take a reply
# within this long (a client waits for it), lest its large request keep its turn.
FIRST_REQUEST_SECONDS = 30
REPLY_SECONDS = 30
# The most JSON values a request may hold, counted by their separators (inside strings too):
# parsed, 3 bytes of empty lists take some 60, so 16 MiB of them made the helper take 450 MiB.
# No request of this collection comes near (large ones are one string: XML, base64 data).
MAX_REQUEST_VALUES = 100000

log = logging.getLogger('embedvirt.helper')


class Helper:
    """Serves requests for one root until stopped, told to, or idle for too long."""

    def __init__(self, root, idle_timeout, version):
        self.root = EmbedRoot(root)
        self.socket_path = self.root.socket_path
        self.idle_timeout = idle_timeout
        self.version = version
        self.started = time.time()
        self.last_activity = time.time()
        self.in_flight = {}  # request number -> (op, deadline)
        self.requests = 0
        self.served = 0
        self.lock = threading.Lock()
        self.stop_requested = threading.Event()
        self.large_turns = LargeTurns(LARGE_TURNS)
        self.allowed_uids = {0, os.geteuid(), os.stat(root).st_uid}
        self.confinement = Confinement(self.root)
        self.drivers = Drivers(self.root)
        self.events = Events(self.drivers)
        self.domains = Domains(self.drivers, self.events, self.confinement)
        self.server = None
        self.socket_inode = None
        self.implementations = implementations(
            (self, self.drivers, self.domains, GuestAgent(self.drivers, self.domains), Secrets(self.drivers),
             Snapshots(self.drivers, self.domains), self.events))

    # --- lifecycle -------------------------------------------------------------------
    def start(self):
        try:
            self.confinement.before_open()  # before any thread: it may enter a mount namespace
        except (RootError, OSError) as e:
            raise HelperError('root', 'cannot let QEMU of %s through the root: %s' % (self.root.path, e),
                              'run embedvirt.libvirt.root_dir (state=present) on the root, which shows what is wrong')
        raise_descriptor_limit()
        map_large_blocks()
        try:
            reset_runtime_state_after_reboot(self.root)
        except OSError as e:
            raise HelperError(_protocol.ERROR_STORAGE, 'cannot record the boot in %s: %s' % (self.root.path, e),
                              hint_for_libvirt_error(str(e)))
        try:
            unmark_autostart_of_clone_sources(self.root)
        except (RootError, OSError) as e:
            # The open would start what could not be checked.
            raise HelperError('root', 'cannot check the autostart marks of %s for sources of linked clones: %s'
                              % (self.root.path, e), 'make etc/qemu and etc/qemu/autostart plain directories '
                              'of the owner of the root again, as libvirt makes them')
        self.drivers.open()
        self.events.register()
        self.confinement.after_open()
        self.domains.clean_leftovers()
        if os.path.lexists(self.socket_path):
            # The client holds the start lock and found nobody answering: stale.
            os.unlink(self.socket_path)
        old_umask = os.umask(0o177)
        state_fd = os.open(self.root.state_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # Through the directory's descriptor: the socket's own path may exceed a socket address.
            self.server = Server('/proc/self/fd/%d/%s' % (state_fd, os.path.basename(self.socket_path)), self)
        finally:
            os.close(state_fd)
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
        # Requests in flight finish (a long shutdown, a guest command), each bounded by the
        # timeout its client gave; handlers notice the flag within POLL_SECONDS.
        while True:
            with self.lock:
                remaining = self.drain_seconds()
                work = self.work()
            if not work:
                break
            if remaining <= 0:
                log.warning('stopping with requests still in flight past their timeouts: %s',
                            ', '.join(op for op, _d in work))
                break
            time.sleep(0.05)
        time.sleep(POLL_SECONDS)  # let handlers answer what arrived meanwhile
        self.drivers.close()
        log.info('stopped after serving %d requests', self.served)

    def work(self):
        """(op, deadline) of the requests in flight, apart from questions about the helper
        itself (call with lock)."""
        return sorted(item for item in self.in_flight.values() if item[0] not in CONTROL)

    def drain_seconds(self):
        """Seconds until the last work in flight must have finished, 0 if none (call with lock)."""
        work = self.work()
        return max(0, round(max(deadline for _op, deadline in work) - time.time())) if work else 0

    def _watch_idle(self):
        while not self.stop_requested.is_set():
            time.sleep(0.5)
            with self.lock:
                # A subscriber keeps it up: it is there to hear what happens, however long.
                idle = not self.in_flight and not self.events.count() and time.time() - self.last_activity
                timeout = self.idle_timeout
            if timeout and idle and idle > timeout:
                log.info('idle for %d s (idle timeout %d s)', idle, timeout)
                self.stop_requested.set()

    # --- requests ----------------------------------------------------------------------
    def begin(self, op, seconds):
        with self.lock:
            self.requests += 1
            number = self.requests
            self.in_flight[number] = (op, time.time() + seconds)
        return number

    def end(self, number):
        with self.lock:
            del self.in_flight[number]
            self.served += 1
            self.last_activity = time.time()

    def touch(self):
        with self.lock:
            self.last_activity = time.time()

    def handle(self, request):
        """Carry out one request: a known operation with its arguments, or a protocol error."""
        op = _protocol.OPERATIONS.get(request.get('op'))
        if op is None:
            raise HelperError(_protocol.ERROR_PROTOCOL, 'unknown operation %r' % (request.get('op'),),
                              'use a client of the same release as this helper')
        args = request.get('args', {})
        problem = op.problem(args)
        if problem:
            raise HelperError(_protocol.ERROR_PROTOCOL, problem, 'use a client of the same release as this helper')
        try:
            return self.implementations[op.name](**dict(op.defaults, **args))
        except self.drivers.libvirt.libvirtError as e:
            raise HelperError(_protocol.ERROR_LIBVIRT, str(e), hint_for_libvirt_error(str(e)))

    def give_memory_back(self):
        """Let go of what a large request left behind: libvirt's copy of the error it caused,
        and the free memory glibc's malloc keeps in the arena of the connection's thread."""
        self.drivers.forget_last_errors()
        if LIBC is not None:
            LIBC.malloc_trim(0)

    # --- what a client asks the helper about itself (_protocol.Control) ------------------
    def hello(self, version, idle_timeout):
        if idle_timeout is not None and version == self.version:
            with self.lock:
                self.idle_timeout = int(idle_timeout)
        return self.helper_status()

    def helper_status(self):
        with self.lock:
            in_flight = [op for op, _d in self.work()]
        return {
            'pid': os.getpid(),
            'uid': os.geteuid(),
            'version': self.version,
            'protocol': _protocol.PROTOCOL,
            'root': self.root.path,
            'idle_timeout': self.idle_timeout,
            'uptime': round(time.time() - self.started, 3),
            'requests_served': self.served,
            'in_flight': in_flight,
            'python': sys.executable,
            'libvirt': self.drivers.libvirt_version(),
            'qemu': self.confinement.status(),
            # The program libvirt runs for a user-mode card's passt backend, found as libvirt finds it.
            'passt': shutil.which('passt'),
            # libvirt runs swtpm_setup once per TPM, then swtpm.
            'swtpm': shutil.which('swtpm') if shutil.which('swtpm_setup') else None,
            'subscribers': self.events.count(),
        }

    def stop(self):
        self.stop_requested.set()
        with self.lock:
            return {'stopping': True, 'pid': os.getpid(), 'in_flight': [op for op, _d in self.work()],
                    'drain_seconds': self.drain_seconds()}


class Handler(socketserver.BaseRequestHandler):
    """One client connection: requests answered in order, one message each."""

    def handle(self):
        helper = self.server.helper
        helper.drivers.prepare_thread()
        accepted = time.time()
        turn = LargeTurn(helper.large_turns)
        # FrameReader polls (select() fails for descriptors above 1024, which a helper with
        # hundreds of guests and clients reaches), and wakes every POLL_SECONDS to see
        # whether the helper is stopping.
        reader = _protocol.FrameReader(self.request.fileno(), gate=turn.take)
        self.request.settimeout(REPLY_SECONDS)  # for sendall; reader polls
        try:
            while True:
                try:
                    line = reader.read(POLL_SECONDS)
                except TimeoutError:
                    if helper.stop_requested.is_set():
                        break
                    if turn.overdue():
                        log.warning('closed a connection that did not send its request of more than %d bytes within '
                                    '%d s', _protocol.SMALL_MESSAGE_BYTES, LARGE_TURN_SECONDS)
                        break
                    if accepted and not reader.buffer and time.time() - accepted > FIRST_REQUEST_SECONDS:
                        log.warning('closed a connection that sent nothing within %d s', FIRST_REQUEST_SECONDS)
                        break
                    continue
                accepted = None
                if line is None:
                    break
                if helper.stop_requested.is_set():
                    # Not carried out: the client may safely ask the next helper.
                    self.request.sendall(_protocol.encode(stopping_reply(helper, line)))
                    break
                reply = answer(helper, line)
                # A subscription is given up however its connection ends, also before its reply went out.
                subscriber = helper.events.claim()
                try:
                    self.request.sendall(_protocol.encode(reply))
                    if turn.give_back():
                        helper.give_memory_back()
                    if subscriber is not None:
                        self.stream(helper, subscriber)
                        break
                finally:
                    if subscriber is not None:
                        helper.events.unsubscribe(subscriber)
                        helper.touch()
                if helper.drivers.restart_requested:
                    log.info('restarting so that libvirt reloads the secrets from disk')
                    helper.stop_requested.set()
        except _protocol.MessageTooLong:
            log.warning('closed a connection that sent a request longer than %d bytes', _protocol.MAX_MESSAGE_BYTES)
        except OSError:
            pass
        finally:
            if turn.give_back():
                helper.give_memory_back()

    def stream(self, helper, subscriber):
        """Send a subscription's messages until the client closes it or the helper stops. Only
        what the socket takes at once is sent: a client that stops reading holds this thread
        and its own queue (which then drops), never the helper's event loop or another client."""
        sock = self.request
        sock.setblocking(False)
        poller = select.poll()
        pending, quiet_since = b'', time.time()
        try:
            while not helper.stop_requested.is_set():
                if not pending:
                    message = subscriber.get(POLL_SECONDS)
                    if message is None and time.time() - quiet_since >= _protocol.HEARTBEAT_SECONDS:
                        message = {'heartbeat': time.time()}
                    if message is not None:
                        pending, quiet_since = _protocol.encode(message), time.time()
                poller.register(sock.fileno(), select.POLLIN | (select.POLLOUT if pending else 0))
                for _fd, flags in poller.poll(POLL_SECONDS * 1000 if pending else 0):
                    if flags & select.POLLIN and not sock.recv(1 << 16):
                        return  # closed; what else a subscriber sends is not read
                    if flags & (select.POLLHUP | select.POLLERR):
                        return
                    if flags & select.POLLOUT:
                        try:
                            pending = pending[sock.send(pending):]
                        except BlockingIOError:
                            pass
        except OSError:
            return


class LargeTurns:
    """The helper's few turns to read and answer a request larger than SMALL_MESSAGE_BYTES,
    given in the order connections asked for them."""

    def __init__(self, count):
        self.free = count
        self.waiting = collections.deque()
        self.changed = threading.Condition()

    def take(self, who, seconds):
        """Whether who got a turn, waiting up to seconds (and keeping its place in line)."""
        with self.changed:
            if who not in self.waiting:
                self.waiting.append(who)
            if not self.changed.wait_for(lambda: self.free and self.waiting[0] is who, max(0, seconds)):
                return False
            self.waiting.popleft()
            self.free -= 1
            self.changed.notify_all()  # the next in line may have a turn too
            return True

    def leave(self, who, had_turn):
        """who no longer waits, and gives back its turn if it had one."""
        with self.changed:
            if who in self.waiting:
                self.waiting.remove(who)
            self.free += 1 if had_turn else 0
            self.changed.notify_all()


class LargeTurn:
    """A connection's turn among the helper's LargeTurns: taken when its request grows past
    SMALL_MESSAGE_BYTES, given back when it is answered or the connection ends."""

    def __init__(self, turns):
        self.turns = turns
        self.since = None

    def take(self, seconds):
        """Whether the connection has its turn, waiting for one up to seconds."""
        if self.since is None:
            if not self.turns.take(self, seconds):
                return False
            self.since = time.time()
        return True

    def overdue(self):
        return self.since is not None and time.time() - self.since > LARGE_TURN_SECONDS

    def give_back(self):
        """Whether the connection had a turn (now given back); it no longer waits for one."""
        had_turn, self.since = self.since is not None, None
        self.turns.leave(self, had_turn)
        return had_turn


def decode_request(line):
    """The request of a line: a JSON object of at most MAX_REQUEST_VALUES values, checked
    before it is parsed; ValueError if it is not."""
    if sum(line.count(separator) for separator in (b',', b'[', b'{')) > MAX_REQUEST_VALUES:
        raise ValueError('more than the %d JSON values a request may hold' % MAX_REQUEST_VALUES)
    request = _protocol.decode(line)
    if not isinstance(request, dict):
        raise ValueError('not an object')
    return request


def request_id(line):
    try:
        return decode_request(line).get('id')
    except ValueError:
        return None


def stopping_reply(helper, line):
    error = HelperError(_protocol.ERROR_STOPPING, 'the helper (pid %d) is stopping' % os.getpid()).to_dict()
    with helper.lock:
        error['drain_seconds'] = helper.drain_seconds()
    error['pid'] = os.getpid()
    return _protocol.reply_message(request_id(line), error=error)


def answer(helper, line):
    """The reply to one request line; every failure is an error reply."""
    number = reply_to = None
    try:
        request = decode_request(line)
        reply_to = request.get('id')
        number = helper.begin(request.get('op'), float(request.get('timeout') or _protocol.CALL_SECONDS))
        return _protocol.reply_message(reply_to, result=helper.handle(request))
    except HelperError as e:
        error = e
    except ValueError as e:
        error = HelperError(_protocol.ERROR_PROTOCOL, 'malformed request: %s' % e,
                            'use a client of the same release as this helper')
    except OSError as e:
        # Files the helper handles itself under the root (a full disk, a removed directory).
        log.exception('request failed')
        error = HelperError(_protocol.ERROR_STORAGE, str(e), hint_for_libvirt_error(str(e)))
    except Exception as e:  # pylint: disable=broad-except
        log.exception('request failed')
        error = HelperError(_protocol.ERROR_INTERNAL, 'the helper failed: %s: %s' % (type(e).__name__, e),
                            'this is a bug: report it with the traceback in %s' % helper.root.log_path)
    finally:
        if number is not None:
            helper.end(number)
    return _protocol.reply_message(reply_to, error=error.to_dict())


def implementations(targets):
    """Each operation of _protocol, bound to the one method of targets that carries it out.

    A method of the same name implements an operation; an operation without exactly one is
    a bug of this collection, found when the helper starts (and by the unit tests).
    """
    found = {}
    for name in _protocol.OPERATIONS:
        methods = [getattr(target, name) for target in targets if callable(getattr(target, name, None))]
        if len(methods) != 1:
            raise RuntimeError('operation %s has %d implementations in the helper' % (name, len(methods)))
        found[name] = methods[0]
    return found


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, path, helper):
        self.helper = helper
        # Held in reserve: when descriptors run out, it is given up for a moment so that a
        # client can be accepted and told why, instead of waiting in the backlog.
        self.spare = os.open('/dev/null', os.O_RDONLY | os.O_CLOEXEC)
        socketserver.UnixStreamServer.__init__(self, path, Handler)

    def get_request(self):
        try:
            return socketserver.UnixStreamServer.get_request(self)
        except OSError as e:
            if e.errno not in (errno.EMFILE, errno.ENFILE) or self.spare is None:
                raise
        os.close(self.spare)
        self.spare = None
        try:
            sock, _addr = self.socket.accept()
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            log.error('out of file descriptors (limit %d): refusing a client', limit)
            error = HelperError(_protocol.ERROR_DESCRIPTORS, 'the helper (pid %d) has run out of file descriptors '
                                '(limit %d)' % (os.getpid(), limit),
                                'raise its hard limit (LimitNOFILE= in a systemd unit, ulimit -Hn, or '
                                'prlimit --nofile) or use fewer parallel tasks, then run the task again'
                                ).to_dict()
            error['pid'] = os.getpid()
            try:
                sock.sendall(_protocol.encode(_protocol.reply_message(None, error=error)))
            finally:
                sock.close()
        finally:
            try:
                self.spare = os.open('/dev/null', os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                pass  # taken meanwhile: the next refusal waits until one is free again
        raise OSError(errno.EMFILE, 'out of file descriptors')

    def verify_request(self, request, client_address):
        pid, uid, _gid = _protocol.peer_credentials(request)
        if uid in self.helper.allowed_uids:
            return True
        log.warning('refused a connection from pid %d uid %d: only uids %s may use this root',
                    pid, uid, sorted(self.helper.allowed_uids))
        return False


def libc_with_malloc_trim():
    """glibc, or None on a C library without malloc_trim."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


LIBC = libc_with_malloc_trim()
M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def map_large_blocks():
    """Have glibc's malloc give each large block (a request's buffer, its copies) pages of its
    own, returned to the system when freed. By default it raises that size to the largest
    block freed so far, so that a 16 MiB request's copies stay in the heap of its thread."""
    if LIBC is not None:
        LIBC.mallopt(M_MMAP_THRESHOLD, 128 << 10)


def raise_descriptor_limit():
    """Use every descriptor the hard limit allows: guests' monitor and agent sockets and
    clients add up to more than the usual soft limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            log.warning('cannot raise the descriptor limit from %d to %s: %s', soft, hard, e)


def main(argv, version):
    """Run the helper: argv after the Python (see _protocol.helper_argv), version the hash of
    the bundle it was started from."""
    parser = argparse.ArgumentParser(description='embedvirt.libvirt helper for one root')
    parser.add_argument(_protocol.HELPER_FLAG, action='store_true', required=True)
    parser.add_argument('--root', required=True)
    parser.add_argument('--idle-timeout', type=int, default=0)
    args = parser.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format='%(asctime)s helper[%(process)d] %(levelname)s %(message)s')
    # stdout is the client's pipe: one line saying ready or why not, then it is closed.
    ready = os.fdopen(os.dup(1), 'wb')
    os.dup2(2, 1)
    helper = Helper(args.root, args.idle_timeout, version)
    signal.signal(signal.SIGTERM, lambda *_: helper.stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: helper.stop_requested.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        helper.start()
    except HelperError as e:
        log.error('cannot start: %s', e.message)
        error = e
    except OSError as e:
        log.exception('cannot start')
        error = HelperError(_protocol.ERROR_STORAGE, 'the helper cannot start on %s: %s' % (args.root, e),
                            hint_for_libvirt_error(str(e)))
    else:
        log.info('serving root %s (version %s, idle timeout %s s, uid %d)',
                 args.root, version[:16], args.idle_timeout, os.geteuid())
        ready.write(_protocol.encode(_protocol.reply_message(None, result=helper.helper_status())))
        ready.close()
        helper.wait_and_stop()
        return 0
    ready.write(_protocol.encode(_protocol.reply_message(None, error=error.to_dict())))
    ready.close()
    return 1
