# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import client, helper_server


def test_shipped_source_is_the_helper_module_and_its_version():
    source, version = client.helper_source()
    with open(helper_server.__file__, 'rb') as f:
        assert source == f.read()
    assert version == helper_server.code_version(source)


def test_error_text_carries_the_fix():
    err = client.HelperClientError.from_reply({'kind': 'account', 'message': 'no user', 'hint': 'create it'})
    assert str(err) == 'no user. Fix: create it'
    assert err.kind == 'account'
    assert str(client.HelperClientError('plain')) == 'plain'


def _child(code):
    return subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE)


def test_ready_line_is_read():
    process = _child('import sys; sys.stdout.write(\'{"ok": true}\\n\'); sys.stdout.flush()')
    assert client.read_ready_line(process, 10) == {'ok': True}
    process.wait()


def test_ready_line_of_a_helper_that_died():
    process = _child('raise SystemExit(3)')
    assert client.read_ready_line(process, 10) is None
    assert process.wait() == 3


def test_ready_line_of_a_helper_that_hangs_kills_it():
    process = _child('import time; time.sleep(60)')
    assert client.read_ready_line(process, 0.2) is None
    assert process.wait() != 0


def _state(pid):
    with open('/proc/%d/stat' % pid) as f:
        return f.read().rsplit(')', 1)[1].split()[0]


def test_pid_alive():
    assert client.pid_alive(os.getpid())
    process = _child('pass')
    process.stdout.close()
    pid = process.pid
    # Exited but not reaped: a zombie counts as gone.
    deadline = time.time() + 10
    while _state(pid) != 'Z' and time.time() < deadline:
        time.sleep(0.01)
    assert not client.pid_alive(pid)
    process.wait()
    assert not client.pid_alive(pid)


def test_log_tail(tmp_path):
    log = tmp_path / 'helper.log'
    log.write_text(u'\n'.join('line %d' % i for i in range(100)))
    tail = client.log_tail(str(log), lines=3)
    assert tail == 'line 97\nline 98\nline 99'
    assert client.log_tail(str(tmp_path / 'none')) == '(no log)'


@pytest.mark.parametrize('make', [os.mkdir, lambda path: os.symlink('/etc/passwd', path)])
def test_lock_that_is_not_a_regular_file_is_refused_untouched(make):
    root = tempfile.mkdtemp(dir='/tmp')
    try:
        helper = client.HelperClient(root)
        helper.root.prepare()
        make(helper.root.lock_path)
        with pytest.raises(client.HelperClientError, match='helper.lock is not a regular file. Fix: remove it'):
            helper.ensure()
        assert os.path.lexists(helper.root.lock_path)
    finally:
        shutil.rmtree(root)
