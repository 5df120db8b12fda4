# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
import shlex
import sys
import tempfile

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils._client import HelperClient, HelperClientError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import RootError
from ansible_collections.embedvirt.libvirt.plugins.plugin_utils._hypervisor import (
    BOOT, DEFAULT_SSH_ARGS, RemoteHelperClient, helper_client, split_ssh_args)


@pytest.mark.parametrize('value, expected', [
    (None, []),
    ('', []),
    ('-p 2222 -i "/root/my keys/id"', ['-p', '2222', '-i', '/root/my keys/id']),
    (['-p', 2222], ['-p', '2222']),
])
def test_split_ssh_args(value, expected):
    assert split_ssh_args(value) == expected


def test_local_root_gets_the_local_client():
    assert isinstance(helper_client('/srv/vms'), HelperClient)
    assert isinstance(helper_client('/srv/vms', 'admin@vmhost'), RemoteHelperClient)


def test_path_rules_hold_before_any_ssh():
    with pytest.raises(RootError, match='relative'):
        RemoteHelperClient('vms', 'admin@vmhost')


def test_ssh_command_line():
    command = RemoteHelperClient('/srv/vms', 'admin@vmhost', '-p 2222', '/usr/bin/python3').command
    assert command[:3] == ['ssh', '-o', 'BatchMode=yes']
    assert command[3:3 + len(DEFAULT_SSH_ARGS)] == list(DEFAULT_SSH_ARGS)
    assert command[-5:-1] == ['-p', '2222', 'admin@vmhost', '--']
    # The remote shell gets one quoted command line: python, -c and the boot line.
    assert shlex.split(command[-1]) == ['/usr/bin/python3', '-c', BOOT]


class LocalRelay(RemoteHelperClient):
    """The relay run by a local Python instead of through ssh: same program, same protocol."""

    @property
    def command(self):
        return [sys.executable, '-c', BOOT]


def test_relay_imports_the_shipped_code_and_passes_errors_back():
    # A root that is a file: the relay's client (imported from the code sent over stdin, helper
    # source read back through the bundle) refuses it before any helper is started.
    with tempfile.NamedTemporaryFile(dir='/tmp') as not_a_directory:
        relay = LocalRelay(not_a_directory.name, 'unused')
        try:
            with pytest.raises(HelperClientError, match='exists and is not a directory') as raised:
                relay.domain_list()
            assert raised.value.kind == 'root'
        finally:
            relay.close()


def test_relay_that_dies_reports_ssh_errors():
    class Broken(RemoteHelperClient):
        @property
        def command(self):
            return [sys.executable, '-c', 'import sys; sys.stderr.write("ssh: connect to host x port 22: '
                    'Connection refused"); sys.exit(255)']

    relay = Broken('/srv/vms', 'admin@x')
    with pytest.raises(HelperClientError, match='hypervisor admin@x ended .*exit status 255.*Connection refused'):
        relay.domain_list()


def test_relay_does_not_create_a_missing_root():
    missing = tempfile.mkdtemp(dir='/tmp') + '/r'
    relay = LocalRelay(missing, 'unused')
    try:
        with pytest.raises(HelperClientError, match="root '%s' does not exist: create it first" % missing):
            relay.domain_list()
    finally:
        relay.close()
    assert not os.path.exists(missing)
    os.rmdir(os.path.dirname(missing))


def test_local_plugin_client_does_not_create_a_missing_root():
    missing = tempfile.mkdtemp(dir='/tmp') + '/r'
    with pytest.raises(RootError, match='does not exist'):
        helper_client(missing).domain_list()
    assert not os.path.exists(missing)
    os.rmdir(os.path.dirname(missing))
