# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The per-root helper: the one process that opens a root's embedded drivers.

libvirt allows one process per embedded root and needs a running event loop before an
embedded URI opens, so a helper process owns both for one root and serves small typed
requests (JSON lines) over a private UNIX socket, several clients at once.

The client feeds this file's code to the module's Python on stdin (`python -I -c`), as the
owner of the root, so it must stay self-contained: Python's standard library plus the
libvirt bindings, which are imported only in the helper process (the client imports this
file for its protocol functions and never needs libvirt).
"""


import argparse
import base64
import ctypes
import errno
import hashlib
import hmac
import json
import logging
import os
import resource
import select
import shutil
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from xml.etree import ElementTree

PROTOCOL = 1
# How long a request may run when its client did not say (older clients).
DEFAULT_REQUEST_SECONDS = 900
# A stopping helper waits for its requests in flight, each bounded by its own timeout; this
# is the bound for an older helper that does not report them.
STOP_DRAIN_SECONDS = 60
POLL_SECONDS = 0.2
# Connections waiting to be accepted: many parallel tasks connect at once.
LISTEN_BACKLOG = 1024
# The command line flag that marks a process as a helper (with --root <root> after it).
HELPER_FLAG = '--embedvirt-helper'
# Where the helper keeps its own files, relative to the root (root.py builds the paths).
STATE_DIR = 'run/embedvirt'
SOCKET = STATE_DIR + '/helper.sock'
LOCK = STATE_DIR + '/helper.lock'
BOOT_RECORD = STATE_DIR + '/boot-id'
LOG_DIR = 'log/embedvirt'
LOG = LOG_DIR + '/helper.log'
AGENT_CALL_SECONDS = 30
# How long a guest may be too busy to answer libvirt's sync before its agent counts as gone.
AGENT_BUSY_SECONDS = 120
REPEATABLE_AGENT_COMMANDS = ('guest-ping', 'guest-info', 'guest-exec-status')
# Raw bytes per guest-file-read/write call: 256 KiB made qemu-ga drop the message here
# (libvirt then reports the agent "not available for now"); 32-128 KiB all ran ~2.5-3 MiB/s
# under TCG.
AGENT_CHUNK_BYTES = 96 * 1024
# Largest standard input (base64) sent inside a guest-exec message.
AGENT_INPUT_DATA_BYTES = 64 * 1024

# libvirt's virDomainState values, by name.
DOMAIN_STATES = ('nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff',
                 'crashed', 'pmsuspended')
# The states in which a domain has a QEMU process.
ACTIVE_STATES = ('running', 'blocked', 'paused', 'shutdown', 'crashed', 'pmsuspended')

# normalize_definition defines a scratch domain under this name prefix and undefines it again;
# nothing else may use the prefix (a helper removes such domains when it starts), and no
# listing shows one.
PROBE_PREFIX = 'embedvirt-probe-'

# A UNIX socket path holds at most 107 bytes plus the terminating NUL. The deepest socket
# libvirt 9 puts under a root is a guest agent channel,
# <root>/lib/qemu/channel/target/domain-<id>-<first 20 characters of the name>/org.qemu.guest_agent.0,
# budgeted here for domain ids of up to 4 digits. root.py imports these (this file runs alone).
SOCKET_PATH_MAX = 107
SOCKET_NAME_CHARACTERS = 20
AGENT_SOCKET_DIR = '/lib/qemu/channel/target/domain-9999-'
AGENT_SOCKET_NAME = '/org.qemu.guest_agent.0'
LONGEST_SOCKET_SUFFIX = AGENT_SOCKET_DIR + 'x' * SOCKET_NAME_CHARACTERS + AGENT_SOCKET_NAME

log = logging.getLogger('embedvirt.helper')


def encode(message):
    return (json.dumps(message, separators=(',', ':'), sort_keys=True) + '\n').encode('utf-8')


def decode(line):
    return json.loads(line.decode('utf-8'))


def code_version(source):
    """Version of helper code: the hash of its source, so any change means a new helper."""
    return hashlib.sha256(source).hexdigest()


def peer_credentials(sock):
    """(pid, uid, gid) of the process at the other end of a UNIX socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize('3i'))
    return struct.unpack('3i', creds)


class HelperError(Exception):
    """An error a request reports back to its client: kind, message and a hint."""

    def __init__(self, kind, message, hint=None):
        super(HelperError, self).__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint

    def to_dict(self):
        return {'kind': self.kind, 'message': self.message, 'hint': self.hint}


def explain_open_error(message, root, pidfile):
    """Turn libvirt's message for a failed embedded open into a HelperError with a fix."""
    for what in ('user', 'group'):
        marker = "Failed to parse %s '" % what
        if marker in message:
            name = message.split(marker, 1)[1].split("'", 1)[0]
            command = ('useradd --system --no-create-home --shell /usr/sbin/nologin %s' % name
                       if what == 'user' else 'groupadd --system %s' % name)
            return HelperError(
                'account', message,
                "running privileged, libvirt's QEMU driver looks up the %s '%s' (its build "
                "default) before it reads qemu.conf, even when qemu.conf names another %s: "
                "create it ('%s')"
                % (what, name, what, command))
    if 'Failed to acquire pid file' in message:
        return HelperError(
            'root_busy', message,
            "root '%s' is already open in %s, which is not this collection's helper; libvirt "
            "allows one process per embedded root: stop that process (or let it finish) and "
            "retry, or use another root" % (root, describe_pidfile_owner(pidfile)))
    if 'No space left on device' in message:
        return HelperError('storage', message, hint_for_libvirt_error(message))
    if 'no connection driver available' in message:
        return HelperError(
            'driver_missing', message,
            "libvirt's QEMU or secret driver module is not installed: install "
            "libvirt-daemon-driver-qemu and libvirt-daemon (Debian/Ubuntu) or "
            "libvirt-daemon-driver-qemu and libvirt-daemon-driver-secret (Fedora/RHEL)")
    return HelperError('libvirt', message)


def explain_agent_error(message, name, command):
    if 'not running' in message:
        return HelperError('not_running', "domain '%s' is not running: %s" % (name, message),
                           'start it (embedvirt.libvirt.domain state=running)')
    if 'not responding' in message or 'not connected' in message or 'not configured' in message:
        return HelperError(
            'agent_unavailable', "the guest agent of domain '%s' does not answer: %s" % (name, message),
            "give the domain a <channel type='unix'><target type='virtio' "
            "name='org.qemu.guest_agent.0'/></channel> and run qemu-guest-agent in the guest")
    if 'has been disabled' in message or 'CommandDisabled' in message:
        return HelperError('agent_disabled', "the guest agent of domain '%s' refuses %s: %s"
                           % (name, command, message),
                           'enable %s in the guest (qemu-ga --block-rpcs / allow-rpcs)' % command)
    return HelperError('agent', message)


# Messages of libvirt calls that fail because of embedded mode itself, and what to do.
EMBEDDED_MODE_HINTS = (
    ('virtnetworkd-sock', "libvirt networks do not exist in embedded mode (the network driver "
                          "cannot be embedded): use <interface type='user'>, type='bridge' with an "
                          "existing host bridge, or type='ethernet' with a tap device"),
    ('virtstoraged-sock', "storage pools and volumes do not exist in embedded mode: give disks as "
                          "<disk type='file'> with a path (see embedvirt.libvirt.volume)"),
    ('virtlogd-sock', 'add stdio_handler = "file" to <root>/etc/qemu.conf, so QEMU logs to files '
                      'instead of the system virtlogd'),
    # Not embedded mode's fault, but where a root's files go is: say which filesystem.
    ('No space left on device', 'the filesystem that holds the root is full: free space there '
                                '(df <root>) and run the task again; libvirt keeps what it had '
                                'stored before'),
)


def hint_for_libvirt_error(message):
    for marker, hint in EMBEDDED_MODE_HINTS:
        if marker in message:
            return hint
    return None


def pidfile_owner(pidfile):
    """(pid, argv) of the process a libvirt pidfile names, or None."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    argv = process_argv(pid)
    return (pid, argv) if argv else None


def process_argv(pid):
    """The command line of a process, or [] when it is gone."""
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return [part.decode('utf-8', 'replace') for part in f.read().rstrip(b'\0').split(b'\0')]
    except OSError:
        return []


def describe_pidfile_owner(pidfile):
    owner = pidfile_owner(pidfile)
    if owner is None:
        return 'another process'
    return 'process %d (%s)' % (owner[0], ' '.join(owner[1])[:120])


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
        path = root + AGENT_SOCKET_DIR + head + AGENT_SOCKET_NAME
        size = len(path.encode('utf-8'))
        if size > SOCKET_PATH_MAX:
            return ("domain name '%s' is too long for root %s in bytes: libvirt puts its first %d "
                    "characters (%d bytes) in the guest agent socket path %s, which is then %d bytes "
                    "long (with a domain id of 4 digits), and a UNIX socket path holds at most %d bytes"
                    % (name, root, SOCKET_NAME_CHARACTERS, head_bytes, path, size, SOCKET_PATH_MAX),
                    'use a name whose first %d characters take at most %d bytes (an ASCII character '
                    'takes 1 byte, most CJK characters 3), or a root %d bytes shorter'
                    % (SOCKET_NAME_CHARACTERS, head_bytes - (size - SOCKET_PATH_MAX), size - SOCKET_PATH_MAX))
    return None


class Driver:
    """The libvirt side: the event loop thread and the root's two embedded connections."""

    def __init__(self, root, pidfile):
        self.root = root
        self.pidfile = pidfile
        self.libvirt = None
        self.secret = None
        self.qemu = None
        self.thread_context = None
        self.restart_requested = False
        self.probe_lock = threading.Lock()

    def open(self):
        # The seed: RTLD_GLOBAL is required when libvirt.so was itself dlopen()ed, as
        # Python's extension loading does, so that driver modules can resolve its symbols.
        sys.setdlopenflags(os.RTLD_NOW | os.RTLD_GLOBAL)
        try:
            import libvirt
        except ImportError as e:
            raise HelperError(
                'bindings_missing', 'cannot import libvirt in %s: %s' % (sys.executable, e),
                'install the libvirt Python bindings for this interpreter: python3-libvirt '
                '(Debian/Ubuntu, Fedora/RHEL) or "pip install libvirt-python", or set '
                'ansible_python_interpreter to a Python that has them')
        self.libvirt = libvirt
        import libvirt_qemu  # part of the same bindings; the guest agent's door
        self.libvirt_qemu = libvirt_qemu
        # libvirt prints every error to stderr by default; send them to our log instead.
        libvirt.registerErrorHandler(lambda _ctx, err: log.debug('libvirt: %s', err[2]), None)
        libvirt.virEventRegisterDefaultImpl()
        loop = threading.Thread(target=self._run_event_loop, name='libvirt-event-loop')
        loop.daemon = True
        loop.start()
        # Escaped as virt-qemu-run does: libvirt unescapes the URI's query.
        query = urllib.parse.quote(self.root, safe='/')
        try:
            self.secret = libvirt.open('secret:///embed?root=%s' % query)
            self.qemu = libvirt.open('qemu:///embed?root=%s' % query)
        except libvirt.libvirtError as e:
            raise explain_open_error(str(e), self.root, self.pidfile)
        self.check_drivers_own_root()
        self.thread_context = SecretThreadContext(self.secret)

    def check_drivers_own_root(self):
        """Both drivers must have locked exactly this root's pidfiles.

        Read from /proc/locks: opening a pidfile here and closing it again would drop
        libvirt's POSIX lock on it, and with it the one-process-per-root guarantee.
        """
        with open('/proc/locks') as f:
            held = set(tuple(line.split()[4:6]) for line in f if len(line.split()) > 5)
        for driver in ('secrets', 'qemu'):
            pidfile = os.path.join(self.root, 'run', driver, 'driver.pid')
            st = os.stat(pidfile, follow_symlinks=False)
            device = '%02x:%02x:%d' % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
            if (str(os.getpid()), device) not in held:
                raise HelperError('root', 'libvirt did not lock %s: it opened the %s driver somewhere '
                                  'other than %s' % (pidfile, driver, self.root),
                                  'report this as a bug, with the root path; use a plain path meanwhile')

    def prepare_thread(self):
        """Make libvirt calls from the current thread able to use the root's secrets."""
        self.thread_context.apply()

    def _run_event_loop(self):
        while True:
            self.libvirt.virEventRunDefaultImpl()

    def close(self):
        for conn in (self.qemu, self.secret):
            if conn is not None:
                try:
                    conn.close()
                except self.libvirt.libvirtError as e:
                    log.warning('closing %s: %s', conn.getURI(), e)

    def versions(self):
        return {
            'libvirt': format_version(self.libvirt.getVersion()),
            'qemu': format_version(self.qemu.getVersion()),
            'python_libvirt': getattr(self.libvirt, '__version__', None)
            or format_version(self.libvirt.getVersion()),
        }

    def domain_summary(self, dom):
        state, reason = dom.state()
        persistent = bool(dom.isPersistent())
        return {
            'name': dom.name(),
            'uuid': dom.UUIDString(),
            'id': dom.ID() if dom.ID() >= 0 else None,
            'state': DOMAIN_STATES[state] if state < len(DOMAIN_STATES) else str(state),
            'state_reason': reason,
            'persistent': persistent,
            'autostart': bool(dom.autostart()) if persistent else False,
        }

    def domain_list(self, names=None, states=None):
        unknown = sorted(set(states or ()) - set(DOMAIN_STATES))
        if unknown:
            # A misspelt state would otherwise filter out every domain without a word.
            raise HelperError('states', 'unknown domain state(s) %s' % ', '.join(repr(s) for s in unknown),
                              'use states among %s' % ', '.join(DOMAIN_STATES))
        result = []
        for dom in self.domains():
            summary = self.domain_summary(dom)
            if names and summary['name'] not in names:
                continue
            if states and summary['state'] not in states:
                continue
            result.append(summary)
        return sorted(result, key=lambda d: d['name'])

    # --- domains -----------------------------------------------------------------------
    def domains(self):
        """Every domain but the probes of normalize_definition (see clean_leftovers)."""
        return [dom for dom in self.qemu.listAllDomains(0) if not dom.name().startswith(PROBE_PREFIX)]

    def clean_leftovers(self):
        """Remove what a helper killed in the middle of a request left in the root.

        A probe domain: killed between normalize_definition's define and undefine.
        A <file>.new under etc/qemu or etc/secrets: libvirt's virFileRewrite writes a
        definition (or a secret's value) to <file>.new and renames it over <file>.
        Nobody asked for either (libvirt ignores *.new files), so what cannot be removed is
        logged and the helper starts all the same.
        """
        flags = self.libvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE | self.libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT
        for dom in self.qemu.listAllDomains(flags):
            if dom.name().startswith(PROBE_PREFIX):
                try:
                    dom.undefineFlags(self.libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
                    log.warning('removed the scratch domain %s, left by a helper that died', dom.name())
                except self.libvirt.libvirtError as e:
                    log.warning('cannot remove the scratch domain %s: %s', dom.name(), e)
        for directory in ('etc/qemu', 'etc/secrets'):
            try:
                fd = os.open(os.path.join(self.root, directory), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    log.warning('not looking for half-written files in %s: %s', directory, e)
                continue
            try:
                for name in os.listdir(fd):
                    if not name.endswith('.new'):
                        continue
                    try:
                        os.unlink(name, dir_fd=fd)  # a link goes, never what it points to
                        log.warning('removed %s/%s/%s, left half-written by a helper that died',
                                    self.root, directory, name)
                    except OSError as e:
                        log.warning('cannot remove %s/%s/%s: %s', self.root, directory, name, e)
            finally:
                os.close(fd)

    def check_name(self, name, budget=False):
        """Refuse a domain name libvirt would misuse; with budget, also one too long in bytes
        for this root's socket paths (only a define or create makes sockets)."""
        problem = domain_name_problem(name, self.root if budget else None)
        if problem:
            raise HelperError('name', *problem)

    def parse_definition(self, xml):
        """A domain definition's tree and <name> element, once the name passes check_name."""
        tree = parse_xml(xml, 'domain')
        name_el = tree.find('name')
        if name_el is None or not (name_el.text or '').strip():
            raise HelperError('xml', 'the domain XML has no <name>', 'add <name>...</name>')
        self.check_name(name_el.text, budget=True)  # libvirt takes the text as it is, spaces and all
        return tree, name_el

    def _domain(self, name):
        """The domain called name, or None."""
        self.check_name(name)
        try:
            return self.qemu.lookupByName(name)
        except self.libvirt.libvirtError as e:
            if e.get_error_code() == self.libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _domain_required(self, name):
        dom = self._domain(name)
        if dom is None:
            raise HelperError('no_domain', "domain '%s' is not defined in root %s" % (name, self.root),
                              'give xml to define it, or check the name with embedvirt.libvirt.domain_info')
        return dom

    def domain_detail(self, dom):
        detail = self.domain_summary(dom)
        flags = self.libvirt.VIR_DOMAIN_XML_INACTIVE if detail['persistent'] else 0
        detail['xml'] = dom.XMLDesc(flags)
        return detail

    def domain_get(self, name):
        dom = self._domain(name)
        return self.domain_detail(dom) if dom is not None else None

    def domain_plan(self, name, xml=None):
        """What a domain is now, and libvirt's own form of the definition asked for."""
        dom = self._domain(name)
        plan = {'current': self.domain_detail(dom) if dom is not None else None,
                'wanted_xml': None, 'define_xml': None}
        if xml:
            plan['define_xml'], plan['wanted_xml'] = self.normalize_definition(xml, dom)
        return plan

    def normalize_definition(self, xml, existing=None):
        """The definition to give libvirt, and libvirt's stored form of it, without keeping it.

        The first is the XML given plus what redefining must keep from an existing domain
        (uuid, MACs of interfaces that name none). The second comes from defining that under a
        scratch name and uuid, reading it back and undefining it, so check mode and idempotence
        compare what libvirt would store (its defaults, attribute order and whitespace).
        """
        tree, name_el = self.parse_definition(xml)
        real_name = name_el.text.strip()
        uuid_el = tree.find('uuid')
        if existing is not None:
            # What libvirt would keep from the existing definition when redefining it.
            if uuid_el is None:
                uuid_el = ElementTree.SubElement(tree, 'uuid')
                uuid_el.text = existing.UUIDString()
            inherit_macs(tree, parse_xml(existing.XMLDesc(self.libvirt.VIR_DOMAIN_XML_INACTIVE), 'domain'))
        real_uuid = None
        if uuid_el is not None:
            try:
                real_uuid = str(uuid.UUID((uuid_el.text or '').strip()))
            except ValueError:
                raise HelperError('xml', 'the domain XML has an invalid <uuid>: %r' % uuid_el.text,
                                  'give a UUID such as %s, or leave <uuid> out' % uuid.uuid4())
        define_xml = ElementTree.tostring(tree, encoding='unicode')
        if uuid_el is None:
            uuid_el = ElementTree.SubElement(tree, 'uuid')
        probe_name = 'embedvirt-probe-%s' % uuid.uuid4().hex[:12]
        probe_uuid = str(uuid.uuid4())
        name_el.text = probe_name
        uuid_el.text = probe_uuid
        with self.probe_lock:
            try:
                probe = self.qemu.defineXML(ElementTree.tostring(tree, encoding='unicode'))
            except self.libvirt.libvirtError as e:
                # libvirt's message may name the scratch domain, which the user never asked for.
                raise HelperError('libvirt', "libvirt refused the definition of '%s' (tried under the "
                                  "scratch name %s): %s" % (real_name, probe_name, e),
                                  hint_for_libvirt_error(str(e)))
            try:
                stored = probe.XMLDesc(self.libvirt.VIR_DOMAIN_XML_INACTIVE)
            finally:
                probe.undefineFlags(self.libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
        stored = stored.replace(probe_name, xml_escape(real_name))
        if real_uuid:
            return define_xml, stored.replace(probe_uuid, real_uuid)
        return define_xml, stored.replace('  <uuid>%s</uuid>\n' % probe_uuid, '')

    def domain_define(self, xml):
        self.parse_definition(xml)
        return self.domain_detail(self.qemu.defineXML(xml))

    def domain_create(self, xml, paused=False):
        self.parse_definition(xml)
        flags = self.libvirt.VIR_DOMAIN_START_PAUSED if paused else 0
        return self.domain_detail(self.qemu.createXML(xml, flags))

    def domain_start(self, name, paused=False):
        dom = self._domain_required(name)
        dom.createWithFlags(self.libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)
        return self.domain_detail(dom)

    def domain_resume(self, name):
        dom = self._domain_required(name)
        dom.resume()
        return self.domain_detail(dom)

    def domain_suspend(self, name):
        dom = self._domain_required(name)
        dom.suspend()
        return self.domain_detail(dom)

    def domain_destroy(self, name):
        dom = self._domain_required(name)
        dom.destroy()
        return self.domain_get(name)  # a transient domain is gone now

    def domain_shutdown(self, name, timeout, force=False):
        """Power a guest off gracefully, waiting up to timeout seconds, then (with force)
        at once; the steps taken, whether it is off, and the domain after."""
        dom = self._domain_required(name)
        steps = []
        if dom.state()[0] == self.libvirt.VIR_DOMAIN_PAUSED:
            # A paused guest cannot see the power button (libvirt refuses the request).
            dom.resume()
            steps.append('resume')
        dom.shutdown()
        steps.append('shutdown')
        deadline = time.time() + timeout
        while True:
            current = self.domain_get(name)
            if current is None or current['state'] == 'shutoff':
                return {'done': True, 'steps': steps, 'domain': current}
            if time.time() >= deadline:
                break
            time.sleep(0.2)
        if not force:
            return {'done': False, 'steps': steps, 'domain': current}
        dom.destroy()
        steps.append('destroy')
        return {'done': True, 'steps': steps, 'domain': self.domain_get(name)}

    def domain_undefine(self, name):
        # NVRAM stays: it is the guest's data, and undefining is about the definition.
        self._domain_required(name).undefineFlags(self.libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
        return self.domain_get(name)

    def domain_set_autostart(self, name, autostart):
        dom = self._domain_required(name)
        dom.setAutostart(1 if autostart else 0)
        return self.domain_detail(dom)

    def domain_disks(self):
        """Every file or block device a domain uses: its live and stored definitions."""
        disks = []
        for dom in self.domains():
            summary = self.domain_summary(dom)
            paths = set()
            flag_sets = [0] + ([self.libvirt.VIR_DOMAIN_XML_INACTIVE] if summary['persistent'] else [])
            for flags in flag_sets:
                for source in parse_xml(dom.XMLDesc(flags), 'domain').iter('source'):
                    path = source.get('file') or source.get('dev')
                    if path:
                        paths.add(path)
            for path in sorted(paths):
                disks.append({'domain': summary['name'], 'state': summary['state'], 'path': path})
        return disks

    # --- guest agent -------------------------------------------------------------------
    def agent(self, name, command, arguments=None, timeout=AGENT_CALL_SECONDS):
        """One guest agent command; its 'return' value."""
        dom = self._domain_required(name)
        request = {'execute': command}
        if arguments is not None:
            request['arguments'] = arguments
        deadline = time.time() + AGENT_BUSY_SECONDS
        while True:
            started = time.time()
            try:
                reply = self.libvirt_qemu.qemuAgentCommand(dom, json.dumps(request), int(timeout), 0)
                return json.loads(reply).get('return')
            except self.libvirt.libvirtError as e:
                # libvirt says this when the agent does not answer in time: its guest-sync
                # before the command (5 s, a busy guest) or the command itself. A failure
                # well before our timeout was the sync, so the command was never sent and
                # may be asked again; a command that only reads may always be.
                unsent = time.time() - started < timeout - 1 or command in REPEATABLE_AGENT_COMMANDS
                if 'not available for now' not in str(e) or not unsent or time.time() >= deadline:
                    raise explain_agent_error(str(e), name, command)
            time.sleep(0.5)

    def guest_wait_agent(self, name, timeout):
        """Wait until the guest agent answers a ping; its info (version, enabled commands)."""
        deadline = time.time() + timeout
        while True:
            try:
                self.agent(name, 'guest-ping', timeout=AGENT_CALL_SECONDS)
                return self.agent(name, 'guest-info')
            except HelperError as e:
                if e.kind != 'agent_unavailable' or time.time() >= deadline:
                    if e.kind == 'agent_unavailable':
                        e.message = '%s (waited %d s)' % (e.message, timeout)
                    raise
            time.sleep(0.5)

    def guest_exec(self, name, argv, input_data=None, env=None, timeout=None):
        """Run argv in the guest, wait for it; exit code and output (base64).

        Polls guest-exec-status here, next to the agent, so a command costs the client one
        request however long it runs.
        """
        if input_data and len(input_data) > AGENT_INPUT_DATA_BYTES:
            # qemu-ga drops a guest-exec message this large (pipelined modules are); give the
            # command its input from a file instead, which the shell unlinks once open.
            path = '/tmp/.embedvirt-stdin-%s' % uuid.uuid4().hex
            self.guest_file_write(name, path, input_data)
            argv = ['/bin/sh', '-c', 'exec <"$0" && rm -f "$0" && exec "$@"', path] + list(argv)
            input_data = None
        arguments = {'path': argv[0], 'arg': list(argv[1:]), 'capture-output': True}
        if input_data:
            arguments['input-data'] = input_data
        if env:
            arguments['env'] = ['%s=%s' % item for item in sorted(env.items())]
        pid = self.agent(name, 'guest-exec', arguments)['pid']
        deadline = time.time() + timeout if timeout else None
        delay = 0.005
        while True:
            status = self.agent(name, 'guest-exec-status', {'pid': pid})
            if status.get('exited'):
                return {
                    'rc': status.get('exitcode', -status.get('signal', 0) or 0),
                    'signal': status.get('signal'),
                    'stdout': status.get('out-data', ''),
                    'stderr': status.get('err-data', ''),
                    'truncated': bool(status.get('out-truncated') or status.get('err-truncated')),
                }
            if deadline is not None and time.time() >= deadline:
                raise HelperError('timeout', 'command %s did not finish within %s s in domain %s'
                                  % (argv[0], timeout, name), 'raise the command timeout')
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def guest_file_write(self, name, path, data, append=False):
        """Write data (base64) to a file in the guest, in agent-sized chunks."""
        handle = self.agent(name, 'guest-file-open', {'path': path, 'mode': 'ab' if append else 'wb'})
        try:
            raw = base64.b64decode(data)
            for offset in range(0, len(raw), AGENT_CHUNK_BYTES) or [0]:
                chunk = raw[offset:offset + AGENT_CHUNK_BYTES]
                self.agent(name, 'guest-file-write',
                           {'handle': handle, 'buf-b64': base64.b64encode(chunk).decode('ascii')})
        finally:
            self.agent(name, 'guest-file-close', {'handle': handle})
        return {'written': len(raw)}

    def guest_file_read(self, name, path, offset=0, length=AGENT_CHUNK_BYTES * 16):
        """Read up to length bytes at offset of a file in the guest; data (base64) and eof."""
        handle = self.agent(name, 'guest-file-open', {'path': path, 'mode': 'rb'})
        parts = []
        eof = False
        try:
            if offset:
                self.agent(name, 'guest-file-seek', {'handle': handle, 'offset': offset, 'whence': 'set'})
            remaining = length
            while remaining > 0 and not eof:
                reply = self.agent(name, 'guest-file-read',
                                   {'handle': handle, 'count': min(remaining, AGENT_CHUNK_BYTES)})
                chunk = base64.b64decode(reply.get('buf-b64', ''))
                parts.append(chunk)
                remaining -= len(chunk)
                eof = reply.get('eof', False) or not chunk
        finally:
            self.agent(name, 'guest-file-close', {'handle': handle})
        return {'data': base64.b64encode(b''.join(parts)).decode('ascii'), 'eof': eof}

    # --- secrets -----------------------------------------------------------------------
    def _secret(self, secret_uuid=None, usage_type=None, usage_id=None):
        """The secret with this uuid, or else with this usage; None if there is none."""
        try:
            if secret_uuid:
                return self.secret.secretLookupByUUIDString(secret_uuid)
            usage = getattr(self.libvirt, 'VIR_SECRET_USAGE_TYPE_%s' % usage_type.upper())
            return self.secret.secretLookupByUsage(usage, usage_id)
        except self.libvirt.libvirtError as e:
            if e.get_error_code() == self.libvirt.VIR_ERR_NO_SECRET:
                return None
            raise

    def secret_detail(self, sec):
        tree = parse_xml(sec.XMLDesc(0), 'secret')
        usage = tree.find('usage')
        usage_id = None
        if usage is not None:
            for child in usage:
                usage_id = (child.text or '').strip()
        return {
            'uuid': sec.UUIDString(),
            'usage_type': usage.get('type') if usage is not None else 'none',
            'usage_id': usage_id,
            'description': (tree.findtext('description') or '').strip() or None,
            'private': tree.get('private') == 'yes',
            'ephemeral': tree.get('ephemeral') == 'yes',
        }

    def secret_get(self, uuid=None, usage_type=None, usage_id=None):
        sec = self._secret(uuid, usage_type, usage_id)
        return self.secret_detail(sec) if sec is not None else None

    def secret_define(self, xml):
        if parse_xml(xml, 'secret').get('ephemeral') == 'yes':
            # Same NULL callback as in secret_undefine: defining one crashes the process.
            raise HelperError('unsupported', "libvirt's embedded secret driver cannot hold "
                              'ephemeral secrets (libvirt 9.0 crashes defining one)',
                              'use ephemeral=false')
        return self.secret_detail(self.secret.secretDefineXML(xml, 0))

    def secret_value_matches(self, uuid, value):
        """Whether the secret holds value (base64); None when that cannot be known."""
        sec = self._secret(uuid)
        detail = self.secret_detail(sec)
        wanted = base64.b64decode(value)
        if not detail['private']:
            try:
                return hmac.compare_digest(sec.value(0), wanted)
            except self.libvirt.libvirtError:
                return False  # no value set yet
        # libvirt never hands out a private secret's value: compare with the salted digest
        # recorded when this collection set it.
        try:
            with open(self.secret_digest_path(uuid), 'rb') as f:
                salt, digest = f.read().split(b'$', 1)
        except (OSError, ValueError):
            return None
        return hmac.compare_digest(digest, value_digest(base64.b64decode(salt), wanted))

    def secret_set_value(self, uuid, value):
        sec = self._secret(uuid)
        secret_value = base64.b64decode(value)
        sec.setValue(secret_value, 0)
        path = self.secret_digest_path(uuid)
        if self.secret_detail(sec)['private']:
            write_secret_digest(path, secret_value)
        elif os.path.exists(path):
            os.unlink(path)
        return self.secret_detail(sec)

    def secret_undefine(self, uuid):
        """Remove a secret: its files now, its in-memory copy when the helper restarts.

        libvirt 9.0's embedded secret driver crashes the process in virSecretUndefine (it
        calls the shutdown-inhibit callback, which embedded mode leaves NULL), so the helper
        deletes the stored definition and value itself and then restarts: the next helper
        loads the secrets that remain. Running guests already hold what they were given.
        """
        sec = self._secret(uuid)
        name = sec.UUIDString()
        for path in (os.path.join(self.root, 'etc', 'secrets', name + '.xml'),
                     os.path.join(self.root, 'etc', 'secrets', name + '.base64'),
                     self.secret_digest_path(name)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.restart_requested = True
        return {'restart': True}

    def secret_digest_path(self, secret_uuid):
        return os.path.join(self.root, 'lib', 'embedvirt', 'secret-digests', str(uuid.UUID(secret_uuid)))


def xml_escape(text):
    # xml.sax.saxutils.escape would import urllib and http.client into every client.
    return text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


def reset_runtime_state_after_reboot(root):
    """Clear what a tmpfs /run would have lost, once per boot.

    An embedded root keeps its run/ on disk. After a reboot libvirt would take the stale
    status files there for guests still running, skip their autostart and then find them
    crashed. No QEMU process survives a reboot, so the first helper of a new boot removes
    the drivers' runtime state. A root without a record of the last boot is left alone: its
    guests may be running (started by another program).
    """
    record = os.path.join(root, BOOT_RECORD)
    try:
        with open('/proc/sys/kernel/random/boot_id') as f:
            boot_id = f.read().strip()
    except OSError:
        return
    try:
        # Not through a link (write_whole then replaces it), never blocking on a FIFO.
        with os.fdopen(os.open(record, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), 'rb') as f:
            last = f.read(64).decode('ascii', 'replace').strip()
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ELOOP):
            raise
        last = None
    if last == boot_id:
        return
    if last is not None:
        log.info('first helper since a reboot: clearing the stale runtime state of the drivers')
        for driver in ('qemu', 'secrets'):
            shutil.rmtree(os.path.join(root, 'run', driver), ignore_errors=True)
    write_whole(record, (boot_id + '\n').encode('ascii'))


def write_whole(path, data):
    """Write a file of the helper's own whole or not at all: never through a link, and no
    temporary file left behind when the disk is full."""
    tmp = '%s.%d.tmp' % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_secret_digest(path, secret_value):
    """Record a salted digest of a private secret's value, all or nothing.

    The value is already in libvirt's store. If the digest cannot be written, the old one
    goes too: it would vouch for a value the secret no longer holds.
    """
    salt = os.urandom(16)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_whole(path, base64.b64encode(salt) + b'$' + value_digest(salt, secret_value))
    except OSError as e:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise HelperError('storage', 'the secret holds the new value, but its digest could not be '
                          'recorded (%s), so the next run will set the value again' % e,
                          hint_for_libvirt_error(str(e)))


def value_digest(salt, value):
    return hashlib.sha256(salt + value).hexdigest().encode('ascii')


def parse_xml(xml, root_tag):
    try:
        tree = ElementTree.fromstring(xml)
    except ElementTree.ParseError as e:
        raise HelperError('xml', 'the XML is not well-formed: %s' % e, 'fix the XML syntax')
    if tree.tag != root_tag:
        raise HelperError('xml', 'the XML describes <%s>, not <%s>' % (tree.tag, root_tag),
                          'give a <%s> document' % root_tag)
    return tree


def inherit_macs(tree, existing):
    """Give interfaces without a MAC the MAC of the existing interface at the same place,
    as redefining would otherwise generate new random ones and never be idempotent."""
    old = existing.findall('./devices/interface')
    for index, interface in enumerate(tree.findall('./devices/interface')):
        if interface.find('mac') is None and index < len(old) and old[index].find('mac') is not None:
            mac = ElementTree.SubElement(interface, 'mac')
            mac.set('address', old[index].find('mac').get('address'))


class SecretThreadContext:
    """What the embedded QEMU driver needs in a thread to resolve a guest's secrets.

    libvirt 9's QEMU driver fetches a disk's passphrase through a secret connection cached
    per thread and with the thread's current identity, both of which only libvirtd's RPC
    dispatch sets. In an embedded process a start then fails with "No current identity to
    elevate" (in the thread that opened the drivers) or opens secret:///system ("Missing URI
    parameter 'root'", in any other thread). libvirt.so exports the private functions that
    set both; without them (another build) guests without secrets still work.
    """

    def __init__(self, secret_conn):
        self.local = threading.local()
        self.error = None
        try:
            lib = ctypes.CDLL('libvirt.so.0')
            lib.virIdentityGetSystem.restype = ctypes.c_void_p
            lib.virIdentitySetCurrent.argtypes = [ctypes.c_void_p]
            lib.virSetConnectSecret.argtypes = [ctypes.c_void_p]
            capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
            capsule_pointer.restype = ctypes.c_void_p
            capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
            self.lib = lib
            self.identity = lib.virIdentityGetSystem()
            # pylint: disable-next=protected-access
            self.secret_pointer = capsule_pointer(secret_conn._o, b'virConnectPtr')
        except (OSError, AttributeError, ValueError) as e:
            self.error = e
            log.warning('guests with secrets will not start: cannot reach libvirt internals (%s)', e)

    def apply(self):
        if self.error is not None or getattr(self.local, 'applied', False):
            return
        # Both are thread-local in libvirt and keep their own reference.
        if self.lib.virIdentitySetCurrent(self.identity) < 0 or self.lib.virSetConnectSecret(self.secret_pointer) < 0:
            log.warning('could not set the secret context of this thread')
        self.local.applied = True


def format_version(number):
    return '%d.%d.%d' % (number // 1000000, number // 1000 % 1000, number % 1000)


class Helper:
    """Serves requests for one root until stopped, told to, or idle for too long."""

    def __init__(self, root, idle_timeout, version):
        self.root = root
        self.socket_path = os.path.join(root, SOCKET)
        self.idle_timeout = idle_timeout
        self.version = version
        self.started = time.time()
        self.last_activity = time.time()
        self.in_flight = {}  # request number -> (op, deadline)
        self.requests = 0
        self.served = 0
        self.lock = threading.Lock()
        self.stop_requested = threading.Event()
        self.allowed_uids = {0, os.geteuid(), os.stat(root).st_uid}
        self.driver = Driver(root, os.path.join(root, 'run', 'qemu', 'driver.pid'))
        self.server = None
        self.socket_inode = None
        self.ops = {
            'hello': self.op_hello,
            'status': self.op_status,
            'stop': self.op_stop,
            'versions': self.driver.versions,
            'domain_list': self.driver.domain_list,
        }
        for name in ('domain_get', 'domain_plan', 'domain_define', 'domain_create', 'domain_start',
                     'domain_resume', 'domain_suspend', 'domain_destroy', 'domain_shutdown',
                     'domain_undefine', 'domain_set_autostart', 'domain_disks', 'secret_get',
                     'secret_define', 'secret_value_matches', 'secret_set_value', 'secret_undefine',
                     'agent', 'guest_wait_agent', 'guest_exec', 'guest_file_write', 'guest_file_read'):
            self.ops[name] = getattr(self.driver, name)

    # --- lifecycle -------------------------------------------------------------------
    def start(self):
        raise_descriptor_limit()
        try:
            reset_runtime_state_after_reboot(self.root)
        except OSError as e:
            raise HelperError('storage', 'cannot record the boot in %s: %s' % (self.root, e),
                              hint_for_libvirt_error(str(e)))
        self.driver.open()
        self.driver.clean_leftovers()
        if os.path.lexists(self.socket_path):
            # The client holds the start lock and found nobody answering: stale.
            os.unlink(self.socket_path)
        old_umask = os.umask(0o177)
        try:
            self.server = Server(self.socket_path, self)
        finally:
            os.umask(old_umask)
        self.socket_inode = os.stat(self.socket_path).st_ino
        threading.Thread(target=self.server.serve_forever, name='accept', daemon=True).start()
        threading.Thread(target=self._watch_idle, name='idle-watch', daemon=True).start()

    def wait_and_stop(self):
        self.stop_requested.wait()
        log.info('stopping: closing the socket, finishing requests in flight')
        self.server.shutdown()
        self.server.server_close()
        try:
            if os.stat(self.socket_path).st_ino == self.socket_inode:
                os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        # Requests in flight finish (a long shutdown, a guest command), each bounded by the
        # timeout its client gave; handlers notice the flag within POLL_SECONDS.
        while True:
            with self.lock:
                remaining = self.drain_seconds()
                work = self.work()
            if not work:
                break
            if remaining <= 0:
                log.warning('stopping with requests still in flight past their timeouts: %s',
                            ', '.join(op for op, _d in work))
                break
            time.sleep(0.05)
        time.sleep(POLL_SECONDS)  # let handlers answer what arrived meanwhile
        self.driver.close()
        log.info('stopped after serving %d requests', self.served)

    def work(self):
        """(op, deadline) of the requests in flight, apart from questions about the helper
        itself (call with lock)."""
        return sorted(item for item in self.in_flight.values() if item[0] not in ('hello', 'status', 'stop'))

    def drain_seconds(self):
        """Seconds until the last work in flight must have finished, 0 if none (call with lock)."""
        work = self.work()
        return max(0, round(max(deadline for _op, deadline in work) - time.time())) if work else 0

    def _watch_idle(self):
        while not self.stop_requested.is_set():
            time.sleep(0.5)
            with self.lock:
                idle = not self.in_flight and time.time() - self.last_activity
                timeout = self.idle_timeout
            if timeout and idle and idle > timeout:
                log.info('idle for %d s (idle timeout %d s)', idle, timeout)
                self.stop_requested.set()

    # --- requests ----------------------------------------------------------------------
    def begin(self, op, seconds):
        with self.lock:
            self.requests += 1
            number = self.requests
            self.in_flight[number] = (op, time.time() + seconds)
        return number

    def end(self, number):
        with self.lock:
            del self.in_flight[number]
            self.served += 1
            self.last_activity = time.time()

    def handle(self, request):
        op = request.get('op')
        method = self.ops.get(op)
        if method is None:
            raise HelperError('protocol', 'unknown operation %r' % (op,))
        args = request.get('args') or {}
        try:
            return method(**args)
        except TypeError as e:
            raise HelperError('protocol', 'bad arguments for %s: %s' % (op, e))
        except self.driver.libvirt.libvirtError as e:
            raise HelperError('libvirt', str(e), hint_for_libvirt_error(str(e)))

    def op_hello(self, version=None, idle_timeout=None):
        if idle_timeout is not None and version == self.version:
            with self.lock:
                self.idle_timeout = int(idle_timeout)
        return self.op_status()

    def op_status(self):
        with self.lock:
            in_flight = [op for op, _d in self.work()]
        return {
            'pid': os.getpid(),
            'uid': os.geteuid(),
            'version': self.version,
            'protocol': PROTOCOL,
            'root': self.root,
            'idle_timeout': self.idle_timeout,
            'uptime': round(time.time() - self.started, 3),
            'requests_served': self.served,
            'in_flight': in_flight,
            'python': sys.executable,
        }

    def op_stop(self):
        self.stop_requested.set()
        with self.lock:
            return {'stopping': True, 'pid': os.getpid(), 'in_flight': [op for op, _d in self.work()],
                    'drain_seconds': self.drain_seconds()}


class Handler(socketserver.StreamRequestHandler):
    """One client connection: requests answered in order, one JSON line each."""

    def handle(self):
        helper = self.server.helper
        helper.driver.prepare_thread()
        # poll(), not select(): select() fails for descriptors above 1024, which a helper
        # with hundreds of guests and clients reaches.
        poller = select.poll()
        poller.register(self.connection, select.POLLIN)
        try:
            while True:
                if not poller.poll(POLL_SECONDS * 1000):
                    if helper.stop_requested.is_set():
                        break
                    continue
                line = self.rfile.readline()
                if not line:
                    break
                if helper.stop_requested.is_set():
                    # Not carried out: the client may safely ask the next helper.
                    self.wfile.write(encode(self.stopping_reply(helper, line)))
                    self.wfile.flush()
                    break
                self.wfile.write(encode(self.answer(helper, line)))
                self.wfile.flush()
                if helper.driver.restart_requested:
                    log.info('restarting so that libvirt reloads the secrets from disk')
                    helper.stop_requested.set()
        except (OSError, ValueError):
            pass

    @staticmethod
    def stopping_reply(helper, line):
        try:
            request_id = decode(line).get('id')
        except ValueError:
            request_id = None
        error = HelperError('stopping', 'the helper (pid %d) is stopping' % os.getpid()).to_dict()
        with helper.lock:
            error['drain_seconds'] = helper.drain_seconds()
        error['pid'] = os.getpid()
        return {'id': request_id, 'ok': False, 'error': error}

    @staticmethod
    def answer(helper, line):
        request_id = None
        number = None
        try:
            request = decode(line)
            request_id = request.get('id')
            number = helper.begin(request.get('op'), float(request.get('timeout') or DEFAULT_REQUEST_SECONDS))
            return {'id': request_id, 'ok': True, 'result': helper.handle(request)}
        except HelperError as e:
            return {'id': request_id, 'ok': False, 'error': e.to_dict()}
        except ValueError as e:
            return {'id': request_id, 'ok': False,
                    'error': HelperError('protocol', 'malformed request: %s' % e).to_dict()}
        except OSError as e:
            # Files the helper handles itself under the root (a full disk, a removed directory).
            log.exception('request failed')
            return {'id': request_id, 'ok': False,
                    'error': HelperError('storage', str(e), hint_for_libvirt_error(str(e))).to_dict()}
        except Exception as e:  # pylint: disable=broad-except
            log.exception('request failed')
            return {'id': request_id, 'ok': False,
                    'error': HelperError('internal', '%s: %s' % (type(e).__name__, e)).to_dict()}
        finally:
            if number is not None:
                helper.end(number)


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, path, helper):
        self.helper = helper
        # Held in reserve: when descriptors run out, it is given up for a moment so that a
        # client can be accepted and told why, instead of waiting in the backlog.
        self.spare = os.open('/dev/null', os.O_RDONLY | os.O_CLOEXEC)
        socketserver.UnixStreamServer.__init__(self, path, Handler)

    def get_request(self):
        try:
            return socketserver.UnixStreamServer.get_request(self)
        except OSError as e:
            if e.errno not in (errno.EMFILE, errno.ENFILE) or self.spare is None:
                raise
        os.close(self.spare)
        self.spare = None
        try:
            sock, _addr = self.socket.accept()
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            log.error('out of file descriptors (limit %d): refusing a client', limit)
            error = HelperError('descriptors', 'the helper (pid %d) has run out of file descriptors '
                                '(limit %d)' % (os.getpid(), limit),
                                'raise its hard limit (LimitNOFILE= in a systemd unit, ulimit -Hn, or '
                                'prlimit --nofile) or use fewer parallel tasks, then run the task again'
                                ).to_dict()
            error['pid'] = os.getpid()
            try:
                sock.sendall(encode({'id': None, 'ok': False, 'error': error}))
            finally:
                sock.close()
        finally:
            try:
                self.spare = os.open('/dev/null', os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                pass  # taken meanwhile: the next refusal waits until one is free again
        raise OSError(errno.EMFILE, 'out of file descriptors')

    def verify_request(self, request, client_address):
        pid, uid, _gid = peer_credentials(request)
        if uid in self.helper.allowed_uids:
            return True
        log.warning('refused a connection from pid %d uid %d: only uids %s may use this root',
                    pid, uid, sorted(self.helper.allowed_uids))
        return False


def raise_descriptor_limit():
    """Use every descriptor the hard limit allows: guests' monitor and agent sockets and
    clients add up to more than the usual soft limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            log.warning('cannot raise the descriptor limit from %d to %s: %s', soft, hard, e)


def main(argv=None, version=None):
    """Run the helper. The client feeds this file's code to `python -c` on stdin, with the
    version (its hash); the boot service runs it as a file, hashed here."""
    parser = argparse.ArgumentParser(description='embedvirt.libvirt helper for one root')
    parser.add_argument(HELPER_FLAG, action='store_true', required=True)
    parser.add_argument('--root', required=True)
    parser.add_argument('--idle-timeout', type=int, default=0)
    args = parser.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format='%(asctime)s helper[%(process)d] %(levelname)s %(message)s')
    if version is None:
        with open(os.path.abspath(__file__), 'rb') as f:
            version = code_version(f.read())
    # stdout is the client's pipe: one line saying ready or why not, then it is closed.
    ready = os.fdopen(os.dup(1), 'wb')
    os.dup2(2, 1)
    helper = Helper(args.root, args.idle_timeout, version)
    signal.signal(signal.SIGTERM, lambda *_: helper.stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: helper.stop_requested.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        helper.start()
    except HelperError as e:
        log.error('cannot start: %s', e.message)
        ready.write(encode({'ok': False, 'error': e.to_dict()}))
        ready.close()
        return 1
    except OSError as e:
        log.exception('cannot start')
        ready.write(encode({'ok': False, 'error': HelperError(
            'storage', 'the helper cannot start on %s: %s' % (args.root, e), hint_for_libvirt_error(str(e))).to_dict()}))
        ready.close()
        return 1
    log.info('serving root %s (version %s, idle timeout %s s, uid %d)',
             args.root, version[:16], args.idle_timeout, os.geteuid())
    ready.write(encode({'ok': True, 'result': helper.op_status()}))
    ready.close()
    helper.wait_and_stop()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
