# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


import json
import os
import stat

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _root
from ansible_collections.embedvirt.libvirt.plugins.module_utils._marker import marker_proof, parse_marker
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import (
    DIRECT_ROOT_MAX, LONGEST_SOCKET_SUFFIX, MARKER_LIMIT, MARKER_NAME, ROOT_MAX_LENGTH, SOCKET_PATH_MAX, RootError,
    check_root_path, ensure_alias, libvirt_root, real_path, remove_alias)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import EmbedRoot


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
    longest = '/' + 'a' * (DIRECT_ROOT_MAX - 1) + LONGEST_SOCKET_SUFFIX
    assert len(longest) == SOCKET_PATH_MAX
    # libvirt 9 names the agent channel domain-<id>-<name truncated to 20 characters>.
    assert '/domain-9999-' + 'x' * 20 + '/' in LONGEST_SOCKET_SUFFIX


@pytest.mark.parametrize('uid', [0, 1000, 4294967294])
def test_a_long_root_reaches_libvirt_through_an_alias_that_fits_the_budget(uid):
    short = '/' + 'a' * (DIRECT_ROOT_MAX - 1)
    assert libvirt_root(short, uid) == short
    root = '/home/user/.local/share/embedvirt/' + 'v' * 150
    alias = libvirt_root(root, uid)
    assert len(alias) <= DIRECT_ROOT_MAX and alias.startswith('/run/embedvirt/' if uid == 0 else '/tmp/.ev%d/' % uid)
    assert alias == libvirt_root(root, uid) and alias != libvirt_root(root + 'w', uid)


def test_paths_libvirt_reports_below_an_alias_name_the_root():
    root = '/home/user/' + 'v' * 150
    for uid in (0, 1000):
        alias = libvirt_root(root, uid)
        assert real_path(alias + '/lib/qemu/nvram/a_VARS.fd', root) == root + '/lib/qemu/nvram/a_VARS.fd'
        assert real_path(alias, root) == root
        assert real_path(alias + 'x/lib', root) == alias + 'x/lib'  # another name, not this alias
    assert real_path('/srv/vms/lib', '/srv/vms') == '/srv/vms/lib'
    assert real_path(libvirt_root(root + 'w', 0) + '/lib', root) == libvirt_root(root + 'w', 0) + '/lib'


def test_an_alias_is_made_once_and_one_taken_by_another_root_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(_root, 'ALIAS_DIR_UID0', str(tmp_path / 'r'))
    monkeypatch.setattr(_root, 'ALIAS_DIR_USER', str(tmp_path / 'u%d'))
    monkeypatch.setattr(_root, 'DIRECT_ROOT_MAX', 10)
    root = '/srv/a-long-root'
    alias = ensure_alias(root)
    assert os.readlink(alias) == root and ensure_alias(root) == alias
    assert stat.S_IMODE(os.stat(os.path.dirname(alias)).st_mode) == (0o711 if os.geteuid() == 0 else 0o700)
    os.unlink(alias)
    os.symlink('/srv/another', alias)
    with pytest.raises(RootError, match='is taken .a link to /srv/another.: if no helper of that root runs, remove it'):
        ensure_alias(root)
    remove_alias(root, os.geteuid())  # names another root: left
    assert os.readlink(alias) == '/srv/another'
    os.unlink(alias)
    ensure_alias(root)
    remove_alias(root, os.geteuid() + 1)  # another user's: left
    assert os.path.islink(alias)
    remove_alias(root, os.geteuid())
    assert not os.path.lexists(alias)
    os.chmod(os.path.dirname(alias), 0o777)
    with pytest.raises(RootError, match='only it may read and write'):
        ensure_alias(root)


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


@pytest.mark.parametrize('path', ['/srv/a b', '/srv/a%20b', '/srv/a&b', '/srv/a#b', '/srv/a?b', '/srv/a$b',
                                  '/srv/a"b', '/srv/a\\b', '/srv/a\tb', '/srv/a,b', '/srv/a:b'])
def test_characters_that_uris_units_or_qemu_read_differently_are_refused(path):
    with pytest.raises(RootError, match='letters, digits and'):
        check_root_path(path)


@pytest.mark.parametrize('path', ['/srv/vms', '/srv/a-b_c.d', '/srv/v+m@1', u'/srv/v\u00e9'])
def test_plain_characters_are_allowed(path):
    assert check_root_path(path) == path


def test_open_creates_the_root_and_pins_it(short_tmp):
    root = EmbedRoot(os.path.join(short_tmp, 'r'))
    with root.open(create=True) as rootdir:
        assert os.path.samestat(os.fstat(rootdir.fd), os.stat(root.path))
        assert rootdir.uid == os.geteuid()
        assert stat.S_IMODE(os.stat(root.path).st_mode) == 0o700
        os.close(rootdir.subdir('run/embedvirt', create=True))
    assert stat.S_IMODE(os.stat(root.state_dir).st_mode) == 0o700


def test_open_refuses_a_file(short_tmp):
    path = os.path.join(short_tmp, 'f')
    with open(path, 'w') as f:
        f.write(u'x')
    with pytest.raises(RootError) as err:
        EmbedRoot(path).open(create=True)
    assert 'is not a directory' in str(err.value)


def test_open_refuses_a_missing_root_unless_asked_to_create(short_tmp):
    with pytest.raises(RootError, match='does not exist'):
        EmbedRoot(os.path.join(short_tmp, 'missing')).open()
    assert not os.path.exists(os.path.join(short_tmp, 'missing'))


def test_a_root_that_is_a_link_is_refused(short_tmp):
    os.mkdir(os.path.join(short_tmp, 'real'))
    os.symlink('real', os.path.join(short_tmp, 'link'))
    with pytest.raises(RootError, match='is a symbolic link'):
        EmbedRoot(os.path.join(short_tmp, 'link')).open()


def test_links_of_the_caller_on_the_way_are_followed(short_tmp):
    os.makedirs(os.path.join(short_tmp, 'real', 'r'))
    os.symlink(os.path.join(short_tmp, 'real'), os.path.join(short_tmp, 'l'))
    with EmbedRoot(os.path.join(short_tmp, 'l', 'r')).open() as rootdir:
        assert os.path.samestat(os.fstat(rootdir.fd), os.stat(os.path.join(short_tmp, 'real', 'r')))


def test_links_of_another_user_on_the_way_are_refused(short_tmp):
    if os.geteuid() != 0:
        pytest.skip('needs root to make a link owned by another user')
    os.makedirs(os.path.join(short_tmp, 'real', 'r'))
    link = os.path.join(short_tmp, 'l')
    os.symlink(os.path.join(short_tmp, 'real'), link)
    os.lchown(link, 65534, 65534)
    with pytest.raises(RootError, match='belongs to uid 65534'):
        EmbedRoot(os.path.join(link, 'r')).open()


def _rootdir(short_tmp):
    return EmbedRoot(os.path.join(short_tmp, 'r')).open(create=True)


def test_a_link_inside_the_root_is_never_followed(short_tmp):
    outside = os.path.join(short_tmp, 'outside')
    os.mkdir(outside)
    with _rootdir(short_tmp) as rootdir:
        os.symlink(outside, os.path.join(rootdir.path, 'run'))
        with pytest.raises(RootError, match='symbolic link'):
            rootdir.subdir('run/embedvirt', create=True)
        with pytest.raises(RootError, match='symbolic link'):
            rootdir.write_file('run/x', b'data')
    assert os.listdir(outside) == []


def test_a_directory_others_may_write_is_refused(short_tmp):
    with _rootdir(short_tmp) as rootdir:
        os.mkdir(os.path.join(rootdir.path, 'run'))
        os.chmod(os.path.join(rootdir.path, 'run'), 0o777)
        with pytest.raises(RootError, match='writable by group or others'):
            rootdir.subdir('run/embedvirt', create=True)
        assert not os.path.exists(os.path.join(rootdir.path, 'run', 'embedvirt'))


def test_write_file_is_whole_and_does_not_follow_a_link(short_tmp):
    target = os.path.join(short_tmp, 'target')
    with open(target, 'w') as f:
        f.write(u'keep')
    with _rootdir(short_tmp) as rootdir:
        os.mkdir(os.path.join(rootdir.path, 'etc'), 0o700)
        os.symlink(target, os.path.join(rootdir.path, 'etc', 'qemu.conf'))
        assert rootdir.write_file('etc/qemu.conf', b'new')
        assert not os.path.islink(os.path.join(rootdir.path, 'etc', 'qemu.conf'))
        assert rootdir.read_file('etc/qemu.conf') == b'new'
        assert not rootdir.write_file('etc/qemu.conf', b'other', replace=False)
        assert rootdir.read_file('etc/qemu.conf') == b'new'
        assert os.listdir(os.path.join(rootdir.path, 'etc')) == ['qemu.conf']
    with open(target) as f:
        assert f.read() == 'keep'


def test_open_file_refuses_a_fifo_without_blocking(short_tmp):
    with _rootdir(short_tmp) as rootdir:
        os.mkfifo(os.path.join(rootdir.path, 'f'))
        with pytest.raises(RootError, match='not a regular file'):
            rootdir.open_file('f')
        assert rootdir.read_file('missing') is None


def test_a_file_of_root_with_a_second_name_is_refused(short_tmp):
    if os.geteuid() != 0:
        pytest.skip('needs root to make a root of another user')
    outside = os.path.join(short_tmp, 'precious')
    with open(outside, 'w') as f:
        f.write(u'')
    os.mkdir(os.path.join(short_tmp, 'r'), 0o700)
    os.chown(os.path.join(short_tmp, 'r'), 65534, 65534)
    with EmbedRoot(os.path.join(short_tmp, 'r')).open() as rootdir:
        os.close(rootdir.subdir('run', create=True))
        os.link(outside, os.path.join(rootdir.path, 'run', 'lock'))  # as the owner could
        with pytest.raises(RootError, match='has other names'):
            rootdir.open_file('run/lock', os.O_RDWR | os.O_CREAT)
        assert rootdir.open_file('run/new', os.O_RDWR | os.O_CREAT) >= 0
        assert os.stat(os.path.join(rootdir.path, 'run', 'new')).st_uid == 65534
        assert os.stat(os.path.join(rootdir.path, 'run')).st_uid == 65534
    assert os.stat(outside).st_uid == 0


def test_a_root_below_a_directory_of_another_user_is_refused(short_tmp):
    if os.geteuid() != 0:
        pytest.skip('needs root to make a directory of another user')
    home = os.path.join(short_tmp, 'h')
    os.mkdir(home, 0o755)
    os.chown(home, 65534, 65534)
    os.mkdir(os.path.join(home, 'r'), 0o700)
    with pytest.raises(RootError, match='lies below a directory of uid 65534'):
        EmbedRoot(os.path.join(home, 'r')).open()
    os.chown(os.path.join(home, 'r'), 65534, 65534)  # the owner's own root there is fine
    EmbedRoot(os.path.join(home, 'r')).open().close()


def test_a_root_in_a_sticky_shared_directory_is_fine_a_writable_one_is_not(short_tmp):
    shared = os.path.join(short_tmp, 's')
    os.mkdir(shared)
    os.chmod(shared, 0o1777)
    os.mkdir(os.path.join(shared, 'r'), 0o700)
    EmbedRoot(os.path.join(shared, 'r')).open().close()
    os.chmod(shared, 0o777)
    with pytest.raises(RootError, match='could move the root away'):
        EmbedRoot(os.path.join(shared, 'r')).open()


def test_reading_a_huge_file_is_refused(short_tmp):
    with _rootdir(short_tmp) as rootdir:
        with open(os.path.join(rootdir.path, 'big'), 'wb') as f:
            f.truncate(10 << 30)  # sparse: costs nothing on disk
        with pytest.raises(RootError, match='larger than 64 bytes'):
            rootdir.read_file('big', limit=64)


def test_remove_file_takes_a_link_never_what_it_points_to(short_tmp):
    root = EmbedRoot(os.path.join(short_tmp, 'r'))
    outside = os.path.join(short_tmp, 'outside')
    with open(outside, 'w') as f:
        f.write('keep')
    with root.open(create=True) as rootdir:
        os.mkdir(os.path.join(root.path, 'images'), 0o700)
        os.symlink(outside, os.path.join(root.path, 'images', 'link'))
        assert rootdir.lexists('images/link') and not rootdir.lexists('images/none')
        assert not rootdir.lexists('nodir/x') and not rootdir.remove_file('nodir/x')
        assert rootdir.remove_file('images/link') and not rootdir.remove_file('images/link')
    assert open(outside).read() == 'keep'


def proof_of(path, content, mode=0o700):
    """marker_proof of a directory of ours with mode, whose marker holds content."""
    os.mkdir(path)
    os.chmod(path, mode)
    with open(os.open(os.path.join(path, MARKER_NAME), os.O_WRONLY | os.O_CREAT, 0o600), 'w') as f:
        f.write(content)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return marker_proof(fd, path)
    finally:
        os.close(fd)


def test_a_marker_proves_its_owners_private_directory(short_tmp):
    path = os.path.join(short_tmp, 'r')
    assert proof_of(path, json.dumps({'root': path})) == ({'root': path}, None)


@pytest.mark.parametrize('mode', [0o770, 0o1777])
def test_a_marker_in_a_directory_others_may_write_proves_nothing(short_tmp, mode):
    path = os.path.join(short_tmp, 'r')
    marker, why = proof_of(path, json.dumps({'root': path}), mode)
    assert marker is None and 'writable by group or others (mode %04o)' % mode in why


def test_a_marker_larger_than_a_marker_proves_nothing(short_tmp):
    path = os.path.join(short_tmp, 'r')
    marker, why = proof_of(path, json.dumps({'root': path}) + ' ' * MARKER_LIMIT)
    assert marker is None and 'does not name this root' in why


@pytest.mark.parametrize('data', [b'{"root": "/srv/vms"', b'[' * 100000, b'{"root": "/srv/other"}', b'[]',
                                  b'{"root": "/srv/vms", "x": "' + b'a' * MARKER_LIMIT + b'"}'])
def test_a_marker_that_is_not_a_small_json_object_naming_the_root_proves_nothing(data):
    # The same parse reads a marker in a root and one in an archive being restored.
    assert parse_marker(data, '/srv/vms') is None


def test_a_marker_naming_the_root_gives_its_fields():
    assert parse_marker(b'{"root": "/srv/vms", "lifecycle": "ephemeral"}', '/srv/vms') == {
        'root': '/srv/vms', 'lifecycle': 'ephemeral'}
