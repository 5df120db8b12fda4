"""What a guest's QEMU could reach after an escape: run in its context, try each attempt, print JSON.

Usage: attack.py ATTEMPTS_JSON

ATTEMPTS_JSON is a list of {"name": ..., "kind": ..., "path": ... or "pid": ...}; kinds:
  read     open the file read-only and read from it
  write    open the file read-write and write back the bytes it holds at offset 0 (nothing changes
           when it works: what counts is that it could)
  create   create a new file there (O_EXCL), removed again at once if that worked
  list     list the directory
  connect  connect to the UNIX socket (and hang up at once)
  open     open the path read-only, nothing else (a block device: never read or written)
  ptrace   PTRACE_ATTACH the process; if that worked, detach again at once
  signal   check that a signal could be sent to the process (kill with signal 0: nothing is sent)
Prints one JSON object {name: {"ok": bool, "error": str}} with every attempt, "error" empty
when it worked. Each attempt is bounded (sockets 5 s, files O_NONBLOCK): it never waits long.
Its last line on stderr is the context it ran in (uid, gid, groups, mount namespace and the
capability lines of /proc/self/status), for the test to compare with the QEMU it acts as.
"""
import ctypes
import json
import os
import socket
import sys

PTRACE_ATTACH = 16
PTRACE_DETACH = 17
WALL = 0x40000000  # __WALL: wait for the tracee whatever it is


def read(path):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.pread(fd, 512, 0)
    finally:
        os.close(fd)


def write(path):
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        data = os.pread(fd, 512, 0)
        if os.pwrite(fd, data, 0) != len(data):
            raise OSError('short write')
    finally:
        os.close(fd)


def create(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)
    os.unlink(path)


def listdir(path):
    os.listdir(path)


def connect(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5)
        sock.connect(path)
    finally:
        sock.close()


def open_only(path):
    os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))


def ptrace(pid):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    # Attached: the process stops; let it go on at once.
    os.waitpid(pid, WALL)
    libc.ptrace(PTRACE_DETACH, pid, None, None)


def signal(pid):
    os.kill(pid, 0)


KINDS = {'read': read, 'write': write, 'create': create, 'list': listdir, 'connect': connect,
         'open': open_only, 'ptrace': ptrace, 'signal': signal}


def main():
    results = {}
    for attempt in json.loads(sys.argv[1]):
        target = int(attempt['pid']) if 'pid' in attempt else attempt['path']
        try:
            KINDS[attempt['kind']](target)
        except Exception as e:  # every failure is an answer: the attempt did not get through
            results[attempt['name']] = {'ok': False, 'error': '%s: %s' % (type(e).__name__, e)}
        else:
            results[attempt['name']] = {'ok': True, 'error': ''}
    print(json.dumps(results, sort_keys=True))
    with open('/proc/self/status') as f:
        status = dict(line.split(':', 1) for line in f.read().splitlines() if ':' in line)
    context = {'uid': os.getuid(), 'euid': os.geteuid(), 'gid': os.getgid(), 'egid': os.getegid(),
               'groups': sorted(os.getgroups()), 'mntns': os.readlink('/proc/self/ns/mnt')}
    context.update((key, status[key].strip()) for key in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs'))
    sys.stderr.write(json.dumps(context, sort_keys=True) + '\n')


if __name__ == '__main__':
    main()
