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
import os
import socket
import stat
import time

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _protocol, _root
from ansible_collections.embedvirt.libvirt.plugins.module_utils._bundle import helper_bundle
from ansible_collections.embedvirt.libvirt.plugins.module_utils._client_error import HelperClientError, unresponsive
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import Control, Operations
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import EmbedRoot

# A helper that is alive answers these within milliseconds; one that does not is stopped
# (SIGSTOP) or stuck inside libvirt, and the task says so instead of waiting forever.
CONNECT_TIMEOUT = 10
HELLO_TIMEOUT = 30


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

    def messages(self):
        """The messages of a subscription (see Operations.events_subscribe) as they come;
        HelperClientError when the helper closes it or falls silent past its heartbeats."""
        silence = _protocol.HEARTBEAT_SECONDS * _protocol.HEARTBEAT_MISSED
        while True:
            try:
                line = self.reader.read(silence)
            except TimeoutError:
                raise unresponsive(self.root, self.peer_pid, 'sent no event nor heartbeat within %d s' % silence)
            except (_protocol.MessageTooLong, OSError) as e:
                raise HelperClientError('lost the subscription to the helper (pid %d): %s' % (self.peer_pid, e),
                                        _protocol.ERROR_CONNECTION, pid=self.peer_pid)
            if line is None:
                raise HelperClientError('the helper (pid %d) of %s ended the subscription (it stopped)'
                                        % (self.peer_pid, self.root.path), _protocol.ERROR_CONNECTION,
                                        'subscribe again: that starts a helper', self.peer_pid)
            try:
                yield _protocol.decode(line)
            except ValueError as e:
                raise HelperClientError('the helper (pid %d) sent a subscription something that is not JSON: %s'
                                        % (self.peer_pid, e), _protocol.ERROR_PROTOCOL, pid=self.peer_pid)


class HelperClient(Operations):
    """Calls into the helper of one root, starting it under the root's lock when needed: its
    methods are the operations of _protocol.Operations."""

    def __init__(self, root, idle_timeout=None, python=None, create=None, helper_code=None):
        """helper_code: (the helper's bundle or None, its version) as a module's action gave
        them (see plugin_utils/_action.py); when not given, the bundle is read here."""
        self.root = EmbedRoot(root)
        # Plugins only use roots that exist; modules make them: create(rootdir) fills a root just
        # made and returns what the task should tell its user.
        self.create = create
        self.idle_timeout = idle_timeout
        self.python = python  # the helper's Python as given; None: chosen (see helper_python)
        # The bundle is None when this task has only its version: it cannot start a helper.
        self.bundle, self.version = helper_code or helper_bundle()
        self.connection = None
        # The status the helper of this connection greeted it with (see connected_status).
        self.greeting = None
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
        return starting().helper_python(self.python, for_boot)

    def ensure(self):
        """Connect to a current helper, starting (or replacing) one if needed; its status."""
        return self.current() or starting().start(self)

    def connected_status(self):
        """The status of the helper this client talks to, as it greeted the connection; connects
        (starting a helper if needed) only when there is no connection yet."""
        return self.greeting if self.connection is not None else self.ensure()

    def current(self):
        """Connect to the root's helper: its status if it runs this version, else None."""
        status = self.connect()
        return status if status is not None and status['version'] == self.version else None

    def status(self):
        """Status of the running helper, or None; never starts one."""
        return self.connect(apply_idle_timeout=False)

    def stop(self):
        """Stop the running helper (requests in flight finish first); its last status or None."""
        status = self.connect(apply_idle_timeout=False)
        if status is not None:
            starting().retire(self, status)
        return status

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def subscribe(self, events=None, domains=None, queue=None):
        """(reply, messages): a subscription to the root's domain events on a connection of its
        own (this client's, which it takes); see Operations.events_subscribe. A helper of
        another release of this collection serves it too when it can: a follower of events must
        not replace, again and again, the helper that the playbooks' release starts."""
        args = dict(events=events, domains=domains, queue=_protocol.EVENTS_QUEUE if queue is None else queue)
        status = self.greeting if self.connection is not None else self.connect()
        if status is None or status.get('protocol') != _protocol.PROTOCOL:
            self.ensure()
        try:
            reply = self._send(Operations.events_subscribe.operation, args)
        except HelperClientError as e:
            if e.kind != _protocol.ERROR_PROTOCOL or self.greeting['version'] == self.version:
                raise
            self.close()  # a helper too old to know subscriptions: replaced by this release's
            self.ensure()
            reply = self._send(Operations.events_subscribe.operation, args)
        connection, self.connection = self.connection, None
        return reply, connection.messages()

    # --- internals -------------------------------------------------------------------
    def _connection_to_helper(self, rootdir):
        """A connection to the root's helper, or None if nobody listens.

        The socket is opened (O_PATH, never through a link) in its checked directory, checked,
        and connected to through that very descriptor; whoever answers must be the root's owner
        (or uid 0: a helper of an earlier release) and serve this very root.
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
            raise unresponsive(self.root, self.root.driver_holder(rootdir),
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

    def connect(self, apply_idle_timeout=True):
        """Connect to the root's helper and greet it: its status, or None when none runs."""
        self.close()
        if not os.path.isdir(self.root.path):
            self.root.check_access()
            return None
        with self.root.open() as rootdir:
            connection = self._connection_to_helper(rootdir)
        if connection is None:
            return None
        try:
            status = connection.hello(self.version, self.idle_timeout if apply_idle_timeout else None)
        except HelperClientError as e:
            connection.close()
            if e.kind == _protocol.ERROR_STOPPING:
                # It still holds libvirt's lock on the root until it has finished and exited.
                starting().wait_for_helper_exit(self.root, connection.peer_pid, e.detail.get('drain_seconds'))
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
        self.connection, self.greeting = connection, status
        return status


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


def starting():
    """_helper_start, imported when a helper must start, be replaced or stop: a task that finds
    its helper running never compiles it (AnsiballZ ships sources, compiled on every run)."""
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.embedvirt.libvirt.plugins.module_utils import _helper_start
    return _helper_start
