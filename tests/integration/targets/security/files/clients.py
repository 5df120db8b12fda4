"""Open many connections to a helper's socket at once, ask each for the helper's status,
and print what came back as JSON: {"answers": {"ok": n, "<error kind>": n, ...}, ...}.

Usage: clients.py SOCKET COUNT [--silent] [--hold SECONDS] [--helper-pid PID]
--silent connects without asking (clients that wait); --hold keeps every connection open
that long after the answers, and reports how many descriptors the helper had meanwhile.
"""
import argparse
import json
import os
import resource
import socket
import time

parser = argparse.ArgumentParser()
parser.add_argument('socket')
parser.add_argument('count', type=int)
parser.add_argument('--silent', action='store_true')
parser.add_argument('--hold', type=float, default=0)
parser.add_argument('--helper-pid', type=int)
args = parser.parse_args()

hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
answers = {}
messages = {}
connections = []


def connect(path):
    """(a connected socket, None), or (None, why not); a full backlog is waited out for 10 s,
    as a task would."""
    deadline = time.time() + 10
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        try:
            sock.connect(path)
            return sock, None
        except BlockingIOError:
            sock.close()
            if time.time() >= deadline:
                return None, 'connect: backlog full for 10 s'
            time.sleep(0.01)
        except OSError as e:
            sock.close()
            return None, 'connect: ' + type(e).__name__


for number in range(args.count):
    sock, error = connect(args.socket)
    if sock is None:
        answers[error] = answers.get(error, 0) + 1
    else:
        connections.append(sock)
for number, sock in enumerate(connections):
    if args.silent:
        break
    try:
        sock.sendall(json.dumps({'id': number, 'op': 'helper_status'}).encode() + b'\n')
    except OSError:
        pass  # refused at once: its reply, if any, is still there to read
    try:
        line = sock.makefile('rb').readline()
        reply = json.loads(line) if line.endswith(b'\n') else None
        kind = 'closed' if reply is None else 'ok' if reply.get('ok') else reply['error']['kind']
        if reply is not None and not reply.get('ok'):
            messages[kind] = '%s. Fix: %s' % (reply['error']['message'], reply['error'].get('hint'))
    except (OSError, ValueError) as e:
        kind = type(e).__name__
    answers[kind] = answers.get(kind, 0) + 1
helper_fds = None
if args.helper_pid:
    helper_fds = len(os.listdir('/proc/%d/fd' % args.helper_pid))
time.sleep(args.hold)
print(json.dumps({'answers': answers, 'messages': messages, 'connected': len(connections),
                  'highest_fd': max([s.fileno() for s in connections] or [0]), 'helper_fds': helper_fds}))
