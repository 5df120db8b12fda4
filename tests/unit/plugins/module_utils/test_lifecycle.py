# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


import hashlib
import json
import os
import shlex
import shutil
import subprocess

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils._bundle import BOOTSTRAP
from ansible_collections.embedvirt.libvirt.plugins.module_utils._boot_unit import boot_unit, systemd_escape_path, systemd_quote
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import BOOT_HELPER, MARKER_NAME, libvirt_root
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import EmbedRoot
from ansible_collections.embedvirt.libvirt.plugins.module_utils._marker import enclosing_root, proven_marker
from ansible_collections.embedvirt.libvirt.plugins.module_utils._tree import (
    DirStack, MountAppeared, delete_tree, is_guest_of, mount_points, other_filesystems, unescape_mountinfo)

# systemd-escape --path --template=embedvirt-helper@.service PATH, systemd 252 (Debian 12).
SYSTEMD_ESCAPE = [
    ('/srv/a-b', 'embedvirt-helper@srv-a\\x2db.service'),
    ('/srv/a_b', 'embedvirt-helper@srv-a_b.service'),
    ('/srv/a.b', 'embedvirt-helper@srv-a.b.service'),
    ('/srv/.hidden', 'embedvirt-helper@srv-.hidden.service'),
    ('/.x/y', 'embedvirt-helper@\\x2ex-y.service'),
    (u'/tmp/\u00e9vt-\u00fc', 'embedvirt-helper@tmp-\\xc3\\xa9vt\\x2d\\xc3\\xbc.service'),
    ('/srv/a+b@c', 'embedvirt-helper@srv-a\\x2bb\\x40c.service'),
    ('/srv/a:b', 'embedvirt-helper@srv-a:b.service'),
    ('/srv/a\\b', 'embedvirt-helper@srv-a\\x5cb.service'),
    (u'/srv/\u65e5\u672c', 'embedvirt-helper@srv-\\xe6\\x97\\xa5\\xe6\\x9c\\xac.service'),
    ('/srv/a~b', 'embedvirt-helper@srv-a\\x7eb.service'),
    ('/srv/x./.y', 'embedvirt-helper@srv-x.-.y.service'),
    ('/tmp/evt-pa-b', 'embedvirt-helper@tmp-evt\\x2dpa\\x2db.service'),
    ('/tmp/evt-pa_b', 'embedvirt-helper@tmp-evt\\x2dpa_b.service'),
    ('/', 'embedvirt-helper@-.service'),
]


@pytest.mark.parametrize('path, unit', SYSTEMD_ESCAPE)
def test_unit_names_are_what_systemd_escape_makes(path, unit):
    assert boot_unit(path, '/usr/bin/python3')['name'] == unit


def test_a_root_whose_escaped_path_is_too_long_for_a_unit_name_is_named_by_a_hash():
    fits = '/' + 'a' * (255 - len('embedvirt-helper@.service'))
    assert boot_unit(fits, '/usr/bin/python3')['name'] == 'embedvirt-helper@%s.service' % fits[1:]
    long = '/home/u/a-b/' + 'c' * 220  # each '-' takes 4 characters escaped
    unit = boot_unit(long, '/usr/bin/python3')
    assert unit['name'] == 'embedvirt-helper@%s.service' % hashlib.sha256(long.encode()).hexdigest()[:16]
    assert '"%s"' % long in unit['exec_start']


@pytest.mark.skipif(not shutil.which('systemd-escape'), reason='no systemd-escape here')
@pytest.mark.parametrize('path', [path for path, _unit in SYSTEMD_ESCAPE])
def test_unit_names_match_this_hosts_systemd_escape(path):
    made = subprocess.check_output(['systemd-escape', '--path', '--template=embedvirt-helper@.service', path])
    assert boot_unit(path, '/usr/bin/python3')['name'] == made.decode('utf-8').strip()


def test_paths_that_one_dash_rule_would_merge_get_units_of_their_own():
    names = set(systemd_escape_path(p) for p in ['/srv/a-b', '/srv/a_b', '/srv/a/b', '/srv/a.b', '/srv/a b'])
    assert len(names) == 5


@pytest.mark.parametrize('argument, quoted', [
    ('/usr/bin/python3', '"/usr/bin/python3"'),
    ('/opt/my python/bin/python3', '"/opt/my python/bin/python3"'),
    ('a"b', '"a\\"b"'),
    ('a\\b', '"a\\\\b"'),
    ('100%', '"100%%"'),
    ('$HOME', '"$$HOME"'),
    ('%h/${X}\\"', '"%%h/$${X}\\\\\\""'),
])
def test_exec_start_arguments_are_quoted_for_systemd(argument, quoted):
    assert systemd_quote(argument) == quoted


def systemd_words(command_line):
    """Split a command line as systemd does for the characters systemd_quote escapes."""
    return [word.replace('%%', '%').replace('$$', '$') for word in shlex.split(command_line)]


def test_exec_start_runs_the_root_owned_helper_for_exactly_this_root():
    unit = boot_unit('/srv/a-b', '/opt/py 3/bin/python3')
    assert unit['helper'] == BOOT_HELPER == '/usr/local/libexec/embedvirt/helper.bundle'
    assert unit['path'] == '/etc/systemd/system/embedvirt-helper@srv-a\\x2db.service'
    assert unit['wants'] == '/etc/systemd/system/multi-user.target.wants/embedvirt-helper@srv-a\\x2db.service'
    # The bundle comes on stdin (StandardInput=file:), read by the client's own bootstrap.
    assert systemd_words(unit['exec_start']) == [
        '/opt/py 3/bin/python3', '-I', '-c', BOOTSTRAP, '--embedvirt-helper', '--root', '/srv/a-b', '--idle-timeout', '0']


def test_mountinfo_paths_are_unescaped():
    assert unescape_mountinfo(b'/srv/a\\040b\\134c\\011d') == '/srv/a b\\c\td'


def test_mount_points_at_and_below_a_path_only():
    found = mount_points('/proc')
    assert '/proc' in found
    assert all(point == '/proc' or point.startswith('/proc/') for point in found)
    assert '/proc' not in mount_points('/pro')


def make_root(short_tmp, marker_mode=0o600, content=None):
    root = os.path.join(short_tmp, 'r')
    os.mkdir(root, 0o700)
    path = os.path.join(root, MARKER_NAME)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, marker_mode), 'w') as f:
        json.dump(content or {'root': root}, f)
    os.chmod(path, marker_mode)
    return root


def proof(root):
    with EmbedRoot(root).open() as root_dir:
        return proven_marker(root_dir)


def test_a_private_marker_naming_the_root_proves_it(short_tmp):
    root = make_root(short_tmp)
    assert proof(root) == ({'root': root}, None)


def test_a_marker_others_may_write_proves_nothing(short_tmp):
    root = make_root(short_tmp, marker_mode=0o666)
    marker, why = proof(root)
    assert marker is None and 'writable by group or others (mode 0666)' in why


def test_a_marker_of_another_root_proves_nothing(short_tmp):
    root = make_root(short_tmp, content={'root': '/srv/other'})
    marker, why = proof(root)
    assert marker is None and 'does not name this root' in why


def test_a_linked_marker_proves_nothing_and_is_not_followed(short_tmp):
    root = make_root(short_tmp)
    os.rename(os.path.join(root, MARKER_NAME), os.path.join(short_tmp, 'elsewhere'))
    os.symlink(os.path.join(short_tmp, 'elsewhere'), os.path.join(root, MARKER_NAME))
    marker, why = proof(root)
    assert marker is None and 'symbolic link' in why
    assert enclosing_root(os.path.join(root, 'r')) is None


def test_a_marker_fifo_does_not_block(short_tmp):
    root = os.path.join(short_tmp, 'r')
    os.mkdir(root, 0o700)
    os.mkfifo(os.path.join(root, MARKER_NAME))
    assert enclosing_root(os.path.join(root, 'r')) is None
    assert proof(root)[0] is None


NOBODY = 65534


def marked(path, mode=0o700, uid=0, marker_uid=None, content=None):
    """A directory of uid with a marker of marker_uid (default: uid) naming it."""
    os.mkdir(path)
    os.chmod(path, mode)
    with open(os.open(os.path.join(path, MARKER_NAME), os.O_WRONLY | os.O_CREAT, 0o600), 'w') as f:
        f.write(json.dumps(content or {'root': path, 'created_by': 'embedvirt.libvirt', 'lifecycle': 'ephemeral'}))
    os.chown(os.path.join(path, MARKER_NAME), uid if marker_uid is None else marker_uid, 0)
    os.chown(path, uid, 0)
    return path


@pytest.fixture
def as_root():
    if os.geteuid() != 0:
        pytest.skip('needs root to make files of another user')


def test_a_marker_a_user_planted_in_a_shared_directory_blocks_no_root_below_it(short_tmp, as_root):
    sticky = marked(os.path.join(short_tmp, 's'), mode=0o1777, marker_uid=NOBODY)
    assert enclosing_root(os.path.join(sticky, 'r')) is None


def test_a_marker_copied_into_a_directory_of_another_user_blocks_no_root_below_it(short_tmp, as_root):
    shared = marked(os.path.join(short_tmp, 's'), mode=0o755, marker_uid=NOBODY)
    assert enclosing_root(os.path.join(shared, 'r')) is None
    assert proof(shared)[0] is None


def test_a_marker_of_root_proves_no_directory_of_a_user(short_tmp, as_root):
    home = marked(os.path.join(short_tmp, 'h'), uid=NOBODY, marker_uid=0)
    marker, why = proof(home)
    assert marker is None and 'belongs to uid 0, not to the owner of the root (uid %d)' % NOBODY in why
    assert enclosing_root(os.path.join(home, 'r')) is None


def test_a_marker_with_another_name_proves_nothing(short_tmp):
    root = make_root(short_tmp)
    os.link(os.path.join(root, MARKER_NAME), os.path.join(short_tmp, 'copy'))
    marker, why = proof(root)
    assert marker is None and 'hard links' in why
    assert enclosing_root(os.path.join(root, 'r')) is None


def test_a_marker_nested_deeper_than_json_parses_proves_nothing(short_tmp):
    root = make_root(short_tmp)
    with open(os.path.join(root, MARKER_NAME), 'w') as f:
        f.write('[' * 60000)
    marker, why = proof(root)
    assert marker is None and 'does not name this root' in why
    assert enclosing_root(os.path.join(root, 'r')) is None


def test_a_users_marker_in_their_own_directory_proves_their_root(short_tmp, as_root):
    home = marked(os.path.join(short_tmp, 'h'), uid=NOBODY)
    assert proof(home)[0]['root'] == home
    assert enclosing_root(os.path.join(home, 'a', 'r')) == home


def test_a_users_marker_inside_roots_root_proves_nothing(short_tmp, as_root):
    outer = marked(os.path.join(short_tmp, 'o'), mode=0o755)
    given = marked(os.path.join(outer, 'u'), uid=NOBODY)
    marker, why = proof(given)
    assert marker is None and 'inside the root %s' % outer in why
    assert proof(outer)[0]['root'] == outer
    assert enclosing_root(os.path.join(given, 'r')) == outer


def test_the_walk_finds_nothing_foreign_in_one_filesystem_and_follows_no_link(short_tmp):
    root = make_root(short_tmp)
    os.makedirs(os.path.join(root, 'lib', 'qemu'))
    os.symlink('/proc', os.path.join(root, 'lib', 'proc'))
    with EmbedRoot(root).open() as root_dir:
        assert other_filesystems(root_dir.fd, root, root_dir.dev) == []


def make_deep(top, levels):
    """A chain of levels directories below top, by descriptors (its paths are too long for open)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _level in range(levels):
        os.mkdir('d', dir_fd=fd)
        child = os.open('d', os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    with open(os.open('leaf', os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), 'w') as f:
        f.write('x')
    os.close(fd)


def open_fds():
    return len(os.listdir('/proc/self/fd'))


def test_a_tree_1000_levels_deep_is_walked_and_deleted_with_few_descriptors(short_tmp):
    root = make_root(short_tmp)
    os.mkdir(os.path.join(root, 'lib'))
    make_deep(os.path.join(root, 'lib'), 1000)
    before = open_fds()
    with EmbedRoot(root).open() as root_dir:
        assert other_filesystems(root_dir.fd, root, root_dir.dev) == []
        dirs = DirStack(root_dir.fd, root, root_dir.dev)
        delete_tree(dirs, 'lib')
        assert dirs.names == []
        assert open_fds() == before + 1  # the root's own
    assert os.listdir(root) == [MARKER_NAME]


def test_the_delete_removes_links_and_never_what_they_point_to(short_tmp):
    root = make_root(short_tmp)
    outside = os.path.join(short_tmp, 'outside')
    os.makedirs(os.path.join(outside, 'sub'))
    with open(os.path.join(outside, 'sub', 'kept'), 'w') as f:
        f.write('kept')
    os.makedirs(os.path.join(root, 'images', 'a', 'b'))
    os.symlink(outside, os.path.join(root, 'images', 'dirlink'))
    os.symlink(os.path.join(outside, 'sub', 'kept'), os.path.join(root, 'images', 'a', 'b', 'filelink'))
    os.link(os.path.join(outside, 'sub', 'kept'), os.path.join(root, 'images', 'a', 'hard'))
    with EmbedRoot(root).open() as root_dir:
        delete_tree(DirStack(root_dir.fd, root, root_dir.dev), 'images')
    assert os.listdir(root) == [MARKER_NAME]
    with open(os.path.join(outside, 'sub', 'kept')) as f:
        assert f.read() == 'kept'


@pytest.mark.skipif(os.geteuid() != 0, reason='mounting a tmpfs needs root')
def test_a_filesystem_mounted_inside_stops_the_delete_before_it(short_tmp):
    root = make_root(short_tmp)
    mount = os.path.join(root, 'lib', 'qemu', 'mnt')
    os.makedirs(mount)
    os.makedirs(os.path.join(root, 'lib', 'a', 'b'))
    subprocess.check_call(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mount])
    try:
        with open(os.path.join(mount, 'precious'), 'w') as f:
            f.write('kept')
        with EmbedRoot(root).open() as root_dir:
            assert other_filesystems(root_dir.fd, root, root_dir.dev) == [mount]
            dirs = DirStack(root_dir.fd, root, root_dir.dev)
            with pytest.raises(MountAppeared) as e:
                delete_tree(dirs, 'lib')
            assert e.value.path == mount
            assert dirs.names == []
        with open(os.path.join(mount, 'precious')) as f:
            assert f.read() == 'kept'
    finally:
        subprocess.check_call(['umount', mount])


ROOT = '/srv/vms'
QEMU = '/usr/bin/qemu-system-x86_64'


@pytest.mark.parametrize('argv, guest', [
    ([QEMU, '-name', 'guest=web', '-chardev',
      'socket,id=charmonitor,fd=30,server=on,wait=off', '-pidfile', '/srv/vms/run/qemu/web.pid'], True),
    ([QEMU, '-chardev', 'socket,id=charmonitor,path=/srv/vms/lib/qemu/domain-1-web/monitor.sock'], True),
    ([QEMU, '-pidfile', '/srv/vms-b/run/qemu/web.pid', '-drive', 'file=/srv/vms/images/shared.qcow2'], False),
    ([QEMU, '-pidfile', '/x/srv/vms/run/qemu/web.pid'], False),
    (['/usr/bin/qemu-img', 'info', '/srv/vms/lib/qemu/x'], False),
    (['/usr/bin/qemu-nbd', '-k', '/srv/vms/run/qemu/nbd.sock', '/srv/vms/images/a.qcow2'], False),
    (['/usr/bin/python3', '/tmp/qemu-system-x86_64', '/srv/vms/run/qemu/web.pid'], False),
    (['/bin/sh', '-c', 'qemu-system-x86_64 -pidfile /srv/vms/run/qemu/web.pid'], False),
])
def test_only_guests_of_the_root_are_qemu_processes_of_it(argv, guest):
    assert is_guest_of(b'\0'.join(a.encode() for a in argv) + b'\0', ROOT) is guest


LONG = '/home/u/' + 'v' * 150


@pytest.mark.parametrize('uid', [0, 1000])
def test_guests_of_a_long_root_are_found_by_its_alias(uid):
    def argv(root):
        return b'\0'.join([QEMU.encode(), b'-chardev',
                           b'socket,id=charmonitor,path=%s/lib/qemu/domain-1-web/monitor.sock' % libvirt_root(root, uid).encode()])
    assert is_guest_of(argv(LONG), LONG) and not is_guest_of(argv(LONG + 'w'), LONG)
