# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""The helper's guest agent operations (agent and guest_* in _protocol.Operations): commands,
programs and files in a running guest, through qemu-guest-agent."""

import base64
import json
import time
import uuid

from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.drivers import DriverUser
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.errors import (
    HelperError, explain_agent_error)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._network import guest_interfaces, host_addresses
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import AGENT_CHUNK_BYTES

AGENT_CALL_SECONDS = 30
# How long a guest may be too busy to answer libvirt's sync before its agent counts as gone.
AGENT_BUSY_SECONDS = 120
REPEATABLE_AGENT_COMMANDS = ('guest-ping', 'guest-info', 'guest-exec-status')
# Largest standard input (base64) sent inside a guest-exec message.
AGENT_INPUT_DATA_BYTES = 64 * 1024
# Where a larger input goes (a new directory of the agent's user, mode 0700, its file 'stdin'),
# and how the command's shell takes it: open, remove both, then run the command on it.
STDIN_DIRECTORY = '/tmp/.embedvirt-stdin-%s'
STDIN_SCRIPT = 'exec <"$0/stdin" && rm -f -- "$0/stdin" && rmdir -- "$0" && exec "$@"'
# How long a query of addresses waits for an agent that is connected but silent (libvirt's own
# wait is 5 s), so that listing many guests stays quick.
ADDRESSES_AGENT_SECONDS = 2


# What the guest agent answers is the guest's word (libvirt bounds a reply to 10 MB): its type
# is checked before it is used, and a wrong one is the agent's error, not the helper's.
def agent_return(reply, name, command):
    """The 'return' value of an agent's reply, which must be a JSON object."""
    try:
        message = json.loads(reply)
    except ValueError:
        message = None
    return guest_value(message, dict, name, command, 'reply').get('return')


def guest_value(value, kind, name, command, what):
    """value, when it is of kind (a type or a tuple of types; a bool is no int); else HelperError."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise wrong_answer(name, command, what, ' or '.join(
            each.__name__ for each in (kind if isinstance(kind, tuple) else (kind,))), value)
    return value


def guest_base64(value, name, command, what):
    """value, when it is base64 text; else HelperError."""
    try:
        base64.b64decode(guest_value(value, str, name, command, what), validate=True)
    except ValueError:
        raise wrong_answer(name, command, what, 'base64 text', value)
    return value


def wrong_answer(name, command, what, expected, value):
    return HelperError('agent', "the guest agent of domain '%s' answered %s with a %s that is not %s: %.80r"
                       % (name, command, what, expected, value), 'run a genuine qemu-guest-agent in the guest')


class GuestAgent(DriverUser):
    """The guest agents of the root's running domains."""

    def __init__(self, drivers, domains):
        super().__init__(drivers)
        self.domains = domains

    def agent(self, name, command, arguments=None, timeout=AGENT_CALL_SECONDS):
        """One guest agent command; its 'return' value."""
        dom = self.domains.domain_required(name)
        request = {'execute': command}
        if arguments is not None:
            request['arguments'] = arguments
        deadline = time.time() + AGENT_BUSY_SECONDS
        while True:
            started = time.time()
            try:
                reply = self.drivers.libvirt_qemu.qemuAgentCommand(dom, json.dumps(request), int(timeout), 0)
                return agent_return(reply, name, command)
            except self.libvirt.libvirtError as e:
                # libvirt says this when the agent does not answer in time: its guest-sync
                # before the command (5 s, a busy guest) or the command itself. A failure
                # well before our timeout was the sync, so the command was never sent and
                # may be asked again; a command that only reads may always be.
                unsent = time.time() - started < timeout - 1 or command in REPEATABLE_AGENT_COMMANDS
                if 'not available for now' not in str(e) or not unsent or time.time() >= deadline:
                    raise explain_agent_error(str(e), name, command)
            time.sleep(0.5)

    def domain_interfaces(self, name):
        """The guest's interfaces and addresses from its agent, sorted by name (_network.guest_interfaces)."""
        dom = self.domains.domain_required(name)
        libvirt = self.libvirt
        try:
            # The domain's agent timeout, for this query only (other agent calls give their own).
            dom.agentSetResponseTimeout(ADDRESSES_AGENT_SECONDS)
            try:
                found = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT)
            finally:
                dom.agentSetResponseTimeout(libvirt.VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:  # a transient guest that just went away
                raise HelperError('no_domain', "domain '%s' is gone: %s" % (name, e),
                                  'check the name with embedvirt.libvirt.domain_info')
            raise explain_agent_error(str(e), name, 'guest-network-get-interfaces')
        # The guest's word, checked here for every client: no address of this host, nor one
        # that is nobody's, may become the address that a playbook or an inventory reaches it at.
        return guest_interfaces(found, host_addresses())

    def guest_wait_agent(self, name, timeout):
        """Wait until the guest agent answers a ping; its info (version, enabled commands)."""
        deadline = time.time() + timeout
        while True:
            try:
                self.agent(name, 'guest-ping', timeout=AGENT_CALL_SECONDS)
                return guest_value(self.agent(name, 'guest-info'), dict, name, 'guest-info', 'reply')
            except HelperError as e:
                if e.kind != 'agent_unavailable' or time.time() >= deadline:
                    if e.kind == 'agent_unavailable':
                        e.message = '%s (waited %d s)' % (e.message, timeout)
                    raise
            time.sleep(0.5)

    def guest_exec(self, name, argv, input_data, env, timeout):
        """Run argv in the guest, wait for it; exit code and output (base64).

        Polls guest-exec-status here, next to the agent, so a command costs the client one
        request however long it runs.
        """
        if not input_data or len(input_data) <= AGENT_INPUT_DATA_BYTES:
            return self.run(name, argv, input_data, env, timeout)
        # qemu-ga drops a guest-exec message this large (pipelined modules are): the command
        # reads its input from a file instead. guest-file-open makes files any guest user can
        # read, so the file goes into a new directory only the agent's user may enter; the
        # command's shell opens it and removes both before the command runs.
        directory = STDIN_DIRECTORY % uuid.uuid4().hex
        made = self.run(name, ['/bin/sh', '-c', 'umask 077 && mkdir -- "$0"', directory], None, None,
                        AGENT_CALL_SECONDS)
        if made['rc'] != 0:
            raise HelperError('agent', 'could not make the directory %s for the input of a command in domain %s: %s'
                              % (directory, name, base64.b64decode(made['stderr']).decode('utf-8', 'replace')),
                              'check that /tmp in the guest is writable (and not full)')
        try:
            self.guest_file_write(name, directory + '/stdin', input_data)
            return self.run(name, ['/bin/sh', '-c', STDIN_SCRIPT, directory] + list(argv), None, env, timeout)
        except HelperError:
            self.remove_quietly(name, directory)
            raise

    def run(self, name, argv, input_data, env, timeout):
        """guest-exec of argv with input_data (base64, small), waited for."""
        arguments = {'path': argv[0], 'arg': list(argv[1:]), 'capture-output': True}
        if input_data:
            arguments['input-data'] = input_data
        if env:
            arguments['env'] = ['%s=%s' % item for item in sorted(env.items())]
        started = guest_value(self.agent(name, 'guest-exec', arguments), dict, name, 'guest-exec', 'reply')
        pid = guest_value(started.get('pid'), int, name, 'guest-exec', 'pid')
        deadline = time.time() + timeout if timeout else None
        delay = 0.005
        while True:
            command = 'guest-exec-status'
            status = guest_value(self.agent(name, command, {'pid': pid}), dict, name, command, 'reply')
            if status.get('exited'):
                signal = guest_value(status.get('signal'), (int, type(None)), name, command, 'signal')
                return {
                    'rc': guest_value(status.get('exitcode', -(signal or 0)), int, name, command, 'exitcode'),
                    'signal': signal,
                    'stdout': guest_base64(status.get('out-data', ''), name, command, 'out-data'),
                    'stderr': guest_base64(status.get('err-data', ''), name, command, 'err-data'),
                    'truncated': bool(status.get('out-truncated') or status.get('err-truncated')),
                }
            if deadline is not None and time.time() >= deadline:
                raise HelperError('timeout', 'command %s did not finish within %s s in domain %s'
                                  % (argv[0], timeout, name), 'raise the command timeout')
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def remove_quietly(self, name, directory):
        """Remove a command's input directory after a failure, as far as the guest lets us: the
        failure that led here is the one to report."""
        try:
            self.run(name, ['rm', '-rf', '--', directory], None, None, AGENT_CALL_SECONDS)
        except HelperError:
            pass

    def guest_file_write(self, name, path, data, append=False):
        """Write data (base64) to a file in the guest, in agent-sized chunks."""
        handle = guest_value(self.agent(name, 'guest-file-open', {'path': path, 'mode': 'ab' if append else 'wb'}),
                             int, name, 'guest-file-open', 'handle')
        try:
            raw = base64.b64decode(data)
            for offset in range(0, len(raw), AGENT_CHUNK_BYTES) or [0]:
                chunk = raw[offset:offset + AGENT_CHUNK_BYTES]
                self.agent(name, 'guest-file-write',
                           {'handle': handle, 'buf-b64': base64.b64encode(chunk).decode('ascii')})
        finally:
            self.agent(name, 'guest-file-close', {'handle': handle})
        return {'written': len(raw)}

    def guest_file_read(self, name, path, offset, length):
        """Read up to length bytes at offset of a file in the guest; data (base64) and eof."""
        handle = guest_value(self.agent(name, 'guest-file-open', {'path': path, 'mode': 'rb'}),
                             int, name, 'guest-file-open', 'handle')
        parts = []
        eof = False
        try:
            if offset:
                self.agent(name, 'guest-file-seek', {'handle': handle, 'offset': offset, 'whence': 'set'})
            remaining = length
            while remaining > 0 and not eof:
                reply = guest_value(self.agent(name, 'guest-file-read',
                                               {'handle': handle, 'count': min(remaining, AGENT_CHUNK_BYTES)}),
                                    dict, name, 'guest-file-read', 'reply')
                # Never more than asked, whatever the guest sends.
                chunk = base64.b64decode(guest_base64(reply.get('buf-b64', ''), name, 'guest-file-read',
                                                      'buf-b64'))[:remaining]
                parts.append(chunk)
                remaining -= len(chunk)
                eof = reply.get('eof') is True or not chunk
        finally:
            self.agent(name, 'guest-file-close', {'handle': handle})
        return {'data': base64.b64encode(b''.join(parts)).decode('ascii'), 'eof': eof}
