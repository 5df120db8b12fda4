# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""The protocol between a root's helper and its clients, in one place.

Every operation a helper carries out is a method of `Operations` (or, for what a client asks
a helper about itself, `Control`): its name is the operation's name on the wire, its
parameters are the operation's arguments (with their defaults), and `@operation` says whether
it changes anything and how long a call may take. The same classes are the typed client: a
client subclasses them and provides `request(op, args)`; the helper dispatches through
`OPERATIONS`, so a name or argument that is not here is a protocol error there.

Messages are JSON objects, one per line (`encode`, `FrameReader`), on the helper's socket and
on the SSH relay alike:
  request  {"id": n, "op": name, "args": {...}, "timeout": seconds}
  reply    {"id": n, "ok": true, "result": ...} or {"id": n, "ok": false, "error": {...}}
where an error has "kind" (one of the constants below, or another word a layer chose),
"message", "hint" (the fix) and sometimes "pid" or "drain_seconds".

Standard library only: this file is also part of the helper's bundle.
"""

import json
import os
import select
import socket
import struct
import time

# The message format and the Control operations, which every release keeps so that a client
# can retire a helper of any other release (a client talks to helpers of its own version
# only). A helper reports it in its status.
PROTOCOL = 2

# The command line flag that marks a process as a helper (with --root <root> after it).
HELPER_FLAG = '--embedvirt-helper'

# How long a call may take when its operation does not say, and what a call that waits for
# a timeout of its own (a shutdown, a guest command) gets on top of that timeout.
CALL_SECONDS = 900
WAIT_SLACK_SECONDS = 60
# A stopping helper waits for its requests in flight, each bounded by its own timeout; this
# is the bound for a helper of an earlier release that does not report them.
STOP_DRAIN_SECONDS = 60
# The longest message read: a guest file read (FILE_READ_BYTES) is 4 MiB raw, 5.4 MB of base64.
MAX_MESSAGE_BYTES = 16 << 20
# Requests up to this size are read by every connection at once; a larger one waits for its
# turn (the helper reads only a few at a time, see its server).
SMALL_MESSAGE_BYTES = 1 << 20

# libvirt's virDomainState values, by name.
DOMAIN_STATES = ('nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff',
                 'crashed', 'pmsuspended')
# The states in which a domain has a QEMU process.
ACTIVE_STATES = ('running', 'blocked', 'paused', 'shutdown', 'crashed', 'pmsuspended')

# A subscription (Operations.events_subscribe) without events says it is alive this often; a
# client that hears nothing for HEARTBEAT_MISSED of them takes the helper for gone.
HEARTBEAT_SECONDS = 10
HEARTBEAT_MISSED = 3
# Unread events a subscription keeps when it does not say how many.
EVENTS_QUEUE = 1000

# Raw bytes per guest-file-write call. qemu-ga drops a message of about 256 KiB of base64
# (192 KiB of data always, 176 KiB sometimes: libvirt then waits out its timeout and reports
# the agent "not available for now"); 64-128 KiB all ran 1.8-2.8 MiB/s under TCG, where
# qemu-ga's parsing of each character is the bound (bench/put_file_vs_agent.py).
AGENT_WRITE_BYTES = 96 * 1024
# Raw bytes per guest-file-read call: the reply is the guest's, which libvirt bounds to 10 MB.
# Under TCG (three runs of bench/put_file_vs_agent.py) 512 KiB read 9.1-11.8 MiB/s, 1 MiB
# 7.8-10.7, 96 KiB 6.6-10.3, 4 MiB 4.4-5.1.
AGENT_READ_BYTES = 512 * 1024
# The most one guest_file_read returns: its reply (base64) stays well under MAX_MESSAGE_BYTES,
# and the helper's copies of one reply (data, base64, JSON) near 20 MiB. Each request costs an
# open, a seek and a close (about 6 ms under TCG).
FILE_READ_BYTES = 4 * 1024 * 1024

# A linked clone's definition names its source in <metadata>: the helper refuses to start or
# revert a source that clones are built on (instance writes it, see _instance.instance_metadata).
CLONE_NAMESPACE = 'https://github.com/embedvirt/libvirt/clone'
CLONE_ELEMENT = '{%s}clone' % CLONE_NAMESPACE
# An instance's definition records the options it was built from (see _instance.DEFINITION).
INSTANCE_NAMESPACE = 'https://github.com/embedvirt/libvirt/instance'

# Error kinds the protocol itself reports; the layers add their own (name, xml, libvirt, ...).
ERROR_PROTOCOL = 'protocol'          # a request that is not one of OPERATIONS, or bad arguments
ERROR_INTERNAL = 'internal'          # a bug: the traceback is in the helper's log
ERROR_STOPPING = 'stopping'          # not carried out: the helper is stopping; ask the next one
ERROR_CONNECTION = 'connection'      # the helper went away during the call
ERROR_UNRESPONSIVE = 'unresponsive'  # the helper did not answer in time
ERROR_DESCRIPTORS = 'descriptors'    # the helper ran out of file descriptors
ERROR_LIBVIRT = 'libvirt'            # libvirt refused; the message is libvirt's
ERROR_STORAGE = 'storage'            # a file the helper handles (a full disk, a removed directory)
ERROR_HELPER_CODE_NEEDED = 'helper_code_needed'  # a module without the helper's code must start one

# Every error_kind a task can return (a module's result, the connection's and the inventory's
# errors), with what it means: users match on them (failed_when, rescue). A unit test holds
# the code to this registry, and the Troubleshooting guide lists it.
ERROR_KINDS = {
    # the helper and its socket
    ERROR_PROTOCOL: 'a request the helper does not know, or with bad arguments (a client of another release)',
    ERROR_INTERNAL: "a bug in the helper: the traceback is in the root's helper log",
    ERROR_STOPPING: 'the helper was stopping and did not carry the request out; the next task starts another',
    ERROR_CONNECTION: 'the helper (or the SSH session to the hypervisor) went away during the call',
    ERROR_UNRESPONSIVE: 'the helper did not answer in time (stopped, or stuck in libvirt)',
    ERROR_DESCRIPTORS: 'the helper ran out of file descriptors',
    ERROR_LIBVIRT: "libvirt refused the operation; the message is libvirt's",
    ERROR_STORAGE: 'a file the helper writes could not be written (a full disk, a removed directory)',
    'client': 'the client failed to talk to the helper for another reason (the message says which)',
    'helper': 'the helper reported an error without a kind (a helper of another release)',
    'start': 'the helper did not start, or the SSH session to the hypervisor ended as it started',
    ERROR_HELPER_CODE_NEEDED: ("a module ran without the helper's code and must start a helper; its action plugin runs it "
                               'again with the code, so a task shows this only when it ran without it'),
    'stop': 'the helper did not stop when asked',
    'lock_timeout': "another task held the root's start lock too long",
    'socket': "the helper's socket is not a socket of the root's owner",
    'permission': "the process on the helper's socket is neither root nor the root's owner",
    'bindings_missing': 'no Python with the libvirt bindings: install python3-libvirt or give helper_python',
    'timeout': 'a wait ran out (a guest, its agent, an SSH port, a helper call over SSH)',
    # the root
    'root': 'the root path, or something in the root, breaks a rule (the message names the rule and the fix)',
    'root_missing': 'the root does not exist and the task does not create one (check mode, a read)',
    'root_busy': 'another process (not a helper of this collection) has the root open in libvirt',
    'not_ours': 'the directory has no marker proving it a root of this collection',
    'not_empty': 'the root still holds guests or images that a purge was not told to delete',
    'mount': 'something is mounted below the root, or it spans filesystems',
    'symlink': 'the root path goes through a symbolic link',
    'owner': 'the owner or group given does not exist, or differs from the root\'s',
    'mode': 'a mode that is not octal, or one that lets others write in the root',
    'account': 'the QEMU account of a root of root\'s (or one qemu.conf names) is missing or is another\'s',
    'qemu_conf': "the root's qemu.conf cannot be read or written",
    'os': 'the operating system refused a file operation (the message names the file)',
    'driver_missing': "libvirt's QEMU or secret driver is not installed",
    # archives
    'archive': 'the archive is not one of this collection\'s, or does not match its manifest; nothing was written',
    'src': 'the archive to restore cannot be opened, or is not a regular file with one link',
    'dest': 'where the archive goes cannot be written',
    'dest_exists': 'the archive file exists and force is not set',
    'guest_state': 'a guest of the root would not shut down for the archive',
    'shutdown_timeout': 'a guest did not shut down within shutdown_timeout',
    # domains and snapshots
    'name': 'a domain or snapshot name libvirt would misuse (a path, a control character, too long)',
    'xml': 'the domain XML is not well-formed, or lacks what it needs',
    'no_domain': 'no domain of that name in the root',
    'transient': 'the domain is transient: it cannot be defined or marked autostart as asked',
    'states': 'a domain state filter that is not a state',
    'clone_source': 'linked clones are built on this domain: it cannot be started, marked autostart or written',
    'not_instance': 'the domain has no definition or disk of embedvirt.libvirt.instance for the options given',
    'snapshots': 'the domain has snapshots, so libvirt keeps its definition',
    'no_snapshot': 'no snapshot of that name',
    'exists': 'it exists already (a snapshot of that name, the root a restore would make)',
    'snapshot': 'QEMU refused the snapshot or the revert',
    'memory': 'a memory snapshot of a domain that is not running, or whose firmware libvirt cannot keep',
    'quiesce': 'quiesce asked where it cannot apply, or the guest agent could not freeze the filesystems',
    'disk_format': 'the domain has no disk that QEMU can snapshot by itself (raw, or none)',
    # volumes and images
    'path': 'an image path outside the images directory that allow_outside_root does not allow',
    'format': 'a disk format this operation does not take',
    'size': 'a size that is not a number of bytes with an optional K, M, G or T',
    'shrink': 'a disk would shrink, which loses data',
    'mismatch': 'the image exists with another format, size or backing file than asked',
    'in_use': 'the image is used by a guest, or other images are built on it',
    'passphrase': 'an encrypted image without its passphrase, or with a wrong one',
    'qemu_img': 'qemu-img failed or did not finish in time',
    'image': 'the base image cannot be downloaded, read or used',
    'checksum': 'the image does not match its checksum, or the checksum cannot be had',
    'cloud_init': 'cloud-init data this collection cannot put in a seed',
    'port': 'a port forward that cannot be bound',
    'guests': 'one or more guests of an instances task failed (each one is in failures, with its own error_kind)',
    'secure_boot': 'Secure Boot asked of a guest without UEFI firmware',
    'tpm': "a TPM where swtpm is missing, or in a root whose QEMU has an account of its own",
    'wait_for': 'what wait_for asks cannot happen with these options',
    'disks': 'a data disk of an instance that cannot be (a bad name, a missing size, a path outside images/)',
    # the guest agent
    'agent': 'the guest agent failed the command',
    'agent_unavailable': 'the guest agent does not answer (no channel, or not running in the guest)',
    'agent_disabled': 'the guest agent refuses the command (disabled in its configuration)',
    'agent_reply': 'the guest agent\'s reply is not what the protocol allows',
    'not_running': 'the domain is not running',
    'output': 'a command wrote more output than a reply carries',
    # values
    'value': 'an option value out of range or of the wrong form',
    'uuid': 'a secret UUID that is not one',
    'unsupported': 'this libvirt cannot do it (the message names the version that can)',
}

OPERATIONS = {}


class Operation:
    """One operation: its name, arguments and defaults, whether it changes anything, and
    which argument (if any) is a wait of its own that its call timeout must outlast."""

    def __init__(self, name, arguments, defaults, changes, waits):
        self.name = name
        self.arguments = arguments
        self.defaults = defaults
        self.required = tuple(arg for arg in arguments if arg not in defaults)
        self.changes = changes
        self.waits = waits

    def bind(self, args, kwargs):
        """The arguments of a call as the dict sent (defaults filled in)."""
        if len(args) > len(self.arguments):
            raise TypeError('%s takes at most %d arguments' % (self.name, len(self.arguments)))
        bound = dict(self.defaults)
        bound.update(zip(self.arguments, args))
        bound.update(kwargs)
        return bound

    def problem(self, args):
        """What is wrong with the arguments of a request, or None."""
        if not isinstance(args, dict):
            return 'the arguments of %s are not an object' % self.name
        unknown = sorted(set(args) - set(self.arguments))
        missing = [arg for arg in self.required if arg not in args]
        if unknown or missing:
            return '%s takes %s; %s' % (
                self.name, ', '.join(self.arguments) or 'no arguments',
                '; '.join(what for what in ('unknown: %s' % ', '.join(unknown) if unknown else '',
                                            'missing: %s' % ', '.join(missing) if missing else '') if what))
        return None

    def call_timeout(self, args):
        """Seconds a client waits for the reply."""
        wait = args.get(self.waits) if self.waits else None
        return wait + WAIT_SLACK_SECONDS if isinstance(wait, (int, float)) and wait > 0 else CALL_SECONDS


def operation(changes=False, waits=None):
    """Register the decorated method as an operation; calling it sends the request."""
    def register(method):
        code = method.__code__
        arguments = code.co_varnames[1:code.co_argcount]  # without self
        defaults = dict(zip(arguments[len(arguments) - len(method.__defaults__ or ()):], method.__defaults__ or ()))
        op = Operation(method.__name__, arguments, defaults, changes, waits)
        OPERATIONS[op.name] = op

        def call(self, *args, **kwargs):
            return self.request(op, op.bind(args, kwargs))
        call.__name__ = method.__name__
        call.__doc__ = method.__doc__
        call.operation = op
        return call
    return register


class Control:
    """What a client asks a helper about itself, on one connection."""

    def request(self, op, args):
        raise NotImplementedError

    @operation()
    def hello(self, version=None, idle_timeout=None):
        """The helper's status; it takes idle_timeout when the client runs the same version."""

    @operation()
    def stop(self):
        """Finish the requests in flight, then exit: {stopping, pid, in_flight, drain_seconds}."""


class Operations:
    """What clients ask a root's helper to do: one method per operation."""

    def request(self, op, args):
        raise NotImplementedError

    # --- the helper and libvirt --------------------------------------------------------
    @operation()
    def helper_status(self):
        """pid, uid, version, root, idle_timeout, uptime, requests_served, in_flight, python, libvirt."""

    @operation()
    def versions(self):
        """Versions of libvirt, QEMU and the Python bindings the helper runs."""

    # --- domains -------------------------------------------------------------------------
    @operation()
    def domain_list(self, names=None, states=None):
        """Summaries of the root's domains (name, uuid, id, state, persistent, autostart)."""

    @operation()
    def domain_get(self, name):
        """A domain's summary and XML, or None."""

    @operation()
    def domain_plan(self, name, xml=None):
        """{current, define_xml, wanted_xml}: the domain now, and libvirt's stored form of xml."""

    @operation(changes=True)
    def domain_define(self, xml):
        """Define (or redefine) a domain; the domain after."""

    @operation(changes=True)
    def domain_create(self, xml, paused=False):
        """Start a transient domain; the domain after."""

    @operation(changes=True)
    def domain_start(self, name, paused=False):
        """Start a defined domain."""

    @operation(changes=True)
    def domain_resume(self, name):
        """Resume a paused domain."""

    @operation(changes=True)
    def domain_suspend(self, name):
        """Pause a running domain."""

    @operation(changes=True)
    def domain_destroy(self, name):
        """Power a domain off at once; the domain after (None for a transient one)."""

    @operation(changes=True, waits='timeout')
    def domain_shutdown(self, name, timeout, force=False):
        """Power a domain off gracefully within timeout, then (with force) at once;
        {done, steps, domain}."""

    @operation(changes=True)
    def domain_undefine(self, name, remove_snapshots=False, remove_tpm=False):
        """Remove a domain's definition (its NVRAM stays, and its TPM state unless remove_tpm);
        with remove_snapshots, its snapshots first (libvirt refuses a domain that has any)."""

    # --- events ----------------------------------------------------------------------------
    @operation()
    def events_subscribe(self, events=None, domains=None, queue=EVENTS_QUEUE):
        """Make this connection a subscription to domain events. After the reply ({subscribed,
        root, sequence, events, queue}) the helper sends one {"event": {...}} message per event
        of the types in events (all when None) of the domains named (all when None), and a
        {"heartbeat": time} after HEARTBEAT_SECONDS without one, until the client closes the
        connection or the helper stops. An event has type, root, domain, uuid, time, sequence
        (the helper's counter) and what its type adds (reason, device...). Unread events wait in
        a queue of at most `queue`; the newest are dropped beyond, and an "events_dropped" event
        with their number comes before the next one. A subscription keeps its helper from its
        idle exit."""

    @operation()
    def domain_live_xml(self, name):
        """The definition a domain runs with now (libvirt's live XML, which live changes alter and
        a redefinition does not), or None when it does not run."""

    @operation(changes=True)
    def domain_set_live_record(self, name, text):
        """Put text, an instance's record of its options (see _instance.record), in the live
        definition of a running domain: what it runs with after a change made live."""

    @operation(changes=True)
    def domain_set_memory(self, name, kib):
        """The memory a running guest has, through its balloon (at most its maximum)."""

    @operation(changes=True)
    def domain_set_vcpus(self, name, count):
        """The vCPUs a running guest has, by hotplug (at most its maximum)."""

    @operation(changes=True)
    def domain_attach(self, name, xml):
        """Hot-plug a device (its XML) into a running guest."""

    @operation(changes=True)
    def domain_detach(self, name, xml):
        """Hot-unplug a disk or a card (its XML) from a running guest; {gone, domain}: the guest
        must let go of it, which libvirt waits a few seconds for (it may still go later)."""

    @operation(changes=True)
    def domain_block_resize(self, name, disk, size):
        """Grow a disk (its target) of a running guest to size bytes; QEMU grows the image."""

    @operation(changes=True)
    def domain_set_autostart(self, name, autostart):
        """Whether libvirt starts the domain when the root's driver opens."""

    @operation()
    def domain_clones(self, name):
        """The names of the defined domains whose definition says they are linked clones of name."""

    @operation()
    def domain_disks(self):
        """Every file or block device each domain uses: [{domain, state, path}]."""

    @operation()
    def domain_stats(self, names=None):
        """Each running domain's statistics, by name, from one bulk query of libvirt: cpu_time
        (ns), vcpus, memory (KiB: current, maximum, and what the guest's balloon driver reports),
        disks and interfaces (bytes, requests or packets, and a disk's allocation)."""

    # --- snapshots -----------------------------------------------------------------------
    @operation()
    def snapshot_list(self, name):
        """A domain's snapshots, parents before children: [{name, description, creation_time,
        parent, state, memory, current}]."""

    @operation(changes=True, waits='timeout')
    def snapshot_create(self, name, snapshot, description=None, memory=None, quiesce=False, timeout=60):
        """Take a snapshot: with the running guest's memory (memory true, or None and running),
        else of its disks only (quiesced through the agent within timeout); the snapshot."""

    @operation(changes=True)
    def snapshot_revert(self, name, snapshot):
        """Bring the domain back to a snapshot: a memory snapshot resumes in its saved state,
        a disk snapshot restarts a guest that ran; the domain after."""

    @operation(changes=True)
    def snapshot_delete(self, name, snapshot):
        """Delete a snapshot (its children are kept and take its parent)."""

    # --- guest agent ---------------------------------------------------------------------
    @operation(changes=True)
    def agent(self, name, command, arguments=None, timeout=30):
        """One guest agent command; its 'return' value."""

    @operation()
    def domain_interfaces(self, name):
        """A running guest's network interfaces as its agent reports them:
        [{name, hwaddr, addresses: [{type (ipv4, ipv6), address, prefix}]}]."""

    @operation(waits='timeout')
    def guest_wait_agent(self, name, timeout):
        """Wait until the guest agent answers; its guest-info."""

    @operation(changes=True, waits='timeout')
    def guest_exec(self, name, argv, input_data=None, env=None, timeout=None):
        """Run argv in the guest and wait: {rc, signal, stdout, stderr (base64), truncated}."""

    @operation(changes=True)
    def guest_file_write(self, name, path, data, append=False):
        """Write data (base64) to a file in the guest: {written}."""

    @operation()
    def guest_file_read(self, name, path, offset=0, length=FILE_READ_BYTES):
        """Read up to length (at most FILE_READ_BYTES) bytes at offset of a file in the guest:
        {data (base64), eof}."""

    # --- secrets -------------------------------------------------------------------------
    @operation()
    def secret_get(self, uuid=None, usage_type=None, usage_id=None):
        """The secret with this uuid, or else with this usage (no value), or None."""

    @operation(changes=True)
    def secret_define(self, xml):
        """Define (or redefine) a secret; its detail."""

    @operation()
    def secret_value_matches(self, uuid, value):
        """Whether the secret holds value (base64); None when that cannot be known."""

    @operation(changes=True)
    def secret_set_value(self, uuid, value):
        """Set the secret's value (base64); its detail."""

    @operation(changes=True)
    def secret_undefine(self, uuid):
        """Remove a secret; the helper restarts to forget it: {restart}."""


def peer_credentials(sock):
    """(pid, uid, gid) of the process at the other end of a UNIX socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize('3i'))
    return struct.unpack('3i', creds)


def process_argv(pid):
    """The command line of a process, or [] when it is gone."""
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return [part.decode('utf-8', 'replace') for part in f.read().rstrip(b'\0').split(b'\0')]
    except OSError:
        return []


def helper_argv(root, idle_timeout):
    """The arguments of a helper of root, after the Python that runs it."""
    return [HELPER_FLAG, '--root', root, '--idle-timeout', str(idle_timeout)]


def is_helper_of(pid, root):
    """Whether process pid is a helper of root, by its command line."""
    argv = process_argv(pid)
    return HELPER_FLAG in argv and root in argv[argv.index(HELPER_FLAG):]


def encode(message):
    """One message as the line sent."""
    return (json.dumps(message, separators=(',', ':'), sort_keys=True) + '\n').encode('utf-8')


def decode(line):
    """A message from a line (without its newline); ValueError if it is not JSON."""
    return json.loads(line.decode('utf-8'))


def request_message(request_id, op, args, timeout):
    return {'id': request_id, 'op': op.name, 'args': args, 'timeout': timeout}


def reply_message(request_id, result=None, error=None):
    if error is not None:
        return {'id': request_id, 'ok': False, 'error': error}
    return {'id': request_id, 'ok': True, 'result': result}


class MessageTooLong(Exception):
    """A line longer than MAX_MESSAGE_BYTES: the sender is broken or hostile."""


class FrameReader:
    """Lines from a socket or a pipe, each whole within a deadline and MAX_MESSAGE_BYTES.

    read() returns a line without its newline, None when the other end closed first (a line
    cut off counts as closed), or raises TimeoutError (what was read so far is kept for the
    next read) or MessageTooLong, before buffering more than the limit. gate, if given, is
    asked (with the seconds left) once a line's buffer holds SMALL_MESSAGE_BYTES, before it
    grows on; a False answer is a TimeoutError, the line kept for the next read.
    """

    def __init__(self, fd, limit=MAX_MESSAGE_BYTES, gate=None):
        self.fd = fd
        self.limit = limit
        self.gate = gate
        # One buffer grown in place, searched for the newline only where it has not been yet:
        # a 16 MiB line costs one pass, not one copy and one scan per chunk.
        self.buffer = bytearray()
        self.scanned = 0
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)

    def read(self, timeout):
        deadline = time.time() + timeout
        end = self.buffer.find(b'\n', self.scanned)
        while end < 0:
            self.scanned = len(self.buffer)
            if self.scanned > self.limit:
                raise MessageTooLong()
            if self.scanned >= SMALL_MESSAGE_BYTES and self.gate and not self.gate(deadline - time.time()):
                raise TimeoutError()
            remaining = deadline - time.time()
            if remaining <= 0 or not self.poller.poll(remaining * 1000):
                raise TimeoutError()
            try:
                chunk = os.read(self.fd, min(1 << 16, self.limit + 1 - self.scanned))
            except BlockingIOError:
                continue
            if not chunk:
                return None
            self.buffer += chunk
            end = self.buffer.find(b'\n', self.scanned)
        with memoryview(self.buffer) as view:
            line = bytes(view[:end])
        del self.buffer[:end + 1]
        self.scanned = 0
        return line
