"""Kill a root's helper while a scratch domain of normalize_definition is defined.

Usage: probe_kill.py ROOT HELPER_PID ATTEMPTS

Asks the helper for domain plans with a definition, each of which defines a probe domain
(its XML appears in <root>/etc/qemu) and undefines it again, while polling that directory.
The moment a probe's XML appears the helper is stopped (SIGSTOP freezes every thread); if
the XML is still there it is killed (SIGKILL), else resumed to try again. Prints JSON:
killed, the probe files on disk after the helper died, and the requests it took.
"""
import json
import os
import signal
import socket
import sys
import threading
import time

root, pid, attempts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
etc = os.path.join(root, 'etc', 'qemu')
xml = ("<domain type='qemu'><name>pk</name><memory unit='MiB'>32</memory>"
       "<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>")
done = threading.Event()
sent = [0]


def probes():
    return sorted(n for n in os.listdir(etc) if n.startswith('embedvirt-probe-') and n.endswith('.xml'))


def ask():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(120)
    sock.connect(os.path.join(root, 'run', 'embedvirt', 'helper.sock'))
    replies = sock.makefile('rb')
    try:
        while not done.is_set() and sent[0] < attempts:
            sent[0] += 1
            request = {'id': sent[0], 'op': 'domain_plan', 'args': {'name': 'pk', 'xml': xml}, 'timeout': 60}
            sock.sendall(json.dumps(request).encode() + b'\n')
            if not replies.readline():
                break  # the helper died
    except OSError:
        pass
    done.set()


asker = threading.Thread(target=ask, daemon=True)
asker.start()
killed = False
while not done.is_set():
    if not probes():
        continue
    os.kill(pid, signal.SIGSTOP)
    if probes():
        os.kill(pid, signal.SIGKILL)
        killed = True
        break
    os.kill(pid, signal.SIGCONT)
deadline = time.time() + 30
while killed and os.path.exists('/proc/%d' % pid) and time.time() < deadline:
    time.sleep(0.05)
done.set()
print(json.dumps({'killed': killed, 'probes': probes(), 'requests': sent[0],
                  'dead': not os.path.exists('/proc/%d' % pid)}))
