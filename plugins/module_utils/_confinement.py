# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What confines the QEMU of a root of uid 0: its account, /dev/kvm, a private mount namespace.

A guest's QEMU is hostile after an escape. Run as uid 0 it would own the host; run as one
account shared by every root it would reach the other roots' disks. So each root of uid 0
gets a system user and group of its own, named after the root's path, that owns nothing
but what libvirt lends it while a guest runs (its disks, NVRAM and sockets, chowned back
when the guest stops). libvirt runs QEMU as that account without capabilities, and with
namespaces = ["mount"] in a mount namespace of its own with a /dev of its guest's devices.
"""

import ctypes
import errno
import grp
import hashlib
import os
import pwd
import stat
import subprocess
import time

from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import AccountError

PREFIX = 'embedvirt-'
COMMENT = 'QEMU of embedvirt root %s'
KVM = '/dev/kvm'
# useradd and userdel take the account files' locks and give up at once when another
# holds them (parallel tasks): they are tried again, within this bound.
LOCK_WAIT = 30
LOCKED = (1, 10)  # "cannot lock /etc/passwd", "cannot update the group file"


def name(root_path):
    """The account of a root: a hash of its path (a name holds 32 characters, a path more)."""
    return PREFIX + hashlib.sha256(root_path.encode('utf-8', 'surrogateescape')).hexdigest()[:12]


def is_root_account(user, root_path):
    """Whether user, a qemu.conf user setting, is the per-root account of root_path."""
    return user == name(root_path)


def lookup(root_path):
    """The pwd entry of the root's account, or None; AccountError if that name is not ours."""
    try:
        entry = pwd.getpwnam(name(root_path))
    except KeyError:
        return None
    if entry.pw_gecos != COMMENT % root_path or entry.pw_uid == 0:
        raise AccountError("the account %s exists but is not the QEMU account of root %s (its comment is %r, uid "
                           "%d): remove or rename it (userdel %s), or use another root path"
                           % (entry.pw_name, root_path, entry.pw_gecos, entry.pw_uid, entry.pw_name))
    return entry


def kvm_group():
    """The group that may open /dev/kvm (Debian's udev: root:kvm 0660), or None."""
    try:
        st = os.stat(KVM)
    except OSError:
        return None
    if st.st_gid == 0 or st.st_mode & 0o060 != 0o060:
        return None
    try:
        return grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        return None


def ensure(root_path, check_mode=False):
    """Create the root's account unless it exists; (pwd entry or None in check mode, whether created)."""
    entry = lookup(root_path)
    if entry is not None or check_mode:
        return entry, entry is None
    command = ['useradd', '--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent',
               '--shell', '/usr/sbin/nologin', '--comment', COMMENT % root_path]
    if kvm_group():
        command += ['--groups', kvm_group()]
    try:
        run(command + [name(root_path)])
    except AccountError:
        entry = lookup(root_path)
        if entry is None:
            raise
        return entry, False  # another task made it meanwhile
    return lookup(root_path), True


def remove(root_path, check_mode=False):
    """Remove the root's account (and its group) if it exists; whether it did."""
    entry = lookup(root_path)
    if entry is None or check_mode:
        return entry is not None
    try:
        run(['userdel', entry.pw_name])
    except AccountError:
        if lookup(root_path) is not None:
            raise
        return False  # another task removed it meanwhile
    return True


def run(command):
    deadline = time.time() + LOCK_WAIT
    while True:
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=LOCK_WAIT, check=False)
        except FileNotFoundError:
            raise AccountError('%s is not installed: install the passwd package (shadow-utils on Fedora/RHEL), which '
                               "creates and removes the QEMU account of each root of root's" % command[0])
        except subprocess.TimeoutExpired:
            raise AccountError('%s did not finish within %d s' % (' '.join(command), LOCK_WAIT))
        output = done.stdout.decode('utf-8', 'replace').strip()
        if done.returncode == 0:
            return
        if done.returncode not in LOCKED or 'lock' not in output or time.time() > deadline:
            raise AccountError('%s failed (exit %d): %s' % (' '.join(command), done.returncode, output[:500]))
        time.sleep(0.2)


def groups(entry):
    """The gids QEMU runs with as this account: its group and the supplementary ones."""
    return set(os.getgrouplist(entry.pw_name, entry.pw_gid))


def kvm_usable(uid, gids):
    """Whether an account (uid, gids) may open /dev/kvm for reading and writing."""
    try:
        st = os.stat(KVM)
    except OSError:
        return False
    if not stat.S_ISCHR(st.st_mode):
        return False
    if uid == 0:
        return True
    if st.st_uid == uid:
        return st.st_mode & 0o600 == 0o600
    if st.st_gid in gids:
        return st.st_mode & 0o060 == 0o060
    return st.st_mode & 0o006 == 0o006


# --- mount namespaces ------------------------------------------------------------------
CLONE_NEWNS = 0x00020000
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19


def libc_call(function, *args):
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, function)(*args) != 0:
        code = ctypes.get_errno()
        raise OSError(code, '%s: %s' % (function, os.strerror(code)))


def private_mounts():
    """Move this process into a mount namespace of its own that still sees the host's new mounts."""
    libc_call('unshare', CLONE_NEWNS)
    libc_call('mount', None, b'/', None, MS_SLAVE | MS_REC, None)


def hide_kvm():
    """In this process's own mount namespace, make /dev/kvm a device nobody can open (nodev).

    libvirt probes QEMU's capabilities with CAP_DAC_OVERRIDE as the QEMU account: a
    /dev/kvm of uid 0 alone (0600) then opens for the probe but not for guests, libvirt
    finds its cache wrong at every start and probes again (40 s or more). Seen nodev by
    both, KVM is what it is for the guests: absent; they run under TCG.
    """
    path = KVM.encode()
    libc_call('mount', path, path, None, MS_BIND, None)
    libc_call('mount', None, path, None, MS_BIND | MS_REMOUNT | MS_NODEV, None)


def root_mount():
    """This process's /: its device and inode, and the id of the mount there (a bind mount of a
    directory has the same inode as the directory)."""
    st = os.stat('/')
    mount_id = None
    with open('/proc/self/mountinfo') as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4] == '/':
                mount_id = fields[0]  # the last one: mounted over the others
    return st.st_dev, st.st_ino, mount_id


def entered_root_moves():
    """Whether a process that enters this process's mount namespace (setns) starts at another
    / than this process's: a chroot below the namespace's root. Changes this process's root."""
    before = root_mount()
    fd = os.open('/proc/self/ns/mnt', os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc_call('setns', fd, CLONE_NEWNS)
    finally:
        os.close(fd)
    return root_mount() != before


CHROOTED = 255  # the probe's exit status for a chroot


def mount_namespace_problem():
    """Why libvirt could not give QEMU a working mount namespace here (a container without
    the privilege, a chroot), or None. Tried in a child process, as libvirt does it: QEMU's
    process unshares one, then libvirt makes the devices of its /dev from a process that
    enters it (setns), which starts at the namespace's root."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only reports
        code = 0
        try:
            private_mounts()
            if entered_root_moves():
                code = CHROOTED
        except OSError as e:
            code = e.errno or errno.EPERM
        os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return None
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == CHROOTED:
        return ('this process runs in a chroot, whose / is not the root of its mount namespace: libvirt would make '
                "the devices of QEMU's /dev outside it, and QEMU would lack /dev/null and /dev/urandom (run it "
                'after pivot_root instead of chroot)')
    why = os.strerror(os.WEXITSTATUS(status)) if os.WIFEXITED(status) else 'signal %d' % os.WTERMSIG(status)
    return 'this host refuses a private mount namespace (%s)' % why
