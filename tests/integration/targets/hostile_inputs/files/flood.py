"""Flood a helper's socket for a while, then print what happened as JSON.

Usage: flood.py SOCKET [--rounds R] [--seconds S] [--until PATH] [--flooders N] [--idle M] [--idle-seconds I]

R rounds, one after the other: in each, N flooders send, in a loop until S seconds are over,
frames near the helper's 16 MiB limit: a valid request with a huge name, garbage that is not
JSON, and a frame past the limit (no newline); each reads the reply or sees the connection
closed. Meanwhile M idle clients connect and send nothing, each until the helper closes it or
I seconds (default S) are over. With --until, the last round goes on until PATH exists (for
at most 60 s more). Loopback UNIX socket only, bounded in count and time: a round takes at
most max(S, I) + 30 s (+ 60 s).
"""
import argparse
import json
import os
import resource
import socket
import threading
import time

LIMIT = 16 << 20

parser = argparse.ArgumentParser()
parser.add_argument('socket')
parser.add_argument('--seconds', type=float, default=10)
parser.add_argument('--flooders', type=int, default=4)
parser.add_argument('--idle', type=int, default=300)
parser.add_argument('--idle-seconds', type=float)
parser.add_argument('--rounds', type=int, default=1)
parser.add_argument('--until')
args = parser.parse_args()

hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
counts = {}
idle_closed_after = []
lock = threading.Lock()


def count(what):
    with lock:
        counts[what] = counts.get(what, 0) + 1


def frames():
    """The frames a flooder sends, in turn."""
    name = json.dumps({'id': 1, 'op': 'domain_get', 'args': {'name': 'n' * (LIMIT - 100)}}).encode() + b'\n'
    garbage = b'{' + b'\xff[' * ((LIMIT - 100) // 2) + b'\n'
    oversize = b'x' * (LIMIT + (1 << 20))
    while True:
        yield 'huge_name', name
        yield 'garbage', garbage
        yield 'oversize', oversize


def connect():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(args.socket)
    return sock


def over(deadline, last):
    """Whether a round is over: its time is, and in the last round, the --until file exists."""
    if time.time() < deadline:
        return False
    return not (last and args.until) or os.path.exists(args.until) or time.time() > deadline + 60


def flooder(deadline, last):
    for kind, frame in frames():
        if over(deadline, last):
            return
        try:
            with connect() as sock:
                sock.settimeout(max(1, deadline - time.time() + 20))
                sock.sendall(frame)
                reply = sock.makefile('rb').readline(1 << 16)
                count('%s: %s' % (kind, 'replied' if reply.endswith(b'\n') else 'closed'))
        except OSError as e:
            count('%s: %s' % (kind, type(e).__name__))


def idle(deadline, last):
    try:
        with connect() as sock:
            connected = time.time()
            sock.settimeout(0.5)
            while not over(deadline, last):
                try:
                    closed = sock.recv(1) == b''
                except socket.timeout:
                    continue
                count('idle: closed by the helper' if closed else 'idle: sent something')
                if closed:
                    with lock:
                        idle_closed_after.append(time.time() - connected)
                return
            count('idle: held to the end')
    except OSError as e:
        count('idle: %s' % type(e).__name__)


started = time.time()
for number in range(args.rounds):
    round_started = time.time()
    deadline = round_started + args.seconds
    idle_deadline = deadline if args.idle_seconds is None else round_started + args.idle_seconds
    last = number == args.rounds - 1
    threads = [threading.Thread(target=idle, args=(idle_deadline, last), daemon=True) for _n in range(args.idle)]
    threads += [threading.Thread(target=flooder, args=(deadline, last), daemon=True) for _n in range(args.flooders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0, max(deadline, idle_deadline) + 90 - time.time()))
print(json.dumps({'counts': counts, 'seconds': round(time.time() - started, 1),
                  'idle_closed_after': [round(min(idle_closed_after or [0]), 1), round(max(idle_closed_after or [0]), 1)],
                  'unfinished': sum(thread.is_alive() for thread in threads)}))
