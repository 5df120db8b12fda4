# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


import os
import socket
import subprocess
import sys
import time

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import (
    _client as client, _helper_start as start, _protocol, _root as root, _root_dir as root_dir)

STATUS = _protocol.Operations.helper_status.operation
HELLO = _protocol.Control.hello.operation


def test_error_text_carries_the_fix():
    err = client.HelperClientError.from_reply({'kind': 'account', 'message': 'no user', 'hint': 'create it'})
    assert str(err) == 'no user. Fix: create it'
    assert err.kind == 'account'
    assert str(client.HelperClientError('plain')) == 'plain'


def _child(code):
    return subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE)


def test_ready_line_is_read():
    process = _child('import sys; sys.stdout.write(\'{"ok": true}\\n\'); sys.stdout.flush()')
    assert start.read_ready_line(process, 10) == {'ok': True}
    process.wait()


def test_ready_line_of_a_helper_that_died():
    process = _child('raise SystemExit(3)')
    assert start.read_ready_line(process, 10) is None
    assert process.wait() == 3


def test_ready_line_of_a_helper_that_hangs_kills_it():
    process = _child('import time; time.sleep(60)')
    assert start.read_ready_line(process, 0.2) is None
    assert process.wait() != 0


def _state(pid):
    with open('/proc/%d/stat' % pid) as f:
        return f.read().rsplit(')', 1)[1].split()[0]


def test_pid_alive():
    assert start.pid_alive(os.getpid())
    process = _child('pass')
    process.stdout.close()
    pid = process.pid
    # Exited but not reaped: a zombie counts as gone.
    deadline = time.time() + 10
    while _state(pid) != 'Z' and time.time() < deadline:
        time.sleep(0.01)
    assert not start.pid_alive(pid)
    process.wait()
    assert not start.pid_alive(pid)


@pytest.fixture
def rootdir(short_tmp):
    with root_dir.EmbedRoot(short_tmp).open() as pinned:
        yield pinned


def test_log_tail(rootdir):
    assert start.log_tail(rootdir) == '(no log)'
    os.close(rootdir.subdir(root.LOG_DIR, create=True))
    rootdir.write_file(root.LOG, '\n'.join('line %d' % i for i in range(100)).encode())
    assert start.log_tail(rootdir, lines=3) == 'line 97\nline 98\nline 99'


@pytest.mark.parametrize('make', [os.mkdir, lambda path: os.symlink('/etc/passwd', path), os.mkfifo])
def test_lock_that_is_not_a_regular_file_is_refused_untouched(rootdir, make):
    helper = client.HelperClient(rootdir.path)
    os.close(rootdir.subdir(root.STATE_DIR, create=True))
    make(helper.root.lock_path)
    with pytest.raises(root.RootError, match='helper.lock (is a symbolic link|is not a regular file)'):
        helper.ensure()
    assert os.path.lexists(helper.root.lock_path)


def _connection(reply):
    """A connection whose helper sends reply, then nothing more."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.sendall(reply)
    theirs.shutdown(socket.SHUT_WR)
    return client.HelperConnection(ours, root_dir.EmbedRoot('/srv/vms')), theirs


def test_a_reply_cut_off_is_a_helper_that_went_away():
    connection, _theirs = _connection(b'{"id": 1, "ok": tr')
    with pytest.raises(client.HelperClientError, match='closed the connection during helper_status') as err:
        connection.send(STATUS, {}, 5)
    assert err.value.kind == 'connection'


def test_a_helper_that_does_not_answer_is_named_with_the_fix():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    connection = client.HelperConnection(ours, root_dir.EmbedRoot('/srv/vms'))
    with pytest.raises(client.HelperClientError) as err:
        connection.send(HELLO, {}, 0.2)
    theirs.close()
    assert err.value.kind == 'unresponsive'
    assert err.value.pid == os.getpid()
    assert 'kill -CONT %d' % os.getpid() in str(err.value)


def test_a_child_runs_as_the_owner_only_when_we_are_root_and_not_it(monkeypatch):
    monkeypatch.setenv('AWS_SECRET_ACCESS_KEY', 'of root')
    monkeypatch.setenv('LIBVIRT_DEBUG', '1')
    if os.geteuid() != 0:
        assert start.as_owner(12345, 12345) == {}
        return
    assert start.as_owner(0, 0) == {}
    nobody = start.as_owner(65534, 65534)
    assert (nobody['user'], nobody['group']) == (65534, 65534)
    assert 0 not in nobody['extra_groups']
    assert 'XDG_RUNTIME_DIR' not in nobody['env']
    assert 'AWS_SECRET_ACCESS_KEY' not in nobody['env']
    assert nobody['env']['LIBVIRT_DEBUG'] == '1'


def test_a_reply_that_never_ends_is_cut_at_the_deadline():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    connection = client.HelperConnection(ours, root_dir.EmbedRoot('/srv/vms'))
    theirs.sendall(b'{"ok": true, "result": "')  # and then a byte now and then, never a newline
    with pytest.raises(client.HelperClientError) as err:
        connection.send(STATUS, {}, 0.3)
    theirs.close()
    assert err.value.kind == 'unresponsive'


def test_a_reply_that_is_not_a_reply_is_a_protocol_error():
    connection, _theirs = _connection(b'[1, 2]\n')
    with pytest.raises(client.HelperClientError) as err:
        connection.send(STATUS, {}, 5)
    assert err.value.kind == 'protocol'
    assert 'kill %d' % os.getpid() in str(err.value)


def test_a_stopping_helper_is_waited_for_no_longer_than_a_request_may_last(monkeypatch):
    waited = []
    monkeypatch.setattr(start, 'wait_for_exit', lambda pid, timeout: waited.append(timeout) or True)
    for said in (1e9, 'forever', None, 30):
        start.wait_for_helper_exit(root_dir.EmbedRoot('/srv/vms'), 1, said)
    assert waited == [_protocol.CALL_SECONDS + 10, _protocol.CALL_SECONDS + 10,
                      _protocol.STOP_DRAIN_SECONDS + 10, 40]
