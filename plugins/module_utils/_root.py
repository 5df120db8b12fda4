# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Path rules for an embedded root: which paths are allowed and where things live.

Every other layer asks this one; no other file builds a path under a root. The root on disk
(its paths, and every file operation through the pinned root) is _root_dir's; what proves a
directory is a root, _marker's.
"""


import errno
import hashlib
import os
import pwd
import re
import signal
import socket
import stat
import time

# The layout of a root, relative to it. libvirt owns etc/, lib/, log/ and run/ below the
# names it chooses; this collection adds its own directories and files.
ETC = 'etc'
IMAGES = 'images'
# Base images (downloaded or copied once), which guests' overlays in images/ name relatively.
BASE_IMAGES = IMAGES + '/base'
# Guests' serial consoles, written by QEMU (as the root's QEMU user).
CONSOLE_DIR = 'log/console'
QEMU_CONF = 'etc/qemu.conf'
# The helper's runtime files (socket, start lock, record of the last boot) and its log.
STATE_DIR = 'run/embedvirt'
SOCKET = STATE_DIR + '/helper.sock'
LOCK = STATE_DIR + '/helper.lock'
BOOT_RECORD = STATE_DIR + '/boot-id'
LOG_DIR = 'log/embedvirt'
LOG = LOG_DIR + '/helper.log'
# Salted digests of private secrets' values (libvirt never hands those out).
SECRET_DIGESTS = 'lib/embedvirt/secret-digests'
# Directories a root is made with.
LAYOUT = (ETC, IMAGES, BASE_IMAGES, 'lib', 'lib/embedvirt', 'log', LOG_DIR, 'run', STATE_DIR)
# What QEMU of a root of uid 0 passes through (search, not list) to its guests' files: the
# root, the images, libvirt's lib/qemu (NVRAM, a guest's directory with its master key) and
# the serial consoles. They belong to the group of the root's QEMU account with mode 0710;
# every other directory of the root is uid 0's alone (secrets, the helper's socket and log).
QEMU_PASSAGE = (IMAGES, BASE_IMAGES, 'lib', 'log', CONSOLE_DIR)
PASSAGE_MODE = 0o710
PRIVATE_MODE = 0o700
# What libvirt gives the QEMU account at every open of the driver, as libvirtd does: its
# lib/qemu directories (snapshot and checkpoint metadata, save images, NVRAM, channel
# sockets) and capability cache. The helper gives them back to uid 0, passage only: QEMU
# never writes there itself, and libvirt (as uid 0) trusts what they hold.
LIBVIRT_LENDS = ('lib/qemu', 'lib/qemu/*', 'lib/qemu/channel/target', 'cache/qemu')
# Below them, libvirt's directories of one running guest, which are that guest's QEMU's.
GUEST_DIR = 'domain-*'
# What libvirt makes readable by all (0755) on QEMU's way without QEMU needing it: QEMU's
# logs (libvirt hands QEMU the open file) and the capability cache (probed as uid 0). The
# helper makes them uid 0's alone, so QEMU's account cannot even list them.
LIBVIRT_OPENS = ('log/qemu', 'cache')
# Where libvirt's DAC driver lends guests' files to the QEMU account of a root of uid 0
# (directories and what is below them): disks, backing images and seeds, serial console logs,
# NVRAM. It gives a file back when its guest stops, except a backing image or a read-only disk
# (they may be shared), which stay the account's. Never the helper's log directory.
LENT_FILES = (IMAGES, 'log', 'lib/qemu/nvram')
# libvirt's: definitions (each rewritten through a <file>.new), the drivers' runtime state
# and pidfiles, and the QEMU driver's per-guest directories.
DEFINITION_DIRS = ('etc/qemu', 'etc/secrets')
SECRETS_DIR = 'etc/secrets'
DRIVER_RUN_DIRS = {'secrets': 'run/secrets', 'qemu': 'run/qemu'}
DRIVER_PIDFILE = 'driver.pid'
QEMU_RUN_DIRS = ('lib/qemu/', 'run/qemu/')
# Where libvirt keeps the UEFI variables of guests whose firmware it chose (<name>_VARS.fd).
NVRAM_DIR = 'lib/qemu/nvram'
# libvirt's links to the definitions of guests it starts when the driver opens (<name>.xml,
# an absolute link to etc/qemu/<name>.xml), and its snapshot metadata (<domain>/<snapshot>.xml).
AUTOSTART_DIR = 'etc/qemu/autostart'
SNAPSHOT_DIR = 'lib/qemu/snapshot'
# A snapshot name: libvirt keeps a snapshot as SNAPSHOT_DIR/<domain>/<name>.xml, and QEMU's
# human monitor (savevm, delvm), to which libvirt hands the name, splits its arguments at
# spaces; a plain word is what both take as it is.
SNAPSHOT_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._+@:-]{0,99}')
# libvirt's managed-save images: a saved guest's memory with its definition inside, paths included.
SAVE_DIR = 'lib/qemu/save'

# What an archive of a root (root_dir state=archived) holds: everything but runtime state.
# These directories are archived empty: run/ (the drivers' pidfiles and state, the helper's
# socket, lock and boot record), the agent sockets' directories, and QEMU's capability
# cache (it describes this host's QEMU; libvirt probes again).
ARCHIVED_EMPTY = ('run', 'lib/qemu/channel', 'cache')
# Left out whole: a running guest's directory (monitor socket, master key), which libvirt
# removes when the guest stops, and swtpm's logs, whose directory libvirt makes writable by
# swtpm's group (mode 0730) at every start of a guest with a TPM, again if narrowed.
NOT_ARCHIVED = ('lib/qemu/domain-*', 'log/swtpm')
# Files whose text names the root by its absolute path, rewritten when a root is restored
# at another path (patterns per path component): domain, secret, snapshot and checkpoint XML
# and qemu.conf. The marker is written anew; qcow2 backing names are rebased.
NAMES_ROOT = ('etc/qemu/*.xml', 'etc/secrets/*.xml', SNAPSHOT_DIR + '/*/*.xml', 'lib/qemu/checkpoint/*/*.xml',
              QEMU_CONF)

# The file that proves a directory is a root made by this collection (marker_proof says when).
MARKER_NAME = '.embedvirt-root'
MARKER_MODE = 0o600
# What a marker may hold: a few fields (its owner could make it any size).
MARKER_LIMIT = 65536

# Outside every root: the helper code that boot units run, owned by uid 0.
BOOT_HELPER_DIR = '/usr/local/libexec/embedvirt'
BOOT_HELPER = BOOT_HELPER_DIR + '/helper.bundle'

# A UNIX socket path holds at most 107 bytes plus the terminating NUL. The deepest socket
# libvirt 9 puts under a root is a guest agent channel,
# <root>/lib/qemu/channel/target/domain-<id>-<first 20 characters of the name>/org.qemu.guest_agent.0,
# budgeted here for domain ids of up to 4 digits.
SOCKET_PATH_MAX = 107
SOCKET_NAME_CHARACTERS = 20
AGENT_SOCKET_DIR = '/lib/qemu/channel/target/domain-9999-'
AGENT_SOCKET_NAME = '/org.qemu.guest_agent.0'
LONGEST_SOCKET_SUFFIX = AGENT_SOCKET_DIR + 'x' * SOCKET_NAME_CHARACTERS + AGENT_SOCKET_NAME

# The longest root libvirt is given as it is: room for the deepest socket with a name of 20
# ASCII characters. A longer root reaches libvirt through its alias (libvirt_root), a symbolic
# link of at most this length that libvirt uses as the root without resolving it.
DIRECT_ROOT_MAX = SOCKET_PATH_MAX - len(LONGEST_SOCKET_SUFFIX)
# Aliases live where only the root's owner may write: /run/embedvirt for uid 0 (traversable by
# the QEMU accounts, not listable), a 0700 directory of the user's in the sticky /tmp otherwise.
# 8 hex digits of sha256(root path) name one, so that a restarted helper finds the sockets its
# running guests were given; a name taken by another root is refused, never reused.
ALIAS_DIR_UID0 = '/run/embedvirt'
ALIAS_DIR_USER = '/tmp/.ev%d'
ALIAS_HASH_CHARACTERS = 8
ALIAS_PATTERN = r'(?:%s|/tmp/\.ev[0-9]+)/' % re.escape(ALIAS_DIR_UID0)
# What remains of a root's length: qemu keeps an image's backing file name in 1023 bytes, and
# libvirt names the backing files of external snapshots by absolute path.
ROOT_MAX_LENGTH = 700
QCOW2_BACKING_MAX = 1023

# The helper defines a scratch domain under this name prefix and undefines it again (to learn
# libvirt's stored form of a definition); nothing else may use the prefix (a helper removes
# such domains when it starts), and no listing shows one.
PROBE_PREFIX = 'embedvirt-probe-'

# Seconds a child that opens a file as a root's owner may take (an open on a stuck network
# filesystem would block it).
OPEN_AS_TIMEOUT = 30

# Characters a root may not contain: libvirt's URI, systemd's unit syntax, QEMU's option
# syntax or a shell would each read them differently, so they are refused everywhere alike.
UNSAFE_ROOT_CHARACTERS = ' %&#?;,:=\'"\\$`*[]{}<>|!~'


class RootError(Exception):
    """A root path breaks one of the rules; the message names the rule and the fix."""


class AccountError(Exception):
    """The account a root's QEMU runs as (_confinement) cannot be made or used. Defined here,
    with RootError, so that modules catch it without loading _confinement on every task."""


def open_regular(path):
    """Descriptor for reading the regular file at path, as this process may open it. What is
    there is looked at through a descriptor that only names it (O_PATH) before it is opened:
    a FIFO would block, and opening a device can act."""
    handle = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise RootError('not a regular file (a FIFO, a device or a directory)')
        return os.open('/proc/self/fd/%d' % handle, os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    finally:
        os.close(handle)


def user_groups(uid, gid):
    """The groups the user uid has when it logs in (gid, its primary group, among them)."""
    try:
        return os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)
    except KeyError:
        return [gid]


def open_as_user(path, uid, gid, timeout=OPEN_AS_TIMEOUT):
    """open_regular(path) as the user uid (with gid and its groups) could: a task run as uid 0
    never reads for that user what it may not read itself (a file of uid 0, through a link or a
    hard link or not). A forked child takes the user's ids, opens, and passes the descriptor
    back; directly when this process is not uid 0, or uid is 0. OSError or RootError."""
    if os.geteuid() != 0 or uid == 0:
        return open_regular(path)
    groups = user_groups(uid, gid)
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the child: system calls only, then _exit (no clean-up of the parent's state)
        try:
            ours.close()
            try:
                os.setgroups(groups)
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
                socket.send_fds(theirs, [b'+'], [open_regular(path)])
            except (OSError, RootError) as e:
                theirs.sendall(b'-' + (e.strerror if isinstance(e, OSError) else str(e)).encode('utf-8', 'replace'))
        finally:
            os._exit(0)
    theirs.close()
    try:
        ours.settimeout(timeout)
        try:
            message, fds, dummy, dummy = socket.recv_fds(ours, 4096, 1)
        except socket.timeout:
            raise RootError('opening it as uid %d took longer than %d s (a stuck network filesystem?)'
                            % (uid, timeout))
    finally:
        ours.close()
        end_child(pid)
    if not fds:
        raise RootError(message[1:].decode('utf-8', 'replace') or 'the process that opened it as uid %d died' % uid)
    os.set_inheritable(fds[0], False)
    return fds[0]


def end_child(pid):
    """Kill and reap a child; one stuck in the kernel for more than 5 s is left (a zombie)."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 5
    while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.time() < deadline:
        time.sleep(0.01)


# The files of an instance, relative to its root.
def instance_disk(name, target=None):
    """images/<name>.qcow2, its first disk; images/<name>-<target>.qcow2, a clone's other disks."""
    return '%s/%s.qcow2' % (IMAGES, name if target is None else '%s-%s' % (name, target))


def instance_seed(name):
    """images/<name>-cidata.img, its NoCloud seed."""
    return '%s/%s-cidata.img' % (IMAGES, name)


def console_log(name):
    return '%s/%s.log' % (CONSOLE_DIR, name)


def nvram_file(name):
    """Where libvirt keeps the NVRAM of firmware it chose for domain name."""
    return '%s/%s_VARS.fd' % (NVRAM_DIR, name)


def check_root_path(path):
    """Return the root path if it satisfies every rule, else raise RootError."""
    if not isinstance(path, str) or not path:
        raise RootError('root must be a non-empty path such as /srv/vms')
    if not os.path.isabs(path):
        raise RootError("root '%s' is relative: libvirt needs an absolute path such as "
                        "/srv/vms" % path)
    if '\0' in path or '\n' in path:
        raise RootError('root %r contains a NUL or newline character: choose a plain path' % path)
    bad = sorted(set(c for c in path if c in UNSAFE_ROOT_CHARACTERS or not c.isprintable()))
    if bad:
        raise RootError('root %r contains %s, which libvirt URIs, systemd units or QEMU options '
                        'read differently: use letters, digits and / . _ - + @ only'
                        % (path, ' '.join(repr(c) for c in bad)))
    if '..' in path.split('/'):
        raise RootError("root '%s' contains '..': give the path without it" % path)
    normalised = os.path.normpath(path)
    if normalised.startswith('//'):
        normalised = normalised[1:]
    if normalised == '/':
        raise RootError("root '/' is not allowed: libvirt would own the whole filesystem; "
                        "use a directory such as /srv/vms")
    if normalised != path:
        raise RootError("root '%s' is not normalised: use '%s'" % (path, normalised))
    if len(path.encode('utf-8')) > ROOT_MAX_LENGTH:
        raise RootError(
            "root '%s' is %d bytes long, but qemu keeps an image's backing file name in %d bytes and "
            "libvirt names the backing files of snapshots by absolute path below the root: use a root "
            "of at most %d bytes" % (path, len(path.encode('utf-8')), QCOW2_BACKING_MAX, ROOT_MAX_LENGTH))
    return path


def needs_alias(path):
    """Whether the sockets libvirt makes below root path would not fit: it then reaches libvirt
    through its alias (see DIRECT_ROOT_MAX)."""
    return len(path.encode('utf-8')) > DIRECT_ROOT_MAX


def alias_name(path):
    return hashlib.sha256(path.encode('utf-8')).hexdigest()[:ALIAS_HASH_CHARACTERS]


def libvirt_root(path, uid):
    """The root as libvirt is given it by a helper running as uid: the path itself, or its alias."""
    if not needs_alias(path):
        return path
    return '%s/%s' % (ALIAS_DIR_UID0 if uid == 0 else ALIAS_DIR_USER % uid, alias_name(path))


def alias_regex(path):
    """A pattern (of str) of the aliases the root path may have had, for any owner."""
    return ALIAS_PATTERN + alias_name(path) + '(?=/|$)'


def root_regex(path):
    """A pattern (of str) of the root path as libvirt may name it: the path, or any alias it may have had."""
    return '(?:%s|%s)' % (re.escape(path), alias_regex(path)) if needs_alias(path) else re.escape(path)


def real_path(path, root):
    """A path libvirt reported, with the root's alias (if it starts with one) replaced by the root."""
    if not needs_alias(root):
        return path
    return re.sub('^' + alias_regex(root), lambda _match: root, path, count=1)


def ensure_alias(path):
    """Make (or find) the alias of root path for the calling user, and return what libvirt is to be
    given (libvirt_root). Called by the helper, which runs as the root's owner: the alias directory
    must be this user's and writable by nobody else, and the alias a link to this very root."""
    uid = os.geteuid()
    alias = libvirt_root(path, uid)
    if alias == path:
        return path
    directory = os.path.dirname(alias)
    try:
        os.mkdir(directory, 0o711 if uid == 0 else PRIVATE_MODE)
    except FileExistsError:
        pass
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o066:
        raise RootError("'%s', where the short alias of root %s belongs, is not a directory of uid %d that only "
                        "it may read and write (mode %04o, uid %d): remove it; the next task makes it again"
                        % (directory, path, uid, stat.S_IMODE(st.st_mode), st.st_uid))
    try:
        os.symlink(path, alias)
    except FileExistsError:
        target = os.readlink(alias) if os.path.islink(alias) else None
        if target != path:
            raise RootError("'%s', the short alias libvirt is to reach root %s through, is taken (%s): if no "
                            "helper of that root runs, remove it; else use a root of at most %d bytes, or another path"
                            % (alias, path, 'a link to %s' % target if target else 'not a link', DIRECT_ROOT_MAX))
    return alias


def remove_alias(path, owner):
    """Remove root path's alias, once the root is gone, if it is the calling user's (made by a helper
    of theirs, the root's owner) and still names that root; another user's alias is left alone."""
    alias = libvirt_root(path, owner)
    if alias == path or os.geteuid() != owner:
        return
    try:
        fd = os.open(os.path.dirname(alias), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if os.fstat(fd).st_uid == owner and os.readlink(os.path.basename(alias), dir_fd=fd) == path:
            os.unlink(os.path.basename(alias), dir_fd=fd)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.EINVAL):  # gone, or not a link
            raise
    finally:
        os.close(fd)


def domain_name_problem(name, root=None):
    """What forbids giving libvirt this domain name, as (problem, fix), or None.

    libvirt builds paths from domain names (etc/qemu/<name>.xml, lib/qemu/snapshot/<name>,
    log/qemu/<name>.log): '.' and '..' name directories, and libvirt 9.0's clean-up after a
    failed define then deletes other guests' snapshot metadata or all of lib/qemu. With
    root, the bytes the name adds to that root's deepest socket path are counted too.
    """
    fix = "choose a name without '/' or control characters, other than '.' and '..'"
    if not isinstance(name, str) or not name:
        return 'the domain name is empty', 'give the domain a name'
    if name in ('.', '..'):
        return ("domain name '%s' names a directory: libvirt makes paths of domain names, so it would "
                "act on the directories that hold the other guests' files" % name, fix)
    if '/' in name:
        return "domain name %r contains '/': libvirt makes paths of domain names" % name, fix
    control = sorted(set(c for c in name if ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f))
    if control:
        return ('domain name %r contains the control character(s) %s, which the paths, logs and '
                'command lines built from it misread' % (name, ' '.join(repr(c) for c in control)), fix)
    if name.startswith(PROBE_PREFIX):
        return ("domain names starting with '%s' are reserved: this collection defines scratch "
                "domains under them and removes any it finds" % PROBE_PREFIX, 'choose another name')
    head = name[:SOCKET_NAME_CHARACTERS]
    try:
        head_bytes = len(head.encode('utf-8'))
    except UnicodeEncodeError:
        return 'domain name %r is not valid UTF-8' % name, fix
    if root is not None:
        # An aliased root's sockets are below its alias, of at most DIRECT_ROOT_MAX bytes.
        base = 'x' * DIRECT_ROOT_MAX if needs_alias(root) else root
        size = len((base + AGENT_SOCKET_DIR + head + AGENT_SOCKET_NAME).encode('utf-8'))
        if size > SOCKET_PATH_MAX:
            return ("domain name '%s' is too long for root %s in bytes: libvirt puts its first %d "
                    "characters (%d bytes) in the guest agent socket path, which is then %d bytes "
                    "long (with a domain id of 4 digits), and a UNIX socket path holds at most %d bytes"
                    % (name, root, SOCKET_NAME_CHARACTERS, head_bytes, size, SOCKET_PATH_MAX),
                    'use a name whose first %d characters take at most %d bytes (an ASCII character '
                    'takes 1 byte, most CJK characters 3)%s'
                    % (SOCKET_NAME_CHARACTERS, head_bytes - (size - SOCKET_PATH_MAX),
                       ', or a root %d bytes shorter' % (size - SOCKET_PATH_MAX) if base == root else ''))
    return None


def snapshot_name_problem(name):
    """What forbids giving libvirt this snapshot name (see SNAPSHOT_NAME), as (problem, fix), or None."""
    if isinstance(name, str) and SNAPSHOT_NAME.fullmatch(name):
        return None
    return ('snapshot name %r is not usable: libvirt makes a file name of it and QEMU reads it as one word' % name,
            'give 1 to 100 letters, digits and . _ + @ : -, starting with a letter or digit')
