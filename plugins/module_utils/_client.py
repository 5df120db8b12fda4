# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The client side of a root's helper: find it, start it when needed, call it.

Used by modules (on the managed host) and plugins alike; it needs only Python's standard
library, never libvirt, which only the helper process imports.

The helper of a root runs as the root's owner, whoever starts it (like qemu:///session for
an ordinary user): a root owned by uid U is U's, so root never runs code in U's driver, and
never executes, follows or trusts a file U could have placed in the root. The helper's code
comes from this collection as one bundle (_bundle.helper_bundle) fed to `python -I -c` on stdin;
every file the client opens in a root goes through _root_dir.RootDir (descriptors, no links,
checked owners).
"""


import errno
import fcntl
import os
import pwd
import select
import socket
import stat
import subprocess
import time

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _helper_python, _protocol, _root
from ansible_collections.embedvirt.libvirt.plugins.module_utils._bundle import BOOTSTRAP, helper_bundle
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import Control, Operations
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import RootError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import EmbedRoot

DEFAULT_IDLE_TIMEOUT = 300
START_TIMEOUT = 120
LOCK_TIMEOUT = 180
CALL_TIMEOUT = _protocol.CALL_SECONDS
# A helper that is alive answers these within milliseconds; one that does not is stopped
# (SIGSTOP) or stuck inside libvirt, and the task says so instead of waiting forever.
CONNECT_TIMEOUT = 10
HELLO_TIMEOUT = 30
LOG_KEEP_BYTES = 1 << 20


class HelperClientError(Exception):
    """Anything that stops a call through the helper; the message says what to do."""

    def __init__(self, message, kind='client', hint=None, pid=None, detail=None):
        super().__init__(message)
        self.kind = kind
        self.hint = hint
        self.pid = pid
        self.detail = detail or {}

    @classmethod
    def from_reply(cls, error, pid=None):
        """The error a helper reported; pid is who reported it (the helper's own word on its
        pid is not taken: the owner of the root may run anything on its socket)."""
        if not isinstance(error, dict):
            error = {}
        return cls(str(error.get('message') or 'helper error'), str(error.get('kind', 'helper')),
                   error.get('hint') and str(error['hint']), pid, error)

    def to_dict(self):
        """The error as a reply's error (the SSH relay passes it on)."""
        return {'message': self.args[0], 'kind': self.kind, 'hint': self.hint, 'pid': self.pid}

    def __str__(self):
        text = self.args[0]
        return '%s. Fix: %s' % (text, self.hint) if self.hint else text


def unresponsive(root, pid, problem):
    """The error for a helper that does not answer: its pid, and how to get going again."""
    who = 'the helper (pid %s)' % pid if pid else 'the helper'
    return HelperClientError(
        '%s of %s %s' % (who, root.path, problem), _protocol.ERROR_UNRESPONSIVE,
        'it is stopped (kill -CONT %s) or stuck inside libvirt (see %s); `kill %s` replaces it (guests '
        'keep running, the next task starts a new helper)' % (pid or '<pid>', root.log_path, pid or '<pid>'),
        pid)


class HelperConnection(Control):
    """One socket to a running helper; requests are answered in order. Its Control methods
    (hello, stop) ask the helper about itself."""

    def __init__(self, sock, root):
        self.sock = sock
        self.root = root
        self.reader = _protocol.FrameReader(sock.fileno())
        self.next_id = 0
        self.peer_pid, self.peer_uid, _gid = _protocol.peer_credentials(sock)

    def request(self, op, args):
        return self.send(op, args, HELLO_TIMEOUT)

    def send(self, op, args, timeout):
        """The result of one request, within timeout seconds."""
        self.next_id += 1
        self.sock.settimeout(timeout)
        try:
            try:
                self.sock.sendall(_protocol.encode(_protocol.request_message(self.next_id, op, args, timeout)))
            except BrokenPipeError:
                pass  # a helper that refused us at once (no descriptors) left a reply to read
            line = self.reader.read(timeout)
        except (socket.timeout, TimeoutError):
            raise unresponsive(self.root, self.peer_pid, 'did not answer %s within %d s' % (op.name, timeout))
        except _protocol.MessageTooLong:
            raise HelperClientError('the reply of the helper (pid %d) to %s is longer than %d bytes'
                                    % (self.peer_pid, op.name, _protocol.MAX_MESSAGE_BYTES), _protocol.ERROR_PROTOCOL,
                                    'see %s' % self.root.log_path, self.peer_pid)
        except OSError as e:
            raise HelperClientError('lost the connection to the helper during %s: %s' % (op.name, e),
                                    _protocol.ERROR_CONNECTION, pid=self.peer_pid)
        if line is None:
            # Nothing, or a reply cut off: the helper went away while answering.
            raise HelperClientError('the helper (pid %d) closed the connection during %s'
                                    % (self.peer_pid, op.name), _protocol.ERROR_CONNECTION, pid=self.peer_pid)
        try:
            reply = _protocol.decode(line)
        except ValueError as e:
            reply = e
        if not isinstance(reply, dict):
            raise HelperClientError('the helper (pid %d) answered %s with something that is not a reply '
                                    '(%.80r)' % (self.peer_pid, op.name, line), _protocol.ERROR_PROTOCOL,
                                    'stop that process (kill %d); the next task starts a helper' % self.peer_pid,
                                    self.peer_pid)
        if not reply.get('ok'):
            raise HelperClientError.from_reply(reply.get('error'), self.peer_pid)
        return reply.get('result')

    def close(self):
        self.sock.close()


class HelperClient(Operations):
    """Calls into the helper of one root, starting it under the root's lock when needed: its
    methods are the operations of _protocol.Operations."""

    def __init__(self, root, idle_timeout=None, python=None, create=None):
        self.root = EmbedRoot(root)
        # Plugins only use roots that exist; modules make them: create(rootdir) fills a root just
        # made and returns what the task should tell its user.
        self.create = create
        self.idle_timeout = idle_timeout
        self.python = python  # the helper's Python as given; None: chosen (see helper_python)
        self.bundle, self.version = helper_bundle()
        self.connection = None
        self.created_root = False
        # What the task should tell its user (waits it made), as sentences.
        self.notices = []

    # --- public API ----------------------------------------------------------------
    def request(self, op, args):
        """The result of an operation (see _protocol.Operations)."""
        if self.connection is None:
            self.ensure()
        try:
            return self._send(op, args)
        except HelperClientError as e:
            if e.kind != _protocol.ERROR_STOPPING:
                raise
        # The helper was stopping (idle timeout, restart) and did not carry the request out.
        self.close()
        self.ensure()
        return self._send(op, args)

    def _send(self, op, args):
        try:
            return self.connection.send(op, args, op.call_timeout(args))
        except HelperClientError as e:
            if e.kind == _protocol.ERROR_CONNECTION:
                # Not retried: the request may have been carried out in part (a guest started).
                e.hint = ('the helper of %s went away (killed?) while it carried out %s, which may be '
                          'done in part; the next task starts a new helper: check the state (for '
                          'guests with embedvirt.libvirt.domain_info) and run the task again; see %s'
                          % (self.root.path, op.name, self.root.log_path))
            raise

    def helper_python(self, for_boot=False):
        """The Python that starts the root's helper, now or at boot (see _helper_python)."""
        try:
            return _helper_python.helper_python(self.python, for_boot)
        except _helper_python.HelperPythonError as e:
            raise HelperClientError(str(e.args[0]), 'bindings_missing', e.hint)

    def ensure(self):
        """Connect to a current helper, starting (or replacing) one if needed; its status."""
        status = self._hello()
        if status is not None and status['version'] == self.version:
            return status
        if not self.create:
            self.root.check_exists()
        self.created_root = bool(self.create) and not os.path.lexists(self.root.path)
        with self.root.open(create=bool(self.create)) as rootdir:
            if self.created_root:
                self.notices.extend(self.create(rootdir))
            lock = self.start_lock(rootdir)
            try:
                # Somebody may have started (or replaced) the helper while we waited.
                status = self._hello()
                if status is not None and status['version'] != self.version:
                    self._retire(status)
                    status = None
                if status is None:
                    self._spawn_after_stopping_helper(rootdir)
                    status = self._hello()
            finally:
                os.close(lock)
        if status is None or status['version'] != self.version:
            raise HelperClientError('the helper for %s did not come up; see %s'
                                    % (self.root.path, self.root.log_path), 'start')
        return status

    def status(self):
        """Status of the running helper, or None; never starts one."""
        return self._hello(apply_idle_timeout=False)

    def stop(self):
        """Stop the running helper (requests in flight finish first); its last status or None."""
        status = self._hello(apply_idle_timeout=False)
        if status is not None:
            self._retire(status)
        return status

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def start_lock(self, rootdir):
        """The root's start lock, held (a descriptor; closing it releases the lock): no task starts
        a helper of the root meanwhile."""
        fd = rootdir.open_file(_root.LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.time() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.time() >= deadline:
                    os.close(fd)
                    raise HelperClientError(
                        'waited %d s for the lock %s held by another task starting (or replacing) the '
                        'helper' % (LOCK_TIMEOUT, self.root.lock_path), 'lock_timeout',
                        'check for a hung task or helper on this root (see %s)' % self.root.log_path)
                time.sleep(0.05)

    # --- internals -------------------------------------------------------------------
    def _connect(self, rootdir):
        """A connection to the root's helper, or None if nobody listens.

        The socket is opened (O_PATH, never through a link) in its checked directory, checked,
        and connected to through that very descriptor; whoever answers must be the root's owner
        (or root: a helper of an earlier release) and serve this very root.
        """
        try:
            state_fd = rootdir.subdir(_root.STATE_DIR)
        except FileNotFoundError:
            return None
        try:
            sock_fd = os.open(os.path.basename(_root.SOCKET), os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=state_fd)
        except FileNotFoundError:
            return None
        finally:
            os.close(state_fd)
        try:
            st = os.fstat(sock_fd)
            if not stat.S_ISSOCK(st.st_mode) or st.st_uid not in (0, rootdir.uid) or st.st_nlink != 1:
                raise HelperClientError(
                    '%s is not a socket of the root\'s owner (uid %d)' % (self.root.socket_path, rootdir.uid),
                    'socket', 'remove it; the next task starts a helper')
            sock = connect_unix('/proc/self/fd/%d' % sock_fd, CONNECT_TIMEOUT)
        except TimeoutError:
            raise unresponsive(self.root, self._driver_holder(rootdir),
                               'did not accept a connection within %d s' % CONNECT_TIMEOUT)
        except OSError as e:
            if e.errno == errno.ECONNREFUSED:
                return None  # a stale socket of a dead helper
            raise HelperClientError('cannot connect to %s: %s' % (self.root.socket_path, e), _protocol.ERROR_CONNECTION)
        finally:
            os.close(sock_fd)
        connection = HelperConnection(sock, self.root)
        if connection.peer_uid not in (0, rootdir.uid):
            connection.close()
            raise HelperClientError(
                '%s is served by uid %d, which is neither root nor the owner of the root (uid %d): '
                'refusing to talk to it' % (self.root.socket_path, connection.peer_uid, rootdir.uid),
                'permission', 'stop that process and remove the socket')
        return connection

    def _hello(self, apply_idle_timeout=True):
        self.close()
        if not os.path.isdir(self.root.path):
            self.root.check_access()
            return None
        with self.root.open() as rootdir:
            connection = self._connect(rootdir)
        if connection is None:
            return None
        try:
            status = connection.hello(self.version, self.idle_timeout if apply_idle_timeout else None)
        except HelperClientError as e:
            connection.close()
            if e.kind == _protocol.ERROR_STOPPING:
                # It still holds libvirt's lock on the root until it has finished and exited.
                self._wait_for_exit(connection.peer_pid, e.detail.get('drain_seconds'))
                return None
            if e.kind == _protocol.ERROR_CONNECTION:
                return None  # it went away (killed) while we asked
            raise
        if (not isinstance(status, dict) or status.get('root') != self.root.path
                or status.get('pid') != connection.peer_pid or not isinstance(status.get('version'), str)):
            connection.close()
            raise HelperClientError(
                'the socket of %s is answered by pid %s, which is not a helper serving this root: '
                'refusing to talk to it' % (self.root.path, connection.peer_pid), 'permission',
                'stop that process and remove %s' % self.root.socket_path)
        self.connection = connection
        return status

    def _retire(self, status):
        """Ask a helper (of other code, or on request) to finish, and wait until it is gone.

        Requests it is still carrying out (a long shutdown, a guest command) finish first: it
        says how long they may take, and we wait that long.
        """
        drain = None
        try:
            reply = self.connection.stop()
            if isinstance(reply, dict):
                drain = reply.get('drain_seconds')
                if reply.get('in_flight'):
                    self.notices.append(
                        'waited for the helper (pid %d) of %s to finish %s before replacing it'
                        % (status['pid'], self.root.path, ', '.join(str(op) for op in reply['in_flight'])))
        except HelperClientError:
            pass  # already going away
        self.close()
        self._wait_for_exit(status['pid'], drain)

    def _wait_for_exit(self, pid, drain_seconds=None):
        """Wait for a stopping helper to exit, as long as its requests in flight may take (as
        it says, but never longer than a request may last)."""
        if not isinstance(drain_seconds, (int, float)) or not 0 <= drain_seconds <= CALL_TIMEOUT:
            drain_seconds = _protocol.STOP_DRAIN_SECONDS if drain_seconds is None else CALL_TIMEOUT
        timeout = drain_seconds + 10
        if not wait_for_exit(pid, timeout):
            raise HelperClientError('the helper (pid %d) for %s did not stop within %d s' % (pid, self.root.path, timeout),
                                    'stop', 'see %s; kill it if it hangs (guests keep running)' % self.root.log_path,
                                    pid)

    def _spawn_after_stopping_helper(self, rootdir):
        """Spawn; if a helper of this root holds libvirt's lock yet did not answer, wait for it
        to exit and spawn again, or for it to answer. It is stopping (finishing its requests),
        or another program started it and it is still opening the drivers, which starts the
        autostart guests (the boot unit after a reboot, with the last boot's socket still there)."""
        try:
            self._spawn(rootdir)
        except HelperClientError as e:
            holder = self._helper_holding_root(rootdir) if e.kind == 'root_busy' else None
            if holder is None:
                raise
            started = time.time()
            while not wait_for_exit(holder, 0.2):
                if time.time() - started >= CALL_TIMEOUT:
                    raise unresponsive(self.root, holder, 'holds the root but did not answer within %d s' % CALL_TIMEOUT)
                status = self._hello()
                if status is not None and status['version'] == self.version:
                    self.notices.append('waited %.1f s for the helper (pid %d) of %s, which another program started, '
                                        'to open the root' % (time.time() - started, holder, self.root.path))
                    return
                if status is not None:
                    self._retire(status)
            self._spawn(rootdir)

    def _driver_holder(self, rootdir):
        """pid named by one of libvirt's driver pidfiles of the root, or None."""
        for pidfile in self.root.driver_pidfiles:
            try:
                text = rootdir.read_file(os.path.relpath(pidfile, self.root.path), limit=64)
                return int(text.strip()) if text else None
            except (RootError, OSError, ValueError):
                continue
        return None

    def _helper_holding_root(self, rootdir):
        """pid of a helper of this root that holds one of libvirt's driver locks, or None."""
        pid = self._driver_holder(rootdir)
        return pid if pid and _protocol.is_helper_of(pid, self.root.path) else None

    def _open_log(self, rootdir):
        """The helper's log, appended to (rotated when large), opened safely in the root."""
        log_dir = rootdir.subdir(_root.LOG_DIR, create=True)
        name = os.path.basename(_root.LOG)
        try:
            try:
                if os.stat(name, dir_fd=log_dir, follow_symlinks=False).st_size > LOG_KEEP_BYTES:
                    os.replace(name, name + '.1', src_dir_fd=log_dir, dst_dir_fd=log_dir)
            except FileNotFoundError:
                pass
        finally:
            os.close(log_dir)
        return rootdir.open_file(_root.LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _spawn(self, rootdir):
        os.close(rootdir.subdir(_root.STATE_DIR, create=True))  # made, and checked
        idle = DEFAULT_IDLE_TIMEOUT if self.idle_timeout is None else self.idle_timeout
        log_fd = self._open_log(rootdir)
        try:
            process = subprocess.Popen(
                [self.helper_python(), '-I', '-c', BOOTSTRAP] + _protocol.helper_argv(self.root.path, idle),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_fd,
                cwd='/', close_fds=True, start_new_session=True, **as_owner(rootdir.uid, rootdir.gid))
        finally:
            os.close(log_fd)
        try:
            # Bounded: the child runs as the owner, who could stop it before it reads.
            write_all(process.stdin.fileno(), self.bundle, START_TIMEOUT)
        except (BrokenPipeError, TimeoutError):
            pass  # it died or hung at once: its exit status, or the missing ready line, says so
        finally:
            process.stdin.close()
        try:
            reply = read_ready_line(process, START_TIMEOUT)
        finally:
            process.stdout.close()
        if reply is None:
            code = process.poll()
            raise HelperClientError(
                'the helper for %s %s' % (self.root.path, 'exited with status %s' % code
                                          if code is not None else 'did not start within %d s' % START_TIMEOUT),
                'start', 'see %s:\n%s' % (self.root.log_path, log_tail(rootdir)))
        if not reply.get('ok'):
            raise HelperClientError.from_reply(reply.get('error') or {})


def connect_unix(path, timeout):
    """A stream socket connected to path. A full listen backlog (the helper accepts slower
    than clients come, or is stopped) is waited out up to timeout, then TimeoutError."""
    deadline = time.time() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            return sock
        except (BlockingIOError, socket.timeout):
            sock.close()
            if time.time() >= deadline:
                raise TimeoutError()
        except OSError:
            sock.close()
            raise
        time.sleep(0.05)


def as_owner(uid, gid):
    """subprocess arguments that run a child as the root's owner, when we are root and not it."""
    if os.geteuid() != 0 or uid == 0:
        return {}
    # Only what the helper and libvirt need: root's environment may hold credentials, and
    # the owner can read the environment of its own processes.
    env = dict((key, value) for key, value in os.environ.items()
               if key in ('PATH', 'LANG', 'TZ') or key.startswith(('LC_', 'LIBVIRT_')))
    try:
        account = pwd.getpwuid(uid)
        env.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
    except KeyError:
        env['HOME'] = '/'
    return dict(user=uid, group=gid, extra_groups=_root.user_groups(uid, gid), env=env)


def write_all(fd, data, timeout):
    """Write data to a pipe, raising TimeoutError if the reader does not take it in time."""
    deadline = time.time() + timeout
    os.set_blocking(fd, False)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    view = memoryview(data)
    while view:
        remaining = deadline - time.time()
        if remaining <= 0:
            raise TimeoutError()
        if poller.poll(remaining * 1000):
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                continue


def read_ready_line(process, timeout):
    """The helper's one-line start report on its stdout, or None if it died or hung."""
    try:
        line = _protocol.FrameReader(process.stdout.fileno()).read(timeout)
    except (TimeoutError, _protocol.MessageTooLong):
        process.kill()
        return None
    try:
        reply = None if line is None else _protocol.decode(line)
    except ValueError:
        reply = None
    return reply if isinstance(reply, dict) else None


def wait_for_exit(pid, timeout=_protocol.STOP_DRAIN_SECONDS + 10):
    """Wait for a process to exit; whether it did."""
    deadline = time.time() + timeout
    while pid_alive(pid):
        if time.time() >= deadline:
            return False
        time.sleep(0.05)
    return True


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    # A zombie (an exited child of ours not reaped yet) is gone for our purposes.
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def log_tail(rootdir, lines=15):
    """The last lines of the helper's log, read safely (its end only: it may be huge)."""
    try:
        with os.fdopen(rootdir.open_file(_root.LOG), 'rb') as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 8192))
            text = f.read(8192)
    except (RootError, OSError):
        return '(no log)'
    return b'\n'.join(text.splitlines()[-lines:]).decode('utf-8', 'replace')
