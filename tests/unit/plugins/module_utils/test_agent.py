# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The helper's guest agent operations against scripted agent answers: a guest is hostile, so
every value its agent returns is bounded and checked; and how a large input reaches a command."""

import base64
import os
import re
import subprocess

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper import agent, drivers
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.errors import HelperError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import (
    AGENT_READ_BYTES, FILE_READ_BYTES)


def b64(data):
    return base64.b64encode(data).decode('ascii')


class ScriptedAgent(agent.GuestAgent):
    """GuestAgent whose agent commands answer from answers[command] (a value, or a function of
    the arguments); every command is kept in calls."""

    def __init__(self, **answers):
        super().__init__(drivers.Drivers(None), None)
        self.answers = dict({'guest-exec': {'pid': 42}, 'guest-file-open': 7, 'guest-file-close': None,
                             'guest-exec-status': {'exited': True, 'exitcode': 0, 'out-data': b64(b'out')}},
                            **dict((command.replace('_', '-'), answer) for command, answer in answers.items()))
        self.calls = []

    def agent(self, name, command, arguments=None, timeout=agent.AGENT_CALL_SECONDS):
        self.calls.append((command, arguments))
        answer = self.answers[command]
        return answer(arguments) if callable(answer) else answer


def refused(guest, operation, *args):
    with pytest.raises(HelperError) as failure:
        getattr(guest, operation)('web', *args)
    return failure.value


def test_a_command_returns_its_checked_exit_code_and_output():
    guest = ScriptedAgent(guest_exec_status={'exited': True, 'exitcode': 3, 'out-data': b64(b'out'),
                                             'err-data': b64(b'err'), 'out-truncated': True})
    assert guest.guest_exec('web', ['true'], None, None, 5) == {
        'rc': 3, 'signal': None, 'stdout': b64(b'out'), 'stderr': b64(b'err'), 'truncated': True}
    assert ScriptedAgent(guest_exec_status={'exited': True, 'signal': 9}).guest_exec('web', ['true'], None, None, 5)[
        'rc'] == -9


@pytest.mark.parametrize('status, says', [
    ({'exited': True, 'exitcode': '0'}, "exitcode '0' (not a whole number from 0 to 255)"),
    ({'exited': True, 'exitcode': 256}, 'exitcode 256'),
    ({'exited': True, 'exitcode': True}, 'exitcode True'),
    ({'exited': True, 'exitcode': -1}, 'exitcode -1'),
    ({'exited': True, 'signal': 0}, 'signal 0 (not a whole number from 1 to 127)'),
    ({'exited': True, 'signal': 10 ** 30}, 'signal 1000000000000000000000000000000'),
    ({'exited': True}, 'neither an exit code nor a signal'),
    ({'exited': 'yes'}, "exited 'yes' (not true or false)"),
    ({'exited': True, 'exitcode': 0, 'out-data': '!!!!'}, 'out-data that is not base64'),
    ({'exited': True, 'exitcode': 0, 'err-data': ['x']}, 'err-data of list (not base64'),
    ({'exited': True, 'exitcode': 0, 'out-data': 'QUJD' * (agent.EXEC_OUTPUT_BYTES // 3 + 1)},
     'out-data of %d characters (not base64 of at most %d bytes)'
     % ((agent.EXEC_OUTPUT_BYTES // 3 + 1) * 4, agent.EXEC_OUTPUT_BYTES)),
    ({'exited': True, 'exitcode': 0, 'out-truncated': 'no'}, "out-truncated 'no'"),
    ([1, 2], '[1, 2] (not an object)'),
])
def test_a_hostile_exec_status_is_refused_naming_what_it_said(status, says):
    failure = refused(ScriptedAgent(guest_exec_status=status), 'guest_exec', ['true'], None, None, 5)
    assert failure.kind == 'agent_reply'
    assert failure.message.startswith("the guest agent of domain 'web' answered guest-exec-status with " + says)
    assert 'hostile' in failure.hint


def test_output_larger_than_a_reply_carries_is_refused_with_the_fix():
    half = b64(b'x' * (agent.EXEC_OUTPUT_BYTES // 2 + 3))
    failure = refused(ScriptedAgent(guest_exec_status={'exited': True, 'exitcode': 0, 'out-data': half,
                                                       'err-data': half}),
                      'guest_exec', ['cat', '/dev/zero'], None, None, 5)
    assert failure.kind == 'output' and 'more than the %d a reply carries' % agent.EXEC_OUTPUT_BYTES in failure.message
    assert 'redirect its output to a file' in failure.hint


@pytest.mark.parametrize('started, says', [
    ({'pid': 0}, 'pid 0 (not a whole number from 1 to 2147483647)'),
    ({'pid': 2 ** 31}, 'pid 2147483648'),
    ({'pid': '42'}, "pid '42'"),
    ({}, 'pid None'),
    (None, 'None (not an object)'),
])
def test_a_hostile_pid_is_refused(started, says):
    failure = refused(ScriptedAgent(guest_exec=started), 'guest_exec', ['true'], None, None, 5)
    assert failure.kind == 'agent_reply' and 'answered guest-exec with ' + says in failure.message


def test_a_guest_that_never_says_exited_is_not_waited_for_forever(monkeypatch):
    monkeypatch.setattr(agent, 'CALL_SECONDS', 0.2)
    failure = refused(ScriptedAgent(guest_exec_status={'exited': False}), 'guest_exec', ['true'], None, None, None)
    assert failure.kind == 'timeout' and 'did not finish within 0.2 s' in failure.message


def reads(data, count_of=len, eof=None):
    """guest-file-read answers serving data from the offset 0, count as count_of says."""
    position = [0]

    def answer(arguments):
        chunk = data[position[0]:position[0] + arguments['count']]
        position[0] += len(chunk)
        return {'count': count_of(chunk), 'buf-b64': b64(chunk),
                'eof': position[0] >= len(data) if eof is None else eof}
    return answer


def test_a_file_is_read_in_chunks_of_the_agent():
    data = os.urandom(AGENT_READ_BYTES * 2 + 5)
    guest = ScriptedAgent(guest_file_read=reads(data))
    assert guest.guest_file_read('web', '/f', 0, len(data) + 10) == {'data': b64(data), 'eof': True}
    assert [args['count'] for command, args in guest.calls if command == 'guest-file-read'] == [
        AGENT_READ_BYTES, AGENT_READ_BYTES, 15]


def test_one_read_returns_at_most_what_a_reply_carries():
    data = os.urandom(FILE_READ_BYTES + AGENT_READ_BYTES)
    guest = ScriptedAgent(guest_file_read=reads(data))
    assert guest.guest_file_read('web', '/f', 0, len(data)) == {'data': b64(data[:FILE_READ_BYTES]), 'eof': False}
    assert sum(args['count'] for command, args in guest.calls if command == 'guest-file-read') == FILE_READ_BYTES


def test_a_reply_of_the_biggest_read_fits_a_message():
    assert FILE_READ_BYTES <= agent.EXEC_OUTPUT_BYTES  # the most a reply carries in base64


def test_a_guest_that_reads_a_few_bytes_at_a_time_costs_one_agent_call_per_request():
    guest = ScriptedAgent(guest_file_read={'count': 2, 'buf-b64': b64(b'ab'), 'eof': False})
    assert guest.guest_file_read('web', '/f', 0, FILE_READ_BYTES) == {'data': b64(b'ab'), 'eof': False}
    assert [command for command, args in guest.calls if command == 'guest-file-read'] == ['guest-file-read']


@pytest.mark.parametrize('offset, length', [(-1, 10), (0, -5), (0, None), ('0', 10), (0, True), (0, 1.5)])
def test_a_read_needs_whole_numbers_of_bytes(offset, length):
    guest = ScriptedAgent()
    failure = refused(guest, 'guest_file_read', '/f', offset, length)
    assert failure.kind == 'value' and 'a whole number of bytes' in failure.hint
    assert guest.calls == []


@pytest.mark.parametrize('answer, says', [
    # more than asked for: a guest must not make the helper hold more than it asked for
    (lambda arguments: {'count': arguments['count'] + 1, 'buf-b64': b64(b'x' * (arguments['count'] + 3))},
     'buf-b64 of %d characters (not base64 of at most %d bytes)'
     % ((AGENT_READ_BYTES + 3 + 2) // 3 * 4, AGENT_READ_BYTES)),
    (reads(b'abc', count_of=lambda chunk: len(chunk) + 1), 'count 4 (not a whole number from 3 to 3)'),
    (reads(b'abc', eof='maybe'), "eof 'maybe'"),
    (lambda arguments: {'count': 1, 'buf-b64': 'Y'}, 'buf-b64 that is not base64'),
    (lambda arguments: 'abc', "'abc' (not an object)"),
])
def test_a_hostile_file_read_is_refused_and_the_file_closed(answer, says):
    guest = ScriptedAgent(guest_file_read=answer)
    failure = refused(guest, 'guest_file_read', '/f', 0, AGENT_READ_BYTES * 4)
    assert failure.kind == 'agent_reply' and 'answered guest-file-read with ' + says in failure.message
    assert guest.calls[-1] == ('guest-file-close', {'handle': 7})


@pytest.mark.parametrize('answers, says', [
    ({'guest_file_open': -1}, 'guest-file-open with handle -1'),
    ({'guest_file_open': '7'}, "guest-file-open with handle '7'"),
    ({'guest_file_seek': {'position': 0, 'eof': False}}, 'guest-file-seek with position 0 (not a whole number from 5 to 5)'),
])
def test_a_hostile_handle_or_seek_is_refused(answers, says):
    answers.setdefault('guest_file_seek', {'position': 5, 'eof': False})
    failure = refused(ScriptedAgent(guest_file_read=reads(b'abc'), **answers), 'guest_file_read', '/f', 5, 10)
    assert failure.kind == 'agent_reply' and says in failure.message


def test_a_short_write_fails_naming_how_much_was_written():
    guest = ScriptedAgent(guest_file_write=lambda arguments: {'count': 10, 'eof': False})
    failure = refused(guest, 'guest_file_write', '/f', b64(b'x' * 100))
    assert failure.kind == 'agent' and 'wrote 10 of 100 bytes to /f' in failure.message
    assert 'free space' in failure.hint
    failure = refused(ScriptedAgent(guest_file_write={'count': 101, 'eof': False}), 'guest_file_write', '/f',
                      b64(b'x' * 100))
    assert failure.kind == 'agent_reply' and 'count 101 (not a whole number from 0 to 100)' in failure.message


def test_agent_info_keeps_only_checked_names_and_flags():
    info = {'version': '7.2.0', 'supported_commands': [{'name': 'guest-exec', 'enabled': True,
                                                        'success-response': True}], 'extra': 'x' * 1000}
    assert agent.agent_info(info, 'web') == {'version': '7.2.0',
                                             'supported_commands': [{'name': 'guest-exec', 'enabled': True}]}


@pytest.mark.parametrize('info, says', [
    ({'version': 'x' * 101, 'supported_commands': []}, 'version'),
    ({'version': '7', 'supported_commands': {}}, 'supported_commands that are not a list'),
    ({'version': '7', 'supported_commands': [{}] * 1001}, 'supported_commands that are not a list of at most 1000'),
    ({'version': '7', 'supported_commands': [{'name': 3, 'enabled': True}]}, 'a command named 3'),
    ({'version': '7', 'supported_commands': [{'name': 'guest-exec', 'enabled': 1}]}, 'enabled 1'),
    ({'version': '7', 'supported_commands': ['guest-exec']}, "'guest-exec' (not an object)"),
])
def test_a_hostile_agent_info_is_refused(info, says):
    with pytest.raises(HelperError, match=re.escape('answered guest-info with ' + says)) as failure:
        agent.agent_info(info, 'web')
    assert failure.value.kind == 'agent_reply'


# --- a large input ----------------------------------------------------------------------------
BIG_INPUT = b64(b'm' * (agent.AGENT_INPUT_DATA_BYTES + 1))


def test_a_large_input_goes_through_a_new_private_directory_that_the_command_removes():
    guest = ScriptedAgent(guest_file_write=lambda arguments: {'count': len(base64.b64decode(arguments['buf-b64']))})
    guest.guest_exec('web', ['/bin/sh', '-c', 'cat'], BIG_INPUT, None, 5)
    made, = [args for command, args in guest.calls if command == 'guest-exec' and args['arg'][1].startswith('umask')]
    directory = made['arg'][2]
    assert made['arg'][:2] == ['-c', 'umask 077 && mkdir -- "$0"'] and directory.startswith('/tmp/.embedvirt-stdin-')
    assert ('guest-file-open', {'path': directory + '/stdin', 'mode': 'wb'}) in guest.calls
    ran = [args for command, args in guest.calls if command == 'guest-exec'][-1]
    assert ran['arg'] == ['-c', agent.STDIN_SCRIPT, directory, '/bin/sh', '-c', 'cat'] and 'input-data' not in ran


def test_a_large_input_is_removed_when_the_command_fails_to_start():
    def exec_(arguments):
        if arguments['arg'][:2] == ['-c', agent.STDIN_SCRIPT]:
            return {}  # no pid
        return {'pid': 42}
    guest = ScriptedAgent(guest_exec=exec_,
                          guest_file_write=lambda arguments: {'count': len(base64.b64decode(arguments['buf-b64']))})
    assert refused(guest, 'guest_exec', ['cat'], BIG_INPUT, None, 5).kind == 'agent_reply'
    made, removed = [args['arg'] for command, args in guest.calls if command == 'guest-exec'][::2]
    assert removed and guest.calls[-2][1]['path'] == 'rm' and guest.calls[-2][1]['arg'] == ['-rf', '--', made[2]]


def test_the_command_gets_the_input_and_nothing_of_it_remains(tmp_path):
    # The shell code the guest runs, here: the command reads the file's bytes on its standard
    # input, after the file and its directory are gone.
    directory = tmp_path / 'in'
    subprocess.run(['/bin/sh', '-c', 'umask 077 && mkdir -- "$0"', str(directory)], check=True)
    assert oct(directory.stat().st_mode & 0o777) == '0o700'
    (directory / 'stdin').write_bytes(b'module \x00 input')
    done = subprocess.run(['/bin/sh', '-c', agent.STDIN_SCRIPT, str(directory), '/bin/sh', '-c',
                           'ls -A "$0"; cat', str(tmp_path)], capture_output=True, check=True)
    assert done.stdout == b'module \x00 input' and not directory.exists()


@pytest.mark.parametrize('reply, says', [
    ('not json', r'None \(not an object\)'),
    ('[1, 2]', r'\[1, 2\] \(not an object\)'),
    ('"x"', r"'x' \(not an object\)"),
])
def test_an_agent_reply_must_be_a_json_object(reply, says):
    assert agent.agent_return('{"return": {"pid": 7}}', 'g', 'guest-exec') == {'pid': 7}
    with pytest.raises(HelperError, match="guest agent of domain 'g' answered guest-exec with " + says) as e:
        agent.agent_return(reply, 'g', 'guest-exec')
    assert e.value.kind == 'agent_reply' and e.value.hint
