# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Where a root's helper runs, for the controller-side plugins: this machine, or a hypervisor
reached over SSH.

For a remote hypervisor one `ssh` process carries a relay: a small Python program, sent with
this collection's client code over the SSH session itself (nothing is installed there), that
starts or finds the root's helper on that host exactly as a module would and passes each
request on. The remote host needs what modules need: python3 and the libvirt bindings.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import tempfile

from ansible_collections.embedvirt.libvirt.plugins.module_utils import (
    _client as client, helper_server, _qemu_conf as qemu_conf, _root as root)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._client import (
    CALL_TIMEOUT, HelperClient, HelperClientError, module_source, read_line)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import EmbedRoot

# Reuse one SSH connection for the many short sessions of a play, as the ssh connection does.
DEFAULT_SSH_ARGS = ('-o', 'ControlMaster=auto', '-o', 'ControlPersist=60s',
                    '-o', 'ControlPath=~/.ansible/cp/embedvirt-%C')
# Extra time allowed on top of a call's own timeout for the round trip over SSH.
TRANSPORT_SLACK = 30

# Runs on the hypervisor. Line 1 of its stdin is this program, line 2 the root and the code
# of the package's client modules (base64), then one JSON request per line.
RELAY = r'''
import base64, importlib.abc, importlib.util, json, sys

class Bundle(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports the client modules sent over stdin; helper_source() reads them back via get_data."""
    def __init__(self, sources):
        self.sources = sources
    def find_spec(self, name, path=None, target=None):
        if name in self.sources:
            return importlib.util.spec_from_loader(name, self, origin=name)
        if any(module.startswith(name + '.') for module in self.sources):
            return importlib.util.spec_from_loader(name, self, is_package=True)
        return None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        if module.__name__ in self.sources:
            module.__file__ = module.__name__
            exec(compile(self.sources[module.__name__], module.__name__, 'exec'), module.__dict__)
    def get_data(self, path):
        return self.sources[path]

stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
setup = json.loads(stdin.readline())
sys.meta_path.insert(0, Bundle({name: base64.b64decode(code) for name, code in setup['sources'].items()}))
package = setup['package']
client = importlib.import_module(package + '._client')
RootError = importlib.import_module(package + '._root').RootError
helper = None
for line in stdin:
    request = json.loads(line)
    try:
        helper = helper or client.HelperClient(setup['root'], create=False)
        reply = {'ok': True, 'result': helper.call(request['op'], call_timeout=request['call_timeout'],
                                                   **request['args'])}
    except client.HelperClientError as e:
        reply = {'ok': False, 'error': {'message': e.args[0], 'kind': e.kind, 'hint': e.hint, 'pid': e.pid}}
    except RootError as e:
        reply = {'ok': False, 'error': {'message': str(e), 'kind': 'root'}}
    stdout.write(json.dumps(reply).encode() + b'\n')
    stdout.flush()
'''

# What the remote Python runs first: the relay, from the session's first line.
BOOT = 'import json,sys;exec(json.loads(sys.stdin.buffer.readline()))'


def helper_client(root_path, hypervisor=None, ssh_args=None, python=None):
    """A client of the root's helper: HelperClient here, RemoteHelperClient on `hypervisor`.

    Plugins never create a root: a missing one is a mistyped path, not a wish.
    """
    if not hypervisor:
        return HelperClient(root_path, create=False)
    return RemoteHelperClient(root_path, hypervisor, ssh_args, python)


def split_ssh_args(value):
    """ssh arguments given as one string (like ansible_ssh_common_args) or as a list."""
    if not value:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(arg) for arg in value]


class RemoteHelperClient:
    """HelperClient's call() and close() for a root on another host, through one SSH session."""

    def __init__(self, root_path, hypervisor, ssh_args=None, python=None):
        self.root = EmbedRoot(root_path)  # the path rules hold wherever the root is
        self.hypervisor = hypervisor
        self.ssh_args = list(DEFAULT_SSH_ARGS) + split_ssh_args(ssh_args)
        self.python = python or 'python3'
        self.process = None
        self.errors = None

    def call(self, op, call_timeout=CALL_TIMEOUT, **args):
        if self.process is None:
            self._start()
        try:
            self.process.stdin.write(helper_server.encode({'op': op, 'args': args, 'call_timeout': call_timeout}))
            self.process.stdin.flush()
        except OSError:
            raise self._session_ended(op)
        timeout = call_timeout + TRANSPORT_SLACK
        try:
            line = read_line(self.process.stdout, timeout)
        except TimeoutError:
            self.close()
            raise HelperClientError('hypervisor %s did not answer %s within %d s' % (self.hypervisor, op, timeout),
                                    'timeout')
        if line is None:
            raise self._session_ended(op)
        reply = helper_server.decode(line)
        if not reply['ok']:
            raise HelperClientError.from_reply(reply['error'])
        return reply['result']

    def close(self):
        if self.process is not None:
            try:
                self.process.stdin.close()
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
            self.process.stdout.close()
            self.errors.close()
            self.process = None

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
        package = client.__name__.rsplit('.', 1)[0]
        setup = {'root': self.root.path, 'package': package,
                 'sources': {module.__name__: base64.b64encode(module_source(module)).decode('ascii')
                             for module in (client, helper_server, qemu_conf, root)}}
        try:
            self.process.stdin.write(json.dumps(RELAY).encode() + b'\n' + helper_server.encode(setup))
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
            'python3 with the libvirt bindings'
            % (' '.join(shlex.quote(arg) for arg in self.ssh_args), self.hypervisor, self.python))
