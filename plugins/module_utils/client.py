# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The client side of a root's helper: find it, start it when needed, call it.

Used by modules (on the managed host) and plugins alike; it needs filelock but never
libvirt, which only the helper process imports.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import select
import socket
import subprocess
import sys
import time

try:
    import filelock
    HAS_FILELOCK = True
    FILELOCK_IMPORT_ERROR = None
except ImportError as e:
    HAS_FILELOCK = False
    FILELOCK_IMPORT_ERROR = e

from ansible_collections.embedvirt.libvirt.plugins.module_utils import helper_server
from ansible_collections.embedvirt.libvirt.plugins.module_utils.root import EmbedRoot

DEFAULT_IDLE_TIMEOUT = 300
START_TIMEOUT = 120
LOCK_TIMEOUT = 180
CALL_TIMEOUT = 900
LOG_KEEP_BYTES = 1 << 20


class HelperClientError(Exception):
    """Anything that stops a call through the helper; the message says what to do."""

    def __init__(self, message, kind='client', hint=None, pid=None):
        super(HelperClientError, self).__init__(message)
        self.kind = kind
        self.hint = hint
        self.pid = pid

    @classmethod
    def from_reply(cls, error):
        return cls(error.get('message') or 'helper error', error.get('kind', 'helper'),
                   error.get('hint'), error.get('pid'))

    def __str__(self):
        text = self.args[0]
        return '%s. Fix: %s' % (text, self.hint) if self.hint else text


def module_source(module):
    """A module's code as shipped with this collection."""
    # The module's own loader reads it from a file or from AnsiballZ's zip alike.
    return module.__loader__.get_data(module.__file__)


def helper_source():
    """The helper's code as shipped with this collection, and its version."""
    source = module_source(helper_server)
    return source, helper_server.code_version(source)


class HelperConnection:
    """One socket to a running helper; requests are answered in order."""

    def __init__(self, sock):
        self.sock = sock
        self.rfile = sock.makefile('rb')
        self.next_id = 0
        self.peer_pid, self.peer_uid, _gid = helper_server.peer_credentials(sock)

    def request(self, op, args=None, timeout=CALL_TIMEOUT):
        self.next_id += 1
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(helper_server.encode({'id': self.next_id, 'op': op, 'args': args or {}}))
            line = self.rfile.readline()
        except socket.timeout:
            raise HelperClientError('the helper did not answer %s within %d s' % (op, timeout),
                                    'timeout')
        except OSError as e:
            raise HelperClientError('lost the connection to the helper during %s: %s' % (op, e),
                                    'connection')
        if not line:
            raise HelperClientError('the helper closed the connection during %s' % op, 'connection')
        reply = helper_server.decode(line)
        if not reply.get('ok'):
            raise HelperClientError.from_reply(reply.get('error') or {})
        return reply.get('result')

    def close(self):
        self.rfile.close()
        self.sock.close()


class HelperClient:
    """Calls into the helper of one root, starting it under the root's lock when needed."""

    def __init__(self, root, idle_timeout=None, python=None, create=True):
        self.root = EmbedRoot(root)
        self.create = create  # plugins only use roots that exist; modules make them
        self.idle_timeout = idle_timeout
        self.python = python or sys.executable
        self.source, self.version = helper_source()
        self.connection = None

    # --- public API ----------------------------------------------------------------
    def call(self, op, call_timeout=CALL_TIMEOUT, **args):
        if self.connection is None:
            self.ensure()
        try:
            return self._request(op, args, call_timeout)
        except HelperClientError as e:
            if e.kind != 'stopping':
                raise
        # The helper was stopping (idle timeout, restart) and did not carry the request out.
        self.close()
        self.ensure()
        return self._request(op, args, call_timeout)

    def _request(self, op, args, timeout):
        try:
            return self.connection.request(op, args, timeout=timeout)
        except HelperClientError as e:
            if e.kind == 'connection':
                # Not retried: the request may have been carried out in part (a guest started).
                e.hint = ('the helper of %s went away (killed?) while it carried out %s, which may be '
                          'done in part; the next task starts a new helper: check the state (for '
                          'guests with embedvirt.libvirt.domain_info) and run the task again; see %s'
                          % (self.root.path, op, self.root.log_path))
            raise

    def ensure(self):
        """Connect to a current helper, starting (or replacing) one if needed; its status."""
        status = self._hello()
        if status is not None and status['version'] == self.version:
            return status
        if not self.create:
            self.root.check_exists()
        lock_path = self.root.lock_path
        if os.path.islink(lock_path) or (os.path.lexists(lock_path) and not os.path.isfile(lock_path)):
            # filelock would follow a link, or fail with a bare OSError on a directory.
            raise HelperClientError('%s is not a regular file' % lock_path, 'lock',
                                    'remove it; the next task makes it again')
        if not HAS_FILELOCK:
            raise HelperClientError(
                'the Python module filelock is missing for %s (%s)' % (sys.executable, FILELOCK_IMPORT_ERROR),
                'filelock_missing',
                'install python3-filelock (Debian/Ubuntu, Fedora/RHEL) or "pip install filelock" '
                'for the Python that runs the module')
        self.root.prepare()
        lock = filelock.FileLock(self.root.lock_path, timeout=LOCK_TIMEOUT)
        try:
            with lock:
                # Somebody may have started (or replaced) the helper while we waited.
                status = self._hello()
                if status is not None and status['version'] != self.version:
                    self._retire(status)
                    status = None
                if status is None:
                    self._spawn_after_stopping_helper()
                    status = self._hello()
        except filelock.Timeout:
            raise HelperClientError(
                'waited %d s for the lock %s held by another task starting the helper'
                % (LOCK_TIMEOUT, self.root.lock_path), 'lock_timeout',
                'check for a hung task or helper on this root (see %s)' % self.root.log_path)
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

    # --- internals -------------------------------------------------------------------
    def _connect(self):
        """A connection to whoever listens on the socket, or None if nobody does."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.root.socket_path)
        except OSError as e:
            sock.close()
            if e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR):
                return None  # no helper, or a stale socket of a dead one
            if e.errno == errno.EACCES:
                raise HelperClientError(
                    'permission denied on %s: the root belongs to another user' % self.root.socket_path,
                    'permission', 'run the task as the owner of %s or as root' % self.root.path)
            raise HelperClientError('cannot connect to %s: %s' % (self.root.socket_path, e), 'connection')
        connection = HelperConnection(sock)
        if connection.peer_uid not in (0, os.geteuid()):
            connection.close()
            raise HelperClientError(
                '%s is served by uid %d, which is neither root nor you: refusing to talk to it'
                % (self.root.socket_path, connection.peer_uid), 'permission',
                'remove the socket and check who can write to %s' % self.root.state_dir)
        return connection

    def _hello(self, apply_idle_timeout=True):
        self.close()
        self.root.check_access()
        connection = self._connect()
        if connection is None:
            return None
        args = {'version': self.version}
        if apply_idle_timeout and self.idle_timeout is not None:
            args['idle_timeout'] = self.idle_timeout
        try:
            status = connection.request('hello', args, timeout=30)
        except HelperClientError as e:
            connection.close()
            if e.kind == 'stopping':
                # It still holds libvirt's lock on the root until it has exited.
                wait_for_exit(e.pid)
                return None
            if e.kind == 'connection':
                return None  # it went away (killed) while we asked
            raise
        self.connection = connection
        return status

    def _retire(self, status):
        """Ask a helper (of other code, or on request) to finish, and wait until it is gone."""
        try:
            self.connection.request('stop', timeout=30)
        except HelperClientError:
            pass  # already going away
        self.close()
        if not wait_for_exit(status['pid']):
            raise HelperClientError('the helper (pid %d) for %s did not stop' % (status['pid'], self.root.path),
                                    'stop', 'see %s; kill it if it hangs' % self.root.log_path)

    def _spawn_after_stopping_helper(self):
        """Spawn; if a helper of this root that has closed its socket still holds libvirt's
        lock while it finishes, wait for it to exit and spawn again."""
        try:
            self._spawn()
        except HelperClientError as e:
            holder = self._helper_holding_root() if e.kind == 'root_busy' else None
            if holder is None or not wait_for_exit(holder):
                raise
            self._spawn()

    def _helper_holding_root(self):
        """pid of a helper of this root that holds one of libvirt's driver locks, or None."""
        code_prefix = os.path.join(self.root.state_dir, 'helper-')
        for pidfile in self.root.driver_pidfiles:
            owner = helper_server.pidfile_owner(pidfile)
            if owner is not None and any(part.startswith(code_prefix) for part in owner[1]):
                return owner[0]
        return None

    def _spawn(self):
        code_path = self.root.helper_code_path(self.version)
        if not os.path.exists(code_path):
            tmp = '%s.%d.tmp' % (code_path, os.getpid())
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'wb') as f:
                f.write(self.source)
            os.rename(tmp, code_path)
        rotate_log(self.root.log_path)
        idle = DEFAULT_IDLE_TIMEOUT if self.idle_timeout is None else self.idle_timeout
        with open(self.root.log_path, 'ab') as log:
            process = subprocess.Popen(
                [self.python, code_path, '--root', self.root.path,
                 '--socket', self.root.socket_path, '--idle-timeout', str(idle)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                cwd='/', close_fds=True, start_new_session=True)
        try:
            reply = read_ready_line(process, START_TIMEOUT)
        finally:
            process.stdout.close()
        if reply is None:
            code = process.poll()
            raise HelperClientError(
                'the helper for %s %s' % (self.root.path, 'exited with status %s' % code
                                          if code is not None else 'did not start within %d s' % START_TIMEOUT),
                'start', 'see %s:\n%s' % (self.root.log_path, log_tail(self.root.log_path)))
        if not reply.get('ok'):
            raise HelperClientError.from_reply(reply.get('error') or {})


def read_ready_line(process, timeout):
    """The helper's one-line start report on its stdout, or None if it died or hung."""
    try:
        line = read_line(process.stdout, timeout)
    except TimeoutError:
        process.kill()
        return None
    return None if line is None else helper_server.decode(line)


def read_line(stream, timeout):
    """One line from a child's pipe, without its newline; None if the pipe closed first.

    Raises TimeoutError when no whole line came within timeout. Meant for request/reply
    pipes, where nothing follows the line.
    """
    deadline = time.time() + timeout
    chunks = []
    while not chunks or b'\n' not in chunks[-1]:
        remaining = deadline - time.time()
        if remaining <= 0:
            raise TimeoutError()
        if select.select([stream], [], [], remaining)[0]:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                return None
            chunks.append(chunk)
    return b''.join(chunks).split(b'\n', 1)[0]


def wait_for_exit(pid, timeout=helper_server.STOP_DRAIN_SECONDS + 10):
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


def rotate_log(path):
    try:
        if os.path.getsize(path) > LOG_KEEP_BYTES:
            os.replace(path, path + '.1')
    except OSError:
        pass


def log_tail(path, lines=15):
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            return b'\n'.join(f.read().splitlines()[-lines:]).decode('utf-8', 'replace')
    except OSError:
        return '(no log)'
