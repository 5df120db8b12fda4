# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r'''
name: guest_agent
short_description: Run tasks inside guests of an embedded libvirt root through the QEMU guest agent
version_added: 0.1.0
description:
  - Runs commands and moves files inside a guest of C(qemu:///embed?root=...) through its QEMU guest
    agent (C(guest-exec), C(guest-file-*)); the guest needs no network and no SSH server, only
    qemu-guest-agent and the C(org.qemu.guest_agent.0) virtio channel.
  - Every call goes through the root's helper process, which waits for commands next to the agent, so
    one command costs one request and many hosts run in parallel with C(forks).
  - Supports pipelining (module code goes to the guest as the command's standard input), become (for
    example sudo inside the guest), command timeouts, and files of any size, binary safe and verified.
  - The root is on the controller, or on the O(hypervisor) host reached over SSH, where the same
    helper runs.
author:
  - Embedvirt Developers (@embedvirt)
extends_documentation_fragment:
  - embedvirt.libvirt.hypervisor
options:
  root:
    description:
      - The embedded root whose guest to use, an absolute path. It must exist.
      - As a C(path) option it is expanded on the controller, also for a root on the O(hypervisor) -
        C(~) and environment variables, and a relative path from the current directory.
    type: path
    required: true
    vars:
      - name: ansible_embedvirt_root
    env:
      - name: EMBEDVIRT_ROOT
    ini:
      - section: embedvirt_guest_agent
        key: root
  domain:
    description:
      - Name of the domain (guest) in the root.
    type: str
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_embedvirt_domain
  hypervisor:
    vars:
      - name: ansible_embedvirt_hypervisor
    env:
      - name: EMBEDVIRT_HYPERVISOR
    ini:
      - section: embedvirt_guest_agent
        key: hypervisor
  hypervisor_ssh_args:
    vars:
      - name: ansible_embedvirt_hypervisor_ssh_args
    env:
      - name: EMBEDVIRT_HYPERVISOR_SSH_ARGS
    ini:
      - section: embedvirt_guest_agent
        key: hypervisor_ssh_args
  hypervisor_python:
    vars:
      - name: ansible_embedvirt_hypervisor_python
    ini:
      - section: embedvirt_guest_agent
        key: hypervisor_python
  helper_python:
    vars:
      - name: ansible_embedvirt_helper_python
    env:
      - name: EMBEDVIRT_HELPER_PYTHON
    ini:
      - section: embedvirt_guest_agent
        key: helper_python
  command_environment:
    description:
      - Environment of every command in the guest, instead of the guest agent's own.
      - E(PATH) defaults to the usual system directories and E(HOME) to C(/root) unless given here.
      - Without it, commands get the agent's environment, with E(HOME) set to C(/root) when the agent has none
        (a qemu-ga that systemd starts).
      - Ansible's C(environment) keyword still works as usual, on top of this.
    type: dict
    default: {}
    vars:
      - name: ansible_embedvirt_command_environment
  command_timeout:
    description:
      - Seconds a command may run in the guest before the task fails.
    type: int
    default: 600
    vars:
      - name: ansible_embedvirt_command_timeout
    env:
      - name: EMBEDVIRT_COMMAND_TIMEOUT
    ini:
      - section: embedvirt_guest_agent
        key: command_timeout
  agent_timeout:
    description:
      - Seconds to wait for the guest agent to answer when connecting, for example while the guest boots.
    type: int
    default: 120
    vars:
      - name: ansible_embedvirt_agent_timeout
    env:
      - name: EMBEDVIRT_AGENT_TIMEOUT
    ini:
      - section: embedvirt_guest_agent
        key: agent_timeout
  executable:
    description:
      - Shell that runs commands in the guest.
    type: str
    default: /bin/sh
    vars:
      - name: ansible_executable
      - name: ansible_embedvirt_executable
    ini:
      - section: defaults
        key: executable
  pipelining:
    description:
      - Send module code as the command's standard input instead of copying it into the guest first.
    type: boolean
    default: false
    env:
      - name: ANSIBLE_PIPELINING
    ini:
      - section: defaults
        key: pipelining
      - section: embedvirt_guest_agent
        key: pipelining
    vars:
      - name: ansible_pipelining
      - name: ansible_embedvirt_pipelining
notes:
  - The guest agent commands used are C(guest-ping), C(guest-info), C(guest-exec), C(guest-exec-status),
    C(guest-file-open), C(guest-file-read), C(guest-file-write), C(guest-file-seek) and C(guest-file-close).
  - A command's input (with pipelining, the module and its arguments) larger than one guest agent message is
    written to C(/tmp/.embedvirt-stdin-*/stdin) in the guest, in a new directory only the agent's user can enter
    (mode 0700), and removed with it before the command runs; other users of the guest never see it.
  - Files put into the guest (module files, the source of C(copy)) lose the write permission of group and others
    that the guest agent gives a new file (mode 0666 whatever the umask).
  - Every value the guest agent returns is checked before use (a guest controls its agent); an answer outside its
    protocol fails the task, naming what the agent answered.
  - Commands run as the user of the guest agent, root on every distribution. Become (for example
    C(become_user) with sudo or su) therefore needs no password; a become password is never sent, so
    it cannot end up in a command's input.
'''

EXAMPLES = r'''
# inventory
# [guests]
# web ansible_connection=embedvirt.libvirt.guest_agent ansible_embedvirt_root=/srv/vms
# db  ansible_connection=embedvirt.libvirt.guest_agent ansible_embedvirt_root=/srv/vms ansible_embedvirt_hypervisor=admin@vmhost1
- name: Inside the guest
  hosts: guests
  tasks:
    - name: Facts from inside
      ansible.builtin.setup:
'''

import base64
import hashlib
import os
import tempfile

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

from ansible_collections.embedvirt.libvirt.plugins.module_utils._client import HelperClientError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import AGENT_WRITE_BYTES, FILE_READ_BYTES
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import RootError
from ansible_collections.embedvirt.libvirt.plugins.plugin_utils._hypervisor import helper_client

display = Display()

# Bytes of a file per write request to the helper (it splits them into agent-sized chunks);
# a read request asks for FILE_READ_BYTES.
TRANSFER_BYTES = AGENT_WRITE_BYTES * 32
# What a command sees of the environment when the environment option replaces the agent's.
BASE_ENVIRONMENT = {'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME': '/root'}
# With the agent's own environment: a qemu-ga that systemd starts (every cloud image) has no
# HOME, and Ansible's remote temporary directory (~/.ansible/tmp) then stays a literal '~'
# that files are put to and modules cannot find.
DEFAULT_HOME = ': "${HOME:=/root}"; export HOME; '
# How put_file checks a file it wrote, which qemu-ga creates with mode 0666 whatever the umask:
# it takes away the write permission of group and others (Ansible's remote temporary directory
# keeps it private meanwhile), then prints its sha256sum.
PUT_CHECKSUM = 'chmod go-w -- "$0" && exec sha256sum -- "$0"'


class Connection(ConnectionBase):
    """Commands and files inside a guest, through the root's helper and the guest agent."""

    transport = 'embedvirt.libvirt.guest_agent'
    has_pipelining = True
    has_tty = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.client = None

    # --- errors in one place -------------------------------------------------------------
    def call(self, operation, **args):
        """operation (a method of the client) on this connection's guest; its errors as
        AnsibleConnectionFailure."""
        try:
            return operation(name=self.get_option('domain'), **args)
        except (HelperClientError, RootError) as e:
            raise AnsibleConnectionFailure('guest %s of root %s: %s' % (
                self.get_option('domain'), self.get_option('root'), to_native(e)))

    def _connect(self):
        if not self._connected:
            try:
                self.client = helper_client(self.get_option('root'), self.get_option('hypervisor'),
                                            self.get_option('hypervisor_ssh_args'),
                                            self.get_option('hypervisor_python'), self.get_option('helper_python'))
            except RootError as e:
                raise AnsibleConnectionFailure(to_native(e))
            info = self.call(self.client.guest_wait_agent, timeout=self.get_option('agent_timeout'))
            disabled = sorted(c['name'] for c in info.get('supported_commands', [])
                              if not c.get('enabled') and c['name'] in NEEDED_COMMANDS)
            if disabled:
                raise AnsibleConnectionFailure(
                    'the guest agent of %s has disabled %s, which this connection needs: take them out of '
                    "qemu-ga's --block-rpcs (or block-rpcs in /etc/qemu/qemu-ga.conf) in the guest"
                    % (self.get_option('domain'), ', '.join(disabled)))
            display.vvv('guest agent %s of %s answers' % (info.get('version'), self.get_option('domain')),
                        host=self.get_option('domain'))
            self._connected = True
        return self

    # --- commands ------------------------------------------------------------------------
    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        display.vvv('EXEC %s' % cmd, host=self.get_option('domain'))
        timeout = self.get_option('command_timeout')
        environment = self.get_option('command_environment')
        if not environment:
            cmd = DEFAULT_HOME + cmd
        result = self.call(self.client.guest_exec, argv=[self.get_option('executable'), '-c', cmd],
                           input_data=base64.b64encode(to_bytes(in_data)).decode('ascii') if in_data else None,
                           env=dict(BASE_ENVIRONMENT, **environment) if environment else None,
                           timeout=timeout)
        if result.get('truncated'):
            display.warning('the guest agent truncated the output of a command on %s' % self.get_option('domain'))
        return result['rc'], base64.b64decode(result['stdout']), base64.b64decode(result['stderr'])

    # --- files ---------------------------------------------------------------------------
    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        display.vvv('PUT %s TO %s' % (in_path, out_path), host=self.get_option('domain'))
        if not os.path.exists(to_bytes(in_path, errors='surrogate_or_strict')):
            raise AnsibleFileNotFound('file or module does not exist: %s' % in_path)
        digest = hashlib.sha256()
        size = 0
        with open(to_bytes(in_path, errors='surrogate_or_strict'), 'rb') as f:
            first = True
            while True:
                chunk = f.read(TRANSFER_BYTES)
                if not chunk and not first:
                    break
                self.call(self.client.guest_file_write, path=out_path, data=base64.b64encode(chunk).decode('ascii'),
                          append=not first)
                digest.update(chunk)
                size += len(chunk)
                first = False
        self.verify(out_path, digest.hexdigest(), size, PUT_CHECKSUM)

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        display.vvv('FETCH %s TO %s' % (in_path, out_path), host=self.get_option('domain'))
        # Into a new file next to out_path, renamed over it once verified: a transfer that fails
        # keeps what was there and leaves no part of a file.
        local = to_bytes(out_path, errors='surrogate_or_strict')
        fd, partial = tempfile.mkstemp(dir=os.path.dirname(local) or b'.', prefix=b'.%s.' % os.path.basename(local),
                                       suffix=b'.part')
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, 'wb') as f:
                while True:
                    reply = self.call(self.client.guest_file_read, path=in_path, offset=size, length=FILE_READ_BYTES)
                    chunk = base64.b64decode(reply['data'])
                    f.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    if reply['eof'] or not chunk:
                        break
            self.verify(in_path, digest.hexdigest(), size, 'exec sha256sum -- "$0"')
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(partial, 0o666 & ~umask)  # what open() would have given a new file
            os.replace(partial, local)
        except BaseException:
            os.unlink(partial)
            raise

    def verify(self, guest_path, sha256, size, script):
        """Compare a file in the guest with what was sent or received: script (of the path in $0)
        prints its sha256sum."""
        result = self.call(self.client.guest_exec, argv=['/bin/sh', '-c', script, guest_path],
                           timeout=self.get_option('command_timeout'))
        seen = to_text(base64.b64decode(result['stdout'])).split(' ', 1)[0]
        if result['rc'] != 0 or seen != sha256:
            raise AnsibleError('%s in guest %s does not match what was transferred (%d bytes, sha256 %s, '
                               'guest says %s)' % (guest_path, self.get_option('domain'), size, sha256,
                                                   seen or to_text(base64.b64decode(result['stderr']))))

    # --- lifecycle -----------------------------------------------------------------------
    def reset(self):
        self.close()

    def close(self):
        if self.client is not None:
            self.client.close()
            self.client = None
        self._connected = False


NEEDED_COMMANDS = ('guest-exec', 'guest-exec-status', 'guest-file-open', 'guest-file-read',
                   'guest-file-write', 'guest-file-seek', 'guest-file-close')
