# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A helper of a root that speaks the real protocol over a real socket, without libvirt.

It listens at <root>/run/embedvirt/helper.sock of a fresh root, reads requests with
_protocol.FrameReader, checks them against _protocol.OPERATIONS as the real helper does, and
answers from plain dicts a test sets up and inspects afterwards: `domains`, `secrets`,
`files` (the guest's), `command` (what a guest command does) and `requests` (every request,
in order). An operation is a method of the same name; one this fake lacks is an internal
error, like a bug in the real helper.
"""

import base64
import hashlib
import os
import shutil
import socketserver
import tempfile
import threading
import uuid
from xml.etree import ElementTree

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _protocol, _root
from ansible_collections.embedvirt.libvirt.plugins.module_utils._bundle import helper_bundle

# What every guest agent answers guest-info with: the commands the connection needs, enabled.
AGENT_COMMANDS = ('guest-ping', 'guest-info', 'guest-exec', 'guest-exec-status', 'guest-file-open',
                  'guest-file-read', 'guest-file-write', 'guest-file-seek', 'guest-file-close')


class FakeError(Exception):
    """An error reply: kind, message and the fix, as the real helper sends them."""

    def __init__(self, kind, message, hint=None):
        super().__init__(message)
        self.error = {'kind': kind, 'message': message, 'hint': hint}


class FakeHelper:
    """A root with a helper in a thread; use it as a context manager (or the fake_helper fixture)."""

    def __init__(self):
        # Short enough for the socket the fake helper binds at its path; private, in sticky /tmp, as _root requires.
        self.root = tempfile.mkdtemp(prefix='evt-u-', dir='/tmp')
        for relative in _root.LAYOUT:
            os.makedirs(os.path.join(self.root, relative), mode=0o700, exist_ok=True)
        self.version = helper_bundle()[1]  # the version clients of this checkout expect
        self.domains = {}      # name -> {name, uuid, id, state, state_reason, persistent, autostart, xml}
        self.secrets = {}      # uuid -> {uuid, usage_type, usage_id, description, private, ephemeral, value}
        self.libvirt_version = '9.0.0'
        self.files = {}        # path in the guest -> bytes
        self.agent_info = {'version': '7.2.0', 'supported_commands': [{'name': c, 'enabled': True}
                                                                      for c in AGENT_COMMANDS]}
        # What a guest command does: (argv, stdin bytes, env) -> (rc, stdout bytes, stderr bytes).
        self.command = lambda argv, stdin, env: (0, b'', b'')
        self.refusals = {}     # op name -> error reply, for every request of that op
        self.requests = []     # (op name, args) of every request, hello included
        self.lock = threading.Lock()
        self.closed = threading.Event()  # tells the connections' threads to end
        self.next_id = 1
        self.server = socketserver.ThreadingUnixStreamServer(os.path.join(self.root, _root.SOCKET), Handler)
        self.server.daemon_threads = True
        self.server.fake = self
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.root)

    # --- what tests set up and ask ---------------------------------------------------
    def add_domain(self, name, state='shutoff', persistent=True, autostart=False, xml=None, **extra):
        """A domain as libvirt would list it; extra keys steer the fake: ignores_shutdown,
        interfaces (what its agent reports; without it the guest has no agent), snapshots (names) and clone_of (the
        source of a linked clone)."""
        running = state in _protocol.ACTIVE_STATES
        self.domains[name] = dict(name=name, uuid=str(uuid.uuid4()), id=self.take_id() if running else None,
                                  state=state, state_reason=1, persistent=persistent, autostart=autostart,
                                  xml=xml or '<domain type="qemu"><name>%s</name></domain>' % name, **extra)
        return self.domains[name]

    def refuse(self, op, kind, message, hint=None):
        """Answer every request of op with this error."""
        self.refusals[op] = FakeError(kind, message, hint).error

    def ops(self):
        """The operations asked for, in order, without the client's hello."""
        return [op for op, _args in self.requests if op != 'hello']

    def changes(self):
        """The requests that change something (what check mode must never send)."""
        return [(op, args) for op, args in self.requests if _protocol.OPERATIONS[op].changes]

    def args_of(self, op):
        """The arguments of every request of op."""
        return [args for name, args in self.requests if name == op]

    # --- the protocol ----------------------------------------------------------------
    def answer(self, line):
        """The reply to one request line, as the real helper's answer() makes it."""
        request = _protocol.decode(line)
        op = _protocol.OPERATIONS.get(request.get('op'))
        args = request.get('args')
        try:
            if op is None:
                raise FakeError(_protocol.ERROR_PROTOCOL, 'unknown operation %r' % request.get('op'))
            problem = op.problem(args)
            if problem:
                raise FakeError(_protocol.ERROR_PROTOCOL, problem)
            with self.lock:
                self.requests.append((op.name, args))
                if op.name in self.refusals:
                    raise FakeError(**self.refusals[op.name])
                method = getattr(self, op.name, None)
                if method is None:
                    raise FakeError(_protocol.ERROR_INTERNAL, 'the fake helper does not implement %s' % op.name)
                return _protocol.reply_message(request.get('id'), result=method(**dict(op.defaults, **args)))
        except FakeError as e:
            return _protocol.reply_message(request.get('id'), error=e.error)

    def take_id(self):
        self.next_id += 1
        return self.next_id

    # --- Control ---------------------------------------------------------------------
    def hello(self, version, idle_timeout):
        # What HelperClient checks: this root, the pid at the other end of the socket, its version.
        return {'root': self.root, 'pid': os.getpid(), 'uid': os.geteuid(), 'version': self.version,
                'protocol': _protocol.PROTOCOL, 'idle_timeout': idle_timeout, 'in_flight': [],
                'qemu': {'uid': None, 'gid': None, 'kvm': False, 'kvm_hidden': False}}

    # --- the helper and libvirt --------------------------------------------------------
    def helper_status(self):
        return {'pid': os.getpid(), 'uid': os.geteuid(), 'version': self.version, 'root': self.root,
                'libvirt': self.versions()['libvirt']}

    def versions(self):
        return {'libvirt': self.libvirt_version, 'qemu': '7.2.0', 'python_libvirt': self.libvirt_version}

    # --- domains ---------------------------------------------------------------------
    def stored_form(self, xml):
        """libvirt's stored form of a definition: here canonical XML without blank text."""
        return ElementTree.canonicalize(xml, strip_text=True)

    def detail(self, name):
        domain = self.domains.get(name)
        return None if domain is None else dict((key, domain[key]) for key in (
            'name', 'uuid', 'id', 'state', 'state_reason', 'persistent', 'autostart', 'xml'))

    def required(self, name):
        if name not in self.domains:
            raise FakeError('no_domain', "domain '%s' is not defined in root %s" % (name, self.root),
                            'give xml to define it, or check the name with embedvirt.libvirt.domain_info')
        return self.domains[name]

    def set_state(self, name, state):
        domain = self.required(name)
        domain['state'] = state
        if state not in _protocol.ACTIVE_STATES:
            domain['id'] = None
            if not domain['persistent']:
                del self.domains[name]  # a transient domain is gone once off
        elif domain['id'] is None:
            domain['id'] = self.take_id()
        return self.detail(name)

    def domain_list(self, names, states):
        unknown = sorted(set(states or ()) - set(_protocol.DOMAIN_STATES))
        if unknown:
            raise FakeError('states', 'unknown domain state(s) %s' % ', '.join(unknown),
                            'use states among %s' % ', '.join(_protocol.DOMAIN_STATES))
        return [dict((k, v) for k, v in self.detail(name).items() if k != 'xml') for name in sorted(self.domains)
                if (not names or name in names) and (not states or self.domains[name]['state'] in states)]

    def domain_get(self, name):
        return self.detail(name)

    def domain_plan(self, name, xml):
        return {'current': self.detail(name), 'define_xml': xml, 'wanted_xml': self.stored_form(xml) if xml else None}

    def domain_define(self, xml):
        name = ElementTree.fromstring(xml).findtext('name').strip()
        domain = self.domains.get(name) or self.add_domain(name)
        domain.update(xml=self.stored_form(xml), persistent=True)
        return self.detail(name)

    def domain_start(self, name, paused):
        return self.set_state(name, 'paused' if paused else 'running')

    def domain_resume(self, name):
        return self.set_state(name, 'running')

    def domain_suspend(self, name):
        return self.set_state(name, 'paused')

    def domain_destroy(self, name):
        return self.set_state(name, 'shutoff')

    def domain_shutdown(self, name, timeout, force):
        steps = ['resume', 'shutdown'] if self.required(name)['state'] == 'paused' else ['shutdown']
        if self.domains[name].get('ignores_shutdown'):
            if not force:
                return {'done': False, 'steps': steps, 'domain': self.set_state(name, 'running')}
            steps.append('destroy')
        return {'done': True, 'steps': steps, 'domain': self.set_state(name, 'shutoff')}

    def domain_clones(self, name):
        return sorted(clone for clone, domain in self.domains.items() if domain.get('clone_of') == name)

    def snapshot_list(self, name):
        names = self.required(name).get('snapshots', [])
        return [dict(name=snapshot, description=None, creation_time=index + 1, parent=names[index - 1] if index else None,
                     state='shutoff', memory=False, current=index == len(names) - 1)
                for index, snapshot in enumerate(names)]

    def snapshot_create(self, name, snapshot, description, memory, quiesce, timeout):
        self.required(name).setdefault('snapshots', []).append(snapshot)
        return dict(self.snapshot_list(name)[-1], memory=memory)

    def snapshot_delete(self, name, snapshot):
        self.required(name)['snapshots'].remove(snapshot)

    def snapshot_revert(self, name, snapshot):
        return self.detail(name)

    def domain_undefine(self, name, remove_snapshots=False, remove_tpm=False):
        domain = self.required(name)
        if domain.get('snapshots') and not remove_snapshots:
            raise FakeError('snapshots', "domain '%s' has snapshots" % name)
        if domain['state'] in _protocol.ACTIVE_STATES:
            domain.update(persistent=False, autostart=False)
        else:
            del self.domains[name]
        return self.detail(name)

    def domain_set_autostart(self, name, autostart):
        self.required(name)['autostart'] = autostart
        return self.detail(name)

    def domain_disks(self):
        return [{'domain': name, 'state': domain['state'], 'path': source.get('file')}
                for name, domain in sorted(self.domains.items())
                for source in ElementTree.fromstring(domain['xml']).iter('source') if source.get('file')]

    # --- guest agent -----------------------------------------------------------------
    def running_guest(self, name):
        if self.required(name)['state'] != 'running':
            raise FakeError('agent_unavailable', 'the guest agent of domain %s is not connected' % name,
                            'start the domain')

    def domain_interfaces(self, name):
        self.running_guest(name)
        if 'interfaces' not in self.domains[name]:
            raise FakeError('agent_unavailable', "the guest agent of domain '%s' does not answer: QEMU guest "
                            "agent is not configured" % name, 'give the domain a guest agent channel')
        return self.domains[name]['interfaces']

    def guest_wait_agent(self, name, timeout):
        self.running_guest(name)
        return self.agent_info

    def guest_exec(self, name, argv, input_data, env, timeout):
        self.running_guest(name)
        stdin = base64.b64decode(input_data) if input_data else b''
        if argv[:2] == ['/bin/sh', '-c'] and 'sha256sum' in argv[2]:  # what the connection verifies transfers with
            data = self.files.get(argv[3])
            rc, out, err = (1, b'', b'sha256sum: No such file\n') if data is None else (
                0, ('%s  %s\n' % (hashlib.sha256(data).hexdigest(), argv[3])).encode(), b'')
        else:
            rc, out, err = self.command(argv, stdin, env)
        return {'rc': rc, 'signal': None, 'stdout': base64.b64encode(out).decode('ascii'),
                'stderr': base64.b64encode(err).decode('ascii'), 'truncated': False}

    def guest_file_write(self, name, path, data, append):
        self.running_guest(name)
        raw = base64.b64decode(data)
        self.files[path] = (self.files.get(path, b'') if append else b'') + raw
        return {'written': len(raw)}

    def guest_file_read(self, name, path, offset, length):
        self.running_guest(name)
        if path not in self.files:
            raise FakeError('agent', "guest-file-open of %s failed: No such file or directory" % path)
        data = self.files[path][offset:offset + length]
        return {'data': base64.b64encode(data).decode('ascii'), 'eof': offset + len(data) >= len(self.files[path])}

    # --- secrets ---------------------------------------------------------------------
    def secret_get(self, uuid, usage_type, usage_id):
        for secret in self.secrets.values():
            if secret['uuid'] == uuid or (uuid is None and (secret['usage_type'], secret['usage_id']) == (usage_type, usage_id)):
                return dict((k, v) for k, v in secret.items() if k != 'value')
        return None

    def secret_define(self, xml):
        tree = ElementTree.fromstring(xml)
        usage = tree.find('usage')
        secret_uuid = tree.findtext('uuid') or str(uuid.uuid4())
        secret = self.secrets.setdefault(secret_uuid, {'value': None})
        secret.update(uuid=secret_uuid, usage_type=usage.get('type') if usage is not None else 'none',
                      usage_id=usage[0].text if usage is not None else None,
                      description=tree.findtext('description'), private=tree.get('private') == 'yes',
                      ephemeral=tree.get('ephemeral') == 'yes')
        return self.secret_get(secret_uuid, None, None)

    def secret_value_matches(self, uuid, value):
        return self.secrets[uuid]['value'] == base64.b64decode(value)

    def secret_set_value(self, uuid, value):
        self.secrets[uuid]['value'] = base64.b64decode(value)
        return self.secret_get(uuid, None, None)

    def secret_undefine(self, uuid):
        del self.secrets[uuid]
        return {'restart': True}


class Handler(socketserver.BaseRequestHandler):
    """One client connection: requests answered in order, one line each."""

    def handle(self):
        reader = _protocol.FrameReader(self.request.fileno())
        while True:
            try:
                line = reader.read(0.2)
            except TimeoutError:
                if self.server.fake.closed.is_set():
                    return
                continue
            if line is None:
                return
            self.request.sendall(_protocol.encode(self.server.fake.answer(line)))
