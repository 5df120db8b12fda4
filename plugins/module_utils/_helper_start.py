# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""Starting, replacing and stopping a root's helper, for _client.HelperClient: the root's
start lock, the spawn (as the root's owner, the bundle on stdin, the log in the root), and the
wait for an old helper to go.

The client imports this only when a helper must start, be replaced or stop: a task that finds
its helper running never compiles it (AnsiballZ ships sources, compiled on every run).
"""


import errno
import fcntl
import os
import pwd
import select
import subprocess
import time

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _helper_python, _protocol, _root
from ansible_collections.embedvirt.libvirt.plugins.module_utils._bundle import BOOTSTRAP
from ansible_collections.embedvirt.libvirt.plugins.module_utils._client_error import HelperClientError, unresponsive
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import RootError

DEFAULT_IDLE_TIMEOUT = 300
START_TIMEOUT = 120
LOCK_TIMEOUT = 180
LOG_KEEP_BYTES = 1 << 20


def start(client):
    """Start the root's helper (making the root first when the client may), or replace one of
    other code, under the root's start lock; its status."""
    if client.bundle is None:
        raise HelperClientError(
            "the helper of %s must start (or be replaced by this release's), and this task ran without "
            "the helper's code" % client.root.path, _protocol.ERROR_HELPER_CODE_NEEDED,
            "run the module as a task (this collection's action plugin gives the code when it is needed)")
    if not client.create:
        client.root.check_exists()
    client.created_root = bool(client.create) and not os.path.lexists(client.root.path)
    with client.root.open(create=bool(client.create)) as rootdir:
        if client.created_root:
            client.notices.extend(client.create(rootdir))
        lock = start_lock(client.root, rootdir)
        try:
            # Somebody may have started (or replaced) the helper while we waited.
            status = client.connect()
            if status is not None and status['version'] != client.version:
                retire(client, status)
                status = None
            if status is None:
                spawn_after_stopping_helper(client, rootdir)
                status = client.connect()
        finally:
            os.close(lock)
    if status is None or status['version'] != client.version:
        raise HelperClientError('the helper for %s did not come up; see %s'
                                % (client.root.path, client.root.log_path), 'start')
    return status


def helper_python(given, for_boot=False):
    """The Python that starts a root's helper, now or at boot (see _helper_python)."""
    try:
        return _helper_python.helper_python(given, for_boot)
    except _helper_python.HelperPythonError as e:
        raise HelperClientError(str(e.args[0]), 'bindings_missing', e.hint)


def start_lock(root, rootdir):
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
                    'helper' % (LOCK_TIMEOUT, root.lock_path), 'lock_timeout',
                    'check for a hung task or helper on this root (see %s)' % root.log_path)
            time.sleep(0.05)


def retire(client, status):
    """Ask the client's helper (of other code, or on request) to finish, and wait until it is gone.

    Requests it is still carrying out (a long shutdown, a guest command) finish first: it
    says how long they may take, and we wait that long.
    """
    drain = None
    try:
        reply = client.connection.stop()
        if isinstance(reply, dict):
            drain = reply.get('drain_seconds')
            if reply.get('in_flight'):
                client.notices.append(
                    'waited for the helper (pid %d) of %s to finish %s before replacing it'
                    % (status['pid'], client.root.path, ', '.join(str(op) for op in reply['in_flight'])))
    except HelperClientError:
        pass  # already going away
    client.close()
    wait_for_helper_exit(client.root, status['pid'], drain)


def wait_for_helper_exit(root, pid, drain_seconds=None):
    """Wait for a stopping helper to exit, as long as its requests in flight may take (as
    it says, but never longer than a request may last)."""
    if not isinstance(drain_seconds, (int, float)) or not 0 <= drain_seconds <= _protocol.CALL_SECONDS:
        drain_seconds = _protocol.STOP_DRAIN_SECONDS if drain_seconds is None else _protocol.CALL_SECONDS
    timeout = drain_seconds + 10
    if not wait_for_exit(pid, timeout):
        raise HelperClientError('the helper (pid %d) for %s did not stop within %d s' % (pid, root.path, timeout),
                                'stop', 'see %s; kill it if it hangs (guests keep running)' % root.log_path,
                                pid)


def spawn_after_stopping_helper(client, rootdir):
    """Spawn; if a helper of this root holds libvirt's lock yet did not answer, wait for it
    to exit and spawn again, or for it to answer. It is stopping (finishing its requests),
    or another program started it and it is still opening the drivers, which starts the
    autostart guests (the boot unit after a reboot, with the last boot's socket still there)."""
    try:
        spawn(client, rootdir)
    except HelperClientError as e:
        holder = helper_holding_root(client.root, rootdir) if e.kind == 'root_busy' else None
        if holder is None:
            raise
        started = time.time()
        while not wait_for_exit(holder, 0.2):
            if time.time() - started >= _protocol.CALL_SECONDS:
                raise unresponsive(client.root, holder, 'holds the root but did not answer within %d s' % _protocol.CALL_SECONDS)
            status = client.connect()
            if status is not None and status['version'] == client.version:
                client.notices.append('waited %.1f s for the helper (pid %d) of %s, which another program started, '
                                      'to open the root' % (time.time() - started, holder, client.root.path))
                return
            if status is not None:
                retire(client, status)
        spawn(client, rootdir)


def helper_holding_root(root, rootdir):
    """pid of a helper of this root that holds one of libvirt's driver locks, or None."""
    pid = root.driver_holder(rootdir)
    return pid if pid and _protocol.is_helper_of(pid, root.path) else None


def open_log(rootdir):
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


def spawn(client, rootdir):
    os.close(rootdir.subdir(_root.STATE_DIR, create=True))  # made, and checked
    idle = DEFAULT_IDLE_TIMEOUT if client.idle_timeout is None else client.idle_timeout
    log_fd = open_log(rootdir)
    try:
        process = subprocess.Popen(
            [helper_python(client.python), '-I', '-c', BOOTSTRAP] + _protocol.helper_argv(client.root.path, idle),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_fd,
            cwd='/', close_fds=True, start_new_session=True, **as_owner(rootdir.uid, rootdir.gid))
    finally:
        os.close(log_fd)
    try:
        # Bounded: the child runs as the owner, who could stop it before it reads.
        write_all(process.stdin.fileno(), client.bundle, START_TIMEOUT)
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
            'the helper for %s %s' % (client.root.path, 'exited with status %s' % code
                                      if code is not None else 'did not start within %d s' % START_TIMEOUT),
            'start', 'see %s:\n%s' % (client.root.log_path, log_tail(rootdir)))
    if not reply.get('ok'):
        raise HelperClientError.from_reply(reply.get('error') or {})


def as_owner(uid, gid):
    """subprocess arguments that run a child as the root's owner, when we are uid 0 and not it."""
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
