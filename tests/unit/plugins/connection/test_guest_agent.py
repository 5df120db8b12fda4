# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The guest_agent connection, loaded as Ansible loads it, against a helper that speaks the real protocol."""

import base64
import hashlib
import os
import subprocess

import pytest

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader

from ansible_collections.embedvirt.libvirt.plugins.connection import guest_agent
from ansible_collections.embedvirt.libvirt.plugins.connection.guest_agent import TRANSFER_BYTES
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import FILE_READ_BYTES
from ansible_collections.embedvirt.libvirt.tests.unit.plugins.fake_helper import FakeError

NAME = 'ünïcødé ✓ file.bin'
# More than one write request (3 MiB) and one read request (4 MiB), and a whole number of neither.
BIG = os.urandom(max(TRANSFER_BYTES, FILE_READ_BYTES) + 512 * 1024 + 7)


def connection(root, **options):
    conn = connection_loader.get('embedvirt.libvirt.guest_agent', PlayContext())
    conn.set_options(direct=dict(dict(root=root, domain='web'), **options))
    return conn


@pytest.fixture
def guest(fake_helper):
    """The fake helper with a running guest web."""
    fake_helper.add_domain('web', state='running')
    return fake_helper


@pytest.fixture
def conn(guest):
    conn = connection(guest.root)
    yield conn
    conn.close()


def test_a_command_gets_its_argv_input_and_environment_and_returns_its_output(guest):
    seen = []
    guest.command = lambda argv, stdin, env: seen.append((argv, stdin, env)) or (3, b'out \xff\n', b'err\n')
    conn = connection(guest.root, command_environment={'LANG': 'C.UTF-8'}, executable='/bin/bash',
                      agent_timeout=7, command_timeout=30)
    try:
        assert conn.exec_command('echo "$LANG"', in_data=b'\x00module') == (3, b'out \xff\n', b'err\n')
    finally:
        conn.close()
    assert seen == [(['/bin/bash', '-c', 'echo "$LANG"'], b'\x00module',
                     {'LANG': 'C.UTF-8', 'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
                      'HOME': '/root'})]
    assert guest.args_of('guest_wait_agent') == [{'name': 'web', 'timeout': 7}]
    assert guest.args_of('guest_exec')[0]['timeout'] == 30


def test_without_command_environment_the_agent_keeps_its_own_with_a_home(guest, conn):
    conn.exec_command('echo ~')
    assert guest.args_of('guest_exec') == [{'name': 'web', 'argv': ['/bin/sh', '-c', guest_agent.DEFAULT_HOME + 'echo ~'],
                                            'input_data': None, 'env': None, 'timeout': 600}]


def test_a_home_for_an_agent_without_one(tmp_path):
    # What a qemu-ga under systemd runs: no HOME in its environment.
    script = guest_agent.DEFAULT_HOME + 'echo ~; echo "$HOME"'
    done = subprocess.run(['/bin/sh', '-c', script], env={'PATH': '/usr/bin:/bin'}, capture_output=True, text=True,
                          check=True)
    assert done.stdout == '/root\n/root\n'
    done = subprocess.run(['/bin/sh', '-c', script], env={'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path)},
                          capture_output=True, text=True, check=True)
    assert done.stdout == '%s\n%s\n' % (tmp_path, tmp_path)


def test_put_file_sends_a_big_file_in_chunks_and_verifies_it(guest, conn, tmp_path):
    local = tmp_path / NAME
    local.write_bytes(BIG)
    conn.put_file(str(local), '/tmp/' + NAME)
    assert guest.files['/tmp/' + NAME] == BIG
    assert [args['append'] for args in guest.args_of('guest_file_write')] == [False, True]
    assert guest.args_of('guest_exec')[-1]['argv'] == ['/bin/sh', '-c', guest_agent.PUT_CHECKSUM, '/tmp/' + NAME]


def test_a_put_file_loses_the_write_permission_for_others_that_the_agent_gives_it(tmp_path):
    # What the guest runs after put_file: qemu-ga creates files with mode 0666 whatever the umask.
    put = tmp_path / 'put'
    put.write_bytes(b'module')
    put.chmod(0o666)
    done = subprocess.run(['/bin/sh', '-c', guest_agent.PUT_CHECKSUM, str(put)], capture_output=True, check=True)
    assert done.stdout.split()[0].decode() == hashlib.sha256(b'module').hexdigest()
    assert oct(put.stat().st_mode & 0o777) == '0o644'


def test_put_file_of_an_empty_file_makes_an_empty_file(guest, conn, tmp_path):
    local = tmp_path / 'empty'
    local.write_bytes(b'')
    guest.files['/tmp/empty'] = b'old content'
    conn.put_file(str(local), '/tmp/empty')
    assert guest.files['/tmp/empty'] == b''


def test_fetch_file_reads_a_big_file_in_chunks_and_verifies_it(guest, conn, tmp_path):
    guest.files['/tmp/' + NAME] = BIG
    local = tmp_path / NAME
    conn.fetch_file('/tmp/' + NAME, str(local))
    assert hashlib.sha256(local.read_bytes()).digest() == hashlib.sha256(BIG).digest()
    assert [args['offset'] for args in guest.args_of('guest_file_read')] == [0, FILE_READ_BYTES]


def test_a_chunk_corrupted_on_the_way_fails_the_transfer(guest, conn, tmp_path, monkeypatch):
    write = guest.guest_file_write

    def corrupting(name, path, data, append):
        raw = bytearray(base64.b64decode(data))
        raw[-1] ^= 0xff
        return write(name, path, base64.b64encode(raw).decode('ascii'), append)
    monkeypatch.setattr(guest, 'guest_file_write', corrupting)
    local = tmp_path / NAME
    local.write_bytes(BIG)
    with pytest.raises(AnsibleError, match='does not match what was transferred') as failure:
        conn.put_file(str(local), '/tmp/' + NAME)
    assert hashlib.sha256(BIG).hexdigest() in str(failure.value)


def test_put_file_of_a_missing_local_file_is_file_not_found(conn, tmp_path):
    with pytest.raises(AnsibleFileNotFound, match='does not exist'):
        conn.put_file(str(tmp_path / 'missing'), '/tmp/missing')


def test_a_helper_error_is_a_connection_failure_with_its_message_and_fix(guest, conn):
    guest.refuse('guest_exec', 'timeout', 'command /bin/sh did not finish within 600 s in domain web',
                 'raise the command timeout')
    with pytest.raises(AnsibleConnectionFailure) as failure:
        conn.exec_command('sleep infinity')
    assert str(failure.value) == ('guest web of root %s: command /bin/sh did not finish within 600 s in domain web. '
                                  'Fix: raise the command timeout' % guest.root)


def test_fetching_a_file_the_guest_lacks_names_it(guest, conn, tmp_path):
    with pytest.raises(AnsibleConnectionFailure, match='guest-file-open of /etc/missing failed'):
        conn.fetch_file('/etc/missing', str(tmp_path / 'missing'))


def test_a_guest_that_is_not_running_fails_the_connection_with_the_fix(fake_helper):
    fake_helper.add_domain('web')
    with pytest.raises(AnsibleConnectionFailure, match='is not connected. Fix: start the domain'):
        connection(fake_helper.root).exec_command('true')
    assert fake_helper.changes() == []


def test_an_agent_without_a_needed_command_fails_the_connection_naming_it(guest):
    guest.agent_info['supported_commands'][2]['enabled'] = False  # guest-exec
    with pytest.raises(AnsibleConnectionFailure, match="has disabled guest-exec, .*--block-rpcs"):
        connection(guest.root).exec_command('true')


def test_a_missing_root_fails_the_connection_naming_it(fake_helper):
    missing = fake_helper.root + '-gone'
    with pytest.raises(AnsibleConnectionFailure, match="root '%s' does not exist" % missing):
        connection(missing).exec_command('true')
    assert not os.path.exists(missing)


@pytest.mark.parametrize('failing', ['read', 'verify'])
def test_a_fetch_that_fails_keeps_the_local_file_there_was_and_leaves_no_partial_one(guest, conn, tmp_path, monkeypatch,
                                                                                     failing):
    guest.files['/tmp/' + NAME] = BIG
    local = tmp_path / NAME
    local.write_bytes(b'what the user had')
    read = guest.guest_file_read

    def failing_after_the_first_chunk(name, path, offset, length):
        if offset and failing == 'read':
            raise FakeError('agent', 'the guest agent went away')
        if offset:
            guest.files[path] = b'changed meanwhile'  # what the guest then says does not match
        return read(name, path, offset, length)
    monkeypatch.setattr(guest, 'guest_file_read', failing_after_the_first_chunk)
    with pytest.raises(AnsibleError):
        conn.fetch_file('/tmp/' + NAME, str(local))
    assert local.read_bytes() == b'what the user had'
    assert os.listdir(str(tmp_path)) == [NAME]


def test_a_fetched_file_gets_the_mode_a_new_file_gets(guest, conn, tmp_path):
    guest.files['/tmp/x'] = b'x'
    old = os.umask(0o027)
    try:
        conn.fetch_file('/tmp/x', str(tmp_path / 'x'))
    finally:
        os.umask(old)
    assert oct((tmp_path / 'x').stat().st_mode & 0o777) == '0o640' and os.listdir(str(tmp_path)) == ['x']
