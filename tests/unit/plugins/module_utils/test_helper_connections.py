# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The helper's server with real sockets and a helper without libvirt: what one client can
make the helper wait for or hold (the flood itself runs in the hostile_inputs target)."""

import json
import os
import socket
import threading
import time
import types

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _protocol
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper import events, server

LARGE = _protocol.SMALL_MESSAGE_BYTES * 2


class Drivers:
    restart_requested = False
    root = type('Root', (), {'path': '/r'})()

    def prepare_thread(self):
        pass

    def forget_last_errors(self):
        pass


class Helper:
    """What the server needs of a helper; a request's answer is the size of its 'data', and
    as many bytes as its 'reply' asks."""

    def __init__(self):
        self.drivers = Drivers()
        self.stop_requested = threading.Event()
        self.large_turns = server.LargeTurns(1)
        self.allowed_uids = {0, os.geteuid()}
        self.events = events.Events(self.drivers)

    give_memory_back = server.Helper.give_memory_back

    @staticmethod
    def begin(op, seconds):
        return 1

    def end(self, number):
        pass

    def touch(self):
        pass

    def handle(self, request):
        if request.get('op') == 'events_subscribe':
            return self.events.events_subscribe(**request['args'])
        return {'size': len(request.get('data', '')), 'reply': 'r' * request.get('reply', 0)}


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The server on a fake helper: its socket's path and the helper."""
    monkeypatch.setattr(server, 'LARGE_TURN_SECONDS', 1)
    monkeypatch.setattr(server, 'FIRST_REQUEST_SECONDS', 1)
    monkeypatch.setattr(server, 'REPLY_SECONDS', 1)
    helper = Helper()
    path = str(tmp_path / 'helper.sock')
    srv = server.Server(path, helper)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield types.SimpleNamespace(path=path, helper=helper)
    helper.stop_requested.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def helper_socket(served):
    return served.path


def connect(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    return sock


def request(data_bytes=0, reply_bytes=0):
    return json.dumps({'id': 1, 'op': 'x', 'data': 'd' * data_bytes, 'reply': reply_bytes}).encode() + b'\n'


def reply_of(sock):
    line = sock.makefile('rb').readline()
    return json.loads(line)['result']['size'] if line else None


def test_a_connection_that_sends_nothing_is_closed_one_that_sent_a_request_is_kept(helper_socket):
    started = time.time()
    silent, talking = connect(helper_socket), connect(helper_socket)
    talking.sendall(request(3))
    assert reply_of(talking) == 3
    assert silent.recv(1) == b''
    assert 1 <= time.time() - started < 5
    time.sleep(0.5)
    talking.sendall(request(4))
    assert reply_of(talking) == 4


def test_large_requests_wait_for_their_turn_small_ones_do_not_and_a_stalled_one_loses_it(helper_socket):
    stalled = connect(helper_socket)
    stalled.sendall(request(LARGE)[:-(1 << 16)])  # never ends: holds the only turn
    time.sleep(0.3)
    large, small = connect(helper_socket), connect(helper_socket)
    threading.Thread(target=large.sendall, args=(request(LARGE),), daemon=True).start()
    small.sendall(request(5))
    started = time.time()
    assert reply_of(small) == 5
    assert time.time() - started < 0.5
    assert reply_of(large) == LARGE  # once the stalled one was closed
    assert 0.5 < time.time() - started < 5
    assert stalled.recv(1) == b''


def test_a_client_that_does_not_take_its_reply_loses_its_turn(helper_socket):
    unread = connect(helper_socket)
    unread.sendall(request(LARGE, reply_bytes=LARGE * 4))  # more than the socket buffers hold
    time.sleep(0.3)
    started = time.time()
    large = connect(helper_socket)
    threading.Thread(target=large.sendall, args=(request(LARGE),), daemon=True).start()
    assert reply_of(large) == LARGE
    assert time.time() - started < 5


def test_large_requests_get_their_turns_in_the_order_they_asked(helper_socket):
    stalled = connect(helper_socket)
    stalled.sendall(request(LARGE)[:-(1 << 16)])  # holds the only turn for a second
    time.sleep(0.3)
    answered = []
    clients = []
    for number in range(5):
        sock = connect(helper_socket)
        sock.sendall(request(LARGE + number)[:_protocol.SMALL_MESSAGE_BYTES + 10])  # asks for a turn
        time.sleep(0.1)
        clients.append(sock)

    def finish(sock, number):
        sock.sendall(request(LARGE + number)[_protocol.SMALL_MESSAGE_BYTES + 10:])
        answered.append(reply_of(sock) - LARGE)
    threads = [threading.Thread(target=finish, args=(sock, number)) for number, sock in enumerate(clients)]
    for thread in reversed(threads):
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answered == [0, 1, 2, 3, 4]


class Dom:
    def __init__(self, name):
        self.named = name

    def name(self):
        return self.named

    @staticmethod
    def UUIDString():  # noqa: N802 (libvirt's name)
        return '00000000-0000-0000-0000-000000000001'


def subscribe(path, **args):
    sock = connect(path)
    sock.sendall(json.dumps({'id': 1, 'op': 'events_subscribe', 'args': args}).encode() + b'\n')
    reader = sock.makefile('rb')
    reply = json.loads(reader.readline())
    assert reply['ok'], reply
    return sock, reader


def wait_for_subscribers(helper, count):
    deadline = time.time() + 5
    while helper.events.count() != count:
        assert time.time() < deadline
        time.sleep(0.01)


def test_events_reach_each_subscriber_in_order_filtered_and_the_queue_drops_what_a_stalled_one_cannot_take(
        served):
    helper = served.helper
    every, only_web, stalled = (subscribe(served.path, queue=5000), subscribe(served.path, domains=['web'], queue=5000),
                                subscribe(served.path, queue=3))
    wait_for_subscribers(helper, 3)
    # The stalled subscriber never reads: once its socket is full, its queue of 3 fills and drops.
    stalled[0].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    started = time.time()
    for number in range(3000):
        helper.events.on_lifecycle(None, Dom('web' if number % 2 else 'db'), 2, 0, None)
    assert time.time() - started < 5  # never waits for a subscriber
    got = [json.loads(every[1].readline())['event'] for dummy in range(3000)]
    assert [event['sequence'] for event in got] == list(range(1, 3001))
    assert got[0] == dict(got[0], type='started', reason='booted', domain='db', root='/r')
    web = [json.loads(only_web[1].readline())['event'] for dummy in range(1500)]
    assert set(event['domain'] for event in web) == {'web'}
    # What the stalled one reads: what its socket and queue held, then how many were lost,
    # then (after it caught up) the next events again. Every sequence number is accounted for.
    seen, dropped = [], 0
    while len(seen) + dropped < 3000:
        event = json.loads(stalled[1].readline())['event']
        if event['type'] == 'events_dropped':
            dropped += event['dropped']
        else:
            seen.append(event['sequence'])
    assert dropped > 0 and seen == sorted(seen)
    helper.events.on_lifecycle(None, Dom('web'), 5, 5, None)
    assert json.loads(stalled[1].readline())['event'] == dict(
        json.loads(every[1].readline())['event'], type='stopped', reason='failed')


def test_a_subscription_that_closes_is_forgotten_and_a_quiet_one_hears_heartbeats(served, monkeypatch):
    monkeypatch.setattr(_protocol, 'HEARTBEAT_SECONDS', 0.3)
    helper = served.helper
    quiet, gone = subscribe(served.path), subscribe(served.path)
    wait_for_subscribers(helper, 2)
    gone[1].close()  # the file object holds the socket open too
    gone[0].close()
    wait_for_subscribers(helper, 1)
    assert 'heartbeat' in json.loads(quiet[1].readline())


def test_a_subscription_with_an_unknown_event_or_queue_is_refused(served):
    for args in ({'events': ['started', 'exploded']}, {'queue': 0}, {'queue': True}):
        sock = connect(served.path)
        sock.sendall(json.dumps({'id': 1, 'op': 'events_subscribe', 'args': args}).encode() + b'\n')
        reply = json.loads(sock.makefile('rb').readline())
        assert not reply['ok'] and reply['error']['kind'] == 'value'
    assert served.helper.events.count() == 0
