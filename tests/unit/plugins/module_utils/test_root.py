# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import tempfile

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils.root import (
    LONGEST_SOCKET_SUFFIX, ROOT_MAX_LENGTH, SOCKET_PATH_MAX, EmbedRoot, RootError, check_root_path)


@pytest.mark.parametrize('path, says', [
    ('', 'non-empty'),
    (None, 'non-empty'),
    ('vms', "root 'vms' is relative"),
    ('./vms', 'is relative'),
    ('/', "root '/' is not allowed"),
    ('//', "root '/' is not allowed"),
    ('/srv/../etc', "contains '..'"),
    ('/srv/vms/', "use '/srv/vms'"),
    ('/srv//vms', "use '/srv/vms'"),
    ('/srv/./vms', "use '/srv/vms'"),
    ('/srv/vms\n', 'NUL or newline'),
    ('/' + 'a' * ROOT_MAX_LENGTH, 'use a root of at most %d bytes' % ROOT_MAX_LENGTH),
])
def test_bad_roots_name_the_rule_and_the_fix(path, says):
    with pytest.raises(RootError) as err:
        check_root_path(path)
    assert says in str(err.value)


@pytest.mark.parametrize('path', ['/srv/vms', '/a', '/' + 'a' * (ROOT_MAX_LENGTH - 1)])
def test_good_roots_pass_unchanged(path):
    assert check_root_path(path) == path


def test_budget_leaves_room_for_the_deepest_libvirt_socket():
    longest = '/' + 'a' * (ROOT_MAX_LENGTH - 1) + LONGEST_SOCKET_SUFFIX
    assert len(longest) == SOCKET_PATH_MAX
    # libvirt 9 names the agent channel domain-<id>-<name truncated to 20 characters>.
    assert '/domain-9999-' + 'x' * 20 + '/' in LONGEST_SOCKET_SUFFIX


def test_multibyte_characters_count_as_bytes():
    path = '/' + u'\u00e9' * ((ROOT_MAX_LENGTH + 1) // 2)
    with pytest.raises(RootError):
        check_root_path(path)


def test_paths_inside_a_root():
    root = EmbedRoot('/srv/vms')
    assert root.socket_path == '/srv/vms/run/embedvirt/helper.sock'
    assert root.lock_path == '/srv/vms/run/embedvirt/helper.lock'
    assert root.log_path == '/srv/vms/log/embedvirt/helper.log'
    assert root.driver_pidfiles == ['/srv/vms/run/secrets/driver.pid', '/srv/vms/run/qemu/driver.pid']
    assert root.helper_code_path('0123456789abcdef0123') == '/srv/vms/run/embedvirt/helper-0123456789abcdef.py'


@pytest.fixture
def short_tmp():
    # pytest's tmp_path is longer than a root may be.
    path = tempfile.mkdtemp(prefix='evu', dir='/tmp')
    yield path
    shutil.rmtree(path)


def test_prepare_creates_private_directories(short_tmp):
    root = EmbedRoot(os.path.join(short_tmp, 'r'))
    root.prepare()
    assert os.stat(root.state_dir).st_mode & 0o777 == 0o700
    assert os.path.isdir(root.log_dir)


def test_prepare_refuses_a_file(short_tmp):
    path = os.path.join(short_tmp, 'f')
    with open(path, 'w') as f:
        f.write(u'x')
    with pytest.raises(RootError) as err:
        EmbedRoot(path).prepare()
    assert 'is not a directory' in str(err.value)
