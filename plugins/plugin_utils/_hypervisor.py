# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Where a root's helper runs, for the controller-side plugins: this machine, or a hypervisor
reached over SSH.

For a remote hypervisor one `ssh` process carries a relay: a small Python program, sent with
this collection's client code over the SSH session itself (nothing is installed there), that
starts or finds the root's helper on that host exactly as a module would and passes each
request on. The remote host needs what modules need: a Python, and the libvirt bindings for
the Python that runs the helper there (which need not be the relay's).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _bundle, _protocol
from ansible_collections.embedvirt.libvirt.plugins.module_utils._client import HelperClient, HelperClientError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import Operations
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import EmbedRoot

# Reuse one SSH connection for the many short sessions of a play, as the ssh connection does.
DEFAULT_SSH_ARGS = ('-o', 'ControlMaster=auto', '-o', 'ControlPersist=60s',
                    '-o', 'ControlPath=~/.ansible/cp/embedvirt-%C')
# Extra time allowed on top of a call's own timeout for the round trip over SSH.
TRANSPORT_SLACK = 30
# Runs on the hypervisor. Line 1 of its stdin is this program, line 2 the root and the bundle
# of the client's modules, then one request per line (_protocol's messages, both ways). A
# subscription's messages are passed on until either side ends the session.
RELAY = r'''
import importlib, json, sys

stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
setup = json.loads(stdin.readline())
exec(setup['importer'], {'BUNDLE_SOURCES': setup['sources']})
protocol = importlib.import_module(setup['package'] + '._protocol')
client = importlib.import_module(setup['package'] + '._client')
RootError = importlib.import_module(setup['package'] + '._root').RootError
helper = None
for line in stdin:
    request = protocol.decode(line.rstrip(b'\n'))
    op = protocol.OPERATIONS.get(request['op'])
    try:
        if op is None:
            raise client.HelperClientError('the relay has no operation %r' % request['op'], protocol.ERROR_PROTOCOL)
        helper = helper or client.HelperClient(setup['root'], python=setup['helper_python'], create=False)
        if op.name != 'events_subscribe':
            reply = protocol.reply_message(request['id'], result=helper.request(op, request['args']))
        else:
            result, messages = helper.subscribe(**request['args'])
            stdout.write(protocol.encode(protocol.reply_message(request['id'], result=result)))
            stdout.flush()
            # Until the helper ends it (an error reply follows) or the session goes (EPIPE).
            for message in messages:
                stdout.write(protocol.encode(message))
                stdout.flush()
    except client.HelperClientError as e:
        reply = protocol.reply_message(request['id'], error=e.to_dict())
    except RootError as e:
        reply = protocol.reply_message(request['id'], error={'message': str(e), 'kind': 'root'})
    stdout.write(protocol.encode(reply))
    stdout.flush()
'''

# What the remote Python runs first: the relay, from the session's first line.
BOOT = 'import json,sys;exec(json.loads(sys.stdin.buffer.readline()))'


def helper_client(root_path, hypervisor=None, ssh_args=None, python=None, helper_python=None):
    """A client of the root's helper: HelperClient here, RemoteHelperClient on `hypervisor`
    (python runs the relay there; helper_python, if given, the helper, on the root's host).

    Plugins never create a root: a missing one is a mistyped path, not a wish.
    """
    if not hypervisor:
        return HelperClient(root_path, python=helper_python, create=False)
    return RemoteHelperClient(root_path, hypervisor, ssh_args, python, helper_python)


def split_ssh_args(value):
    """ssh arguments given as one string (like ansible_ssh_common_args) or as a list."""
    if not value:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(arg) for arg in value]


class RemoteHelperClient(Operations):
    """HelperClient's operations and close() for a root on another host, through one SSH session."""

    def __init__(self, root_path, hypervisor, ssh_args=None, python=None, helper_python=None):
        self.root = EmbedRoot(root_path)  # the path rules hold wherever the root is
        self.hypervisor = hypervisor
        self.ssh_args = list(DEFAULT_SSH_ARGS) + split_ssh_args(ssh_args)
        self.python = python or 'python3'
        self.helper_python = helper_python or None
        self.process = None
        self.reader = None
        self.errors = None
        self.next_id = 0
        self.subscribed = False

    def request(self, op, args):
        if self.process is None:
            self._start()
        self.next_id += 1
        call_timeout = op.call_timeout(args)
        try:
            self.process.stdin.write(_protocol.encode(_protocol.request_message(self.next_id, op, args, call_timeout)))
            self.process.stdin.flush()
        except OSError:
            raise self._session_ended(op.name)
        timeout = call_timeout + TRANSPORT_SLACK
        try:
            line = self.reader.read(timeout)
        except (TimeoutError, _protocol.MessageTooLong):
            self.close()
            raise HelperClientError('hypervisor %s did not answer %s within %d s' % (self.hypervisor, op.name, timeout),
                                    'timeout')
        if line is None:
            raise self._session_ended(op.name)
        reply = _protocol.decode(line)
        if not reply['ok']:
            raise HelperClientError.from_reply(reply['error'])
        return reply['result']

    def subscribe(self, events=None, domains=None, queue=None):
        """(reply, messages) of a subscription over this session, as HelperClient.subscribe."""
        args = dict(events=events, domains=domains)
        if queue is not None:
            args['queue'] = queue
        reply = self.events_subscribe(**args)
        self.subscribed = True
        return reply, self._messages()

    def _messages(self):
        silence = _protocol.HEARTBEAT_SECONDS * _protocol.HEARTBEAT_MISSED + TRANSPORT_SLACK
        while True:
            try:
                line = self.reader.read(silence)
            except (TimeoutError, _protocol.MessageTooLong):
                self.close()
                raise HelperClientError('hypervisor %s sent no event nor heartbeat within %d s'
                                        % (self.hypervisor, silence), 'timeout')
            if line is None:
                raise self._session_ended('events_subscribe')
            try:
                message = _protocol.decode(line)
            except ValueError as e:
                self.close()
                raise HelperClientError('hypervisor %s sent a subscription something that is not JSON: %s'
                                        % (self.hypervisor, e), _protocol.ERROR_PROTOCOL)
            if 'error' in message:
                raise HelperClientError.from_reply(message['error'])
            yield message

    def close(self):
        if self.process is not None:
            if self.subscribed:
                self.process.kill()  # the relay streams and reads nothing more from us
            try:
                self.process.stdin.close()
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
            self.process.stdout.close()
            self.errors.close()
            self.process = None
            self.reader = None

    @property
    def command(self):
        """The ssh command line; the remote side reads its program from the session."""
        remote = [self.python, '-c', BOOT]
        return (['ssh', '-o', 'BatchMode=yes'] + self.ssh_args
                + [self.hypervisor, '--', ' '.join(shlex.quote(arg) for arg in remote)])

    def _start(self):
        os.makedirs(os.path.expanduser('~/.ansible/cp'), mode=0o700, exist_ok=True)
        self.errors = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=self.errors)
        except OSError as e:
            raise HelperClientError('cannot run ssh to reach hypervisor %s: %s' % (self.hypervisor, e),
                                    'connection', 'install the OpenSSH client on the controller')
        self.reader = _protocol.FrameReader(self.process.stdout.fileno())
        setup = dict(_bundle.relay_setup(), root=self.root.path, helper_python=self.helper_python)
        try:
            self.process.stdin.write(json.dumps(RELAY).encode() + b'\n' + _protocol.encode(setup))
            self.process.stdin.flush()
        except OSError:
            raise self._session_ended('start')

    def _session_ended(self, op):
        code = self.process.wait()
        self.errors.seek(0)
        said = self.errors.read().decode('utf-8', 'replace').strip()[-2000:]
        self.close()
        return HelperClientError(
            'the SSH session to hypervisor %s ended during %s (exit status %s): %s'
            % (self.hypervisor, op, code, said or 'no message'), 'connection',
            'check that "ssh %s %s %s -V" works without a password prompt and that the host has '
            'a Python with the libvirt bindings (python3-libvirt)'
            % (' '.join(shlex.quote(arg) for arg in self.ssh_args), self.hypervisor, self.python))
