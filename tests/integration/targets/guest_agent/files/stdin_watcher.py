# A guest user watching /tmp for the connection's module input files (run in the guest as an
# unprivileged user by private_stdin.yml): it opens every /tmp/.embedvirt-stdin-* entry it can
# (a file, or the files in a directory), keeps the descriptors (they read on after an unlink),
# and when STOP appears writes REPORT: the names it saw, the paths it opened, the bytes it read
# and whether they held SECRET. Usage: stdin_watcher.py SECRET STOP REPORT
import json
import os
import stat
import sys
import time

secret, stop, report = sys.argv[1:4]
seen = set()
opened = {}
deadline = time.time() + 300  # a bound if the test never gets to STOP
with open(report + '.started', 'w') as started:
    started.write('watching\n')
while not os.path.exists(stop) and time.time() < deadline:
    for name in os.listdir('/tmp'):
        if not name.startswith('.embedvirt-stdin-'):
            continue
        seen.add(name)
        paths = ['/tmp/' + name]
        try:
            paths += ['/tmp/%s/%s' % (name, inner) for inner in os.listdir(paths[0])]
        except OSError:
            pass
        for path in paths:
            if path not in opened:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                except OSError:
                    continue
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    opened[path] = fd
                else:
                    os.close(fd)
read = b''
for fd in opened.values():
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        read += chunk
with open(report, 'w') as out:
    json.dump({'seen': sorted(seen), 'opened': sorted(opened), 'bytes': len(read),
               'secret_read': secret.encode() in read}, out)
