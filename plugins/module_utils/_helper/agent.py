# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""The helper's guest agent operations (agent and guest_* in _protocol.Operations): commands,
programs and files in a running guest, through qemu-guest-agent."""

import base64
import binascii
import json
import time
import uuid

from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.drivers import DriverUser
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.errors import (
    HelperError, explain_agent_error)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._network import guest_interfaces, host_addresses
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import (
    AGENT_READ_BYTES, AGENT_WRITE_BYTES, CALL_SECONDS, FILE_READ_BYTES, MAX_MESSAGE_BYTES)

AGENT_CALL_SECONDS = 30
# A wait for the agent asks again when it connects (its event), else this often.
AGENT_RETRY_SECONDS = 2
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


# What the guest agent answers is the guest's word (libvirt bounds a reply to 10 MB): every
# value is checked before it is used, and a wrong one is the agent's error, not the helper's.
def agent_return(reply, name, command):
    """The 'return' value of an agent's reply, which must be a JSON object."""
    try:
        message = json.loads(reply)
    except ValueError:
        message = None
    return checked_object(message, name, command).get('return')


# What a guest's agent may answer (the guest is hostile: every value is checked before use).
# A command's output, both streams, as much as a reply to the client carries in base64 (qemu-ga
# itself keeps up to 16 MiB of each).
EXEC_OUTPUT_BYTES = (MAX_MESSAGE_BYTES - 64 * 1024) // 4 * 3
MAX_PID = 2 ** 31 - 1
MAX_HANDLE = 2 ** 63 - 1
# guest-info: qemu-ga has about 50 commands and a version like 7.2.0.
MAX_AGENT_COMMANDS = 1000
MAX_AGENT_NAME = 100


def odd_reply(name, command, what):
    """The error for an answer of a guest agent that its protocol does not allow."""
    return HelperError('agent_reply', "the guest agent of domain '%s' answered %s with %s" % (name, command, what),
                       'nothing of that answer was used; a guest controls its agent, so this guest runs a '
                       'broken or hostile one: check qemu-guest-agent inside it')


def checked_int(value, what, low, high, name, command):
    """value, a whole number from low to high."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise odd_reply(name, command, '%s %.40r (not a whole number from %d to %d)' % (what, value, low, high))
    return value


def checked_bool(value, what, name, command):
    """value, true or false."""
    if not isinstance(value, bool):
        raise odd_reply(name, command, '%s %.40r (not true or false)' % (what, value))
    return value


def checked_base64(value, what, most, name, command):
    """The bytes of value (base64), at most most of them: its length is checked before
    anything is decoded."""
    if not isinstance(value, str) or len(value) > (most + 2) // 3 * 4:
        raise odd_reply(name, command, '%s of %s (not base64 of at most %d bytes)'
                        % (what, '%d characters' % len(value) if isinstance(value, str) else type(value).__name__,
                           most))
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise odd_reply(name, command, '%s that is not base64' % what) from None


def checked_object(reply, name, command):
    """reply, which must be a JSON object."""
    if not isinstance(reply, dict):
        raise odd_reply(name, command, '%.40r (not an object)' % (reply,))
    return reply


def exec_result(status, name):
    """A finished guest-exec-status, checked: exit code (or minus the signal), output (base64)."""
    command = 'guest-exec-status'
    signal = checked_int(status['signal'], 'signal', 1, 127, name, command) if 'signal' in status else None
    if 'exitcode' in status:
        rc = checked_int(status['exitcode'], 'exitcode', 0, 255, name, command)
    elif signal is not None:
        rc = -signal
    else:
        raise odd_reply(name, command, 'neither an exit code nor a signal for an exited command')
    stdout, stderr = (checked_base64(status.get(key, ''), key, EXEC_OUTPUT_BYTES, name, command)
                      for key in ('out-data', 'err-data'))
    if len(stdout) + len(stderr) > EXEC_OUTPUT_BYTES:
        raise HelperError('output', 'a command in domain %s wrote %d bytes of output, more than the %d a reply carries'
                          % (name, len(stdout) + len(stderr), EXEC_OUTPUT_BYTES),
                          'redirect its output to a file in the guest and fetch that')
    truncated = [checked_bool(status.get(key, False), key, name, command) for key in ('out-truncated', 'err-truncated')]
    return {'rc': rc, 'signal': signal, 'stdout': base64.b64encode(stdout).decode('ascii'),
            'stderr': base64.b64encode(stderr).decode('ascii'), 'truncated': any(truncated)}


def agent_info(info, name):
    """guest-info, checked: its version and the names of its commands, enabled or not."""
    command = 'guest-info'
    info = checked_object(info, name, command)
    version = info.get('version')
    listed = info.get('supported_commands')
    if not isinstance(version, str) or len(version) > MAX_AGENT_NAME:
        raise odd_reply(name, command, 'version %.40r (not a short string)' % (version,))
    if not isinstance(listed, list) or len(listed) > MAX_AGENT_COMMANDS:
        raise odd_reply(name, command, 'supported_commands that are not a list of at most %d' % MAX_AGENT_COMMANDS)
    commands = []
    for entry in listed:
        entry = checked_object(entry, name, command)
        if not isinstance(entry.get('name'), str) or len(entry['name']) > MAX_AGENT_NAME:
            raise odd_reply(name, command, 'a command named %.40r (not a short string)' % (entry.get('name'),))
        commands.append({'name': entry['name'], 'enabled': checked_bool(entry.get('enabled'), 'enabled', name, command)})
    return {'version': version, 'supported_commands': commands}


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
        # Asked again when the agent connects (its event), and at least every AGENT_RETRY_SECONDS.
        with self.domains.events.watch(name, ('agent_connected',)) as connected:
            while True:
                try:
                    self.agent(name, 'guest-ping', timeout=AGENT_CALL_SECONDS)
                    return agent_info(self.agent(name, 'guest-info'), name)
                except HelperError as e:
                    if e.kind != 'agent_unavailable' or time.time() >= deadline:
                        if e.kind == 'agent_unavailable':
                            e.message = '%s (waited %d s)' % (e.message, timeout)
                        raise
                connected.wait(min(AGENT_RETRY_SECONDS, max(0, deadline - time.time())))

    def guest_exec(self, name, argv, input_data, env, timeout):
        """Run argv in the guest, wait for it; exit code and output (base64).

        Polls guest-exec-status here, next to the agent, so a command costs the client one
        request however long it runs.
        """
        if not input_data or len(input_data) <= AGENT_INPUT_DATA_BYTES:
            return self.run(name, argv, input_data, env, timeout)
        # qemu-ga drops a guest-exec message this large (pipelined modules are): the command
        # reads its input from a file instead. guest-file-open creates files with mode 0666
        # whatever the umask (any guest user could read the module's arguments, or rewrite the
        # module before it runs as uid 0), so the file goes into a new directory only the
        # agent's user may enter; the command's shell opens it and removes both before the
        # command runs (become comes after, and gets the open input).
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
        pid = checked_int(checked_object(self.agent(name, 'guest-exec', arguments), name, 'guest-exec').get('pid'),
                          'pid', 1, MAX_PID, name, 'guest-exec')
        timeout = timeout or CALL_SECONDS  # a guest that never says "exited" is not waited for forever
        deadline = time.time() + timeout
        delay = 0.005
        while True:
            status = checked_object(self.agent(name, 'guest-exec-status', {'pid': pid}), name, 'guest-exec-status')
            if checked_bool(status.get('exited'), 'exited', name, 'guest-exec-status'):
                return exec_result(status, name)
            if time.time() >= deadline:
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

    def open_file(self, name, path, mode):
        """guest-file-open; the handle."""
        return checked_int(self.agent(name, 'guest-file-open', {'path': path, 'mode': mode}), 'handle', 0,
                           MAX_HANDLE, name, 'guest-file-open')

    def guest_file_write(self, name, path, data, append=False):
        """Write data (base64) to a file in the guest, in agent-sized chunks."""
        handle = self.open_file(name, path, 'ab' if append else 'wb')
        try:
            raw = base64.b64decode(data)
            for offset in range(0, len(raw), AGENT_WRITE_BYTES) or [0]:
                chunk = raw[offset:offset + AGENT_WRITE_BYTES]
                reply = checked_object(self.agent(name, 'guest-file-write', {
                    'handle': handle, 'buf-b64': base64.b64encode(chunk).decode('ascii')}), name, 'guest-file-write')
                written = checked_int(reply.get('count'), 'count', 0, len(chunk), name, 'guest-file-write')
                if written != len(chunk):
                    raise HelperError('agent', 'the guest agent of domain %s wrote %d of %d bytes to %s'
                                      % (name, offset + written, len(raw), path),
                                      'check the free space of that file system in the guest')
        finally:
            self.agent(name, 'guest-file-close', {'handle': handle})
        return {'written': len(raw)}

    def guest_file_read(self, name, path, offset, length):
        """Read up to length bytes at offset of a file in the guest; data (base64) and eof.
        At most FILE_READ_BYTES, so that the reply fits a message, and no more after a short
        read (from a regular file qemu-ga reads short only at its end), so that a guest that
        answers a few bytes at a time costs one agent call per request: the client reads on
        from where the data ends until eof."""
        for value, what in ((offset, 'offset'), (length, 'length')):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise HelperError('value', 'the %s of a read is %.40r' % (what, value),
                                  'give a whole number of bytes, 0 or more')
        length = min(length, FILE_READ_BYTES)
        handle = self.open_file(name, path, 'rb')
        data = bytearray()
        eof = False
        try:
            if offset:
                reply = checked_object(self.agent(name, 'guest-file-seek',
                                                  {'handle': handle, 'offset': offset, 'whence': 'set'}),
                                       name, 'guest-file-seek')
                checked_int(reply.get('position'), 'position', offset, offset, name, 'guest-file-seek')
            while len(data) < length:
                count = min(length - len(data), AGENT_READ_BYTES)
                reply = checked_object(self.agent(name, 'guest-file-read', {'handle': handle, 'count': count}),
                                       name, 'guest-file-read')
                chunk = checked_base64(reply.get('buf-b64', ''), 'buf-b64', count, name, 'guest-file-read')
                checked_int(reply.get('count'), 'count', len(chunk), len(chunk), name, 'guest-file-read')
                data += chunk
                eof = checked_bool(reply.get('eof', False), 'eof', name, 'guest-file-read') or not chunk
                if eof or len(chunk) < count:
                    break
        finally:
            self.agent(name, 'guest-file-close', {'handle': handle})
        return {'data': base64.b64encode(data).decode('ascii'), 'eof': eof}
