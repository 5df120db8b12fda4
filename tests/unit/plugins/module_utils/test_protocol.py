# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The protocol between the client and the helper: operations, messages, framing, bundles."""

import os
import socket
import threading

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _protocol
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import Operations


class Recorder(Operations):
    def __init__(self):
        self.sent = []

    def request(self, op, args):
        self.sent.append((op.name, args, op.call_timeout(args)))
        return 'result'


def test_a_method_call_is_a_request_with_every_argument():
    client = Recorder()
    assert client.domain_list(states=['running']) == 'result'
    client.domain_shutdown('web', 40)
    client.guest_exec(name='web', argv=['true'])
    assert client.sent == [
        ('domain_list', {'names': None, 'states': ['running']}, _protocol.CALL_SECONDS),
        ('domain_shutdown', {'name': 'web', 'timeout': 40, 'force': False}, 40 + _protocol.WAIT_SLACK_SECONDS),
        # No timeout of its own: the default bound.
        ('guest_exec', {'name': 'web', 'argv': ['true'], 'input_data': None, 'env': None, 'timeout': None},
         _protocol.CALL_SECONDS),
    ]


def test_registry_knows_arguments_and_what_changes():
    op = _protocol.OPERATIONS['domain_shutdown']
    assert op.arguments == ('name', 'timeout', 'force') and op.required == ('name', 'timeout')
    assert op.changes and not _protocol.OPERATIONS['domain_list'].changes
    assert _protocol.OPERATIONS['hello'].arguments == ('version', 'idle_timeout')
    assert op.problem({'name': 'web', 'timeout': 1}) is None
    assert 'unknown: forse' in op.problem({'name': 'web', 'timeout': 1, 'forse': True})
    assert 'missing: timeout' in op.problem({'name': 'web'})


def test_messages_round_trip_as_single_lines():
    message = {'id': 3, 'op': 'domain_list', 'args': {'names': ['a\nb']}}
    line = _protocol.encode(message)
    assert line.endswith(b'\n') and line.count(b'\n') == 1
    assert _protocol.decode(line[:-1]) == message


def test_peer_credentials_of_a_socket_pair():
    left, right = socket.socketpair(socket.AF_UNIX)
    try:
        pid, uid, _gid = _protocol.peer_credentials(left)
        assert (pid, uid) == (os.getpid(), os.geteuid())
    finally:
        left.close()
        right.close()


@pytest.fixture
def pipe():
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        try:
            os.close(fd)
        except OSError:
            pass


def test_frames_keep_what_came_before_a_timeout(pipe):
    reader = _protocol.FrameReader(pipe[0])
    os.write(pipe[1], b'{"a":')
    with pytest.raises(TimeoutError):
        reader.read(0.05)
    os.write(pipe[1], b'1}\n{"b":2}\n')
    assert reader.read(1) == b'{"a":1}'
    assert reader.read(1) == b'{"b":2}'


def test_a_frame_cut_off_counts_as_closed(pipe):
    reader = _protocol.FrameReader(pipe[0])
    os.write(pipe[1], b'{"a":')
    os.close(pipe[1])
    assert reader.read(1) is None


def test_a_frame_longer_than_the_limit_is_refused_before_it_is_buffered(pipe):
    reader = _protocol.FrameReader(pipe[0], limit=1000)
    os.write(pipe[1], b'x' * 5000)
    with pytest.raises(_protocol.MessageTooLong):
        reader.read(1)
    assert len(reader.buffer) == 1001


def test_a_large_frame_waits_for_the_gate_and_keeps_what_came(pipe):
    asked = []
    reader = _protocol.FrameReader(pipe[0], gate=lambda seconds: asked.append(seconds) or len(asked) > 1)
    small = b'{"a":1}\n'
    large = b'"' + b'x' * 2 * _protocol.SMALL_MESSAGE_BYTES + b'"\n'
    writer = threading.Thread(target=os.write, args=(pipe[1], small + large))
    writer.start()
    assert reader.read(5) == b'{"a":1}' and not asked
    with pytest.raises(TimeoutError):
        reader.read(5)
    assert len(asked) == 1 and 0 < asked[0] <= 5
    assert reader.read(5) == large[:-1]
    writer.join()
