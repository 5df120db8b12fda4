# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


import os
import stat

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _confinement, _qemu_conf as qemu_conf
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import EmbedRoot


def settings_lines(text):
    return [line for line in text.splitlines() if line and not line.startswith('#')]


# qemu.conf as earlier releases wrote it for a root of root's (the root_role target's fixture).
LEGACY = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'integration', 'targets', 'root_role', 'files',
                      'qemu.conf-0.x-root')


def test_a_root_of_uid_0_runs_qemu_as_its_own_account_in_a_mount_namespace_without_virtlogd():
    account = _confinement.name('/srv/r')
    assert len(account) <= 32 and account != _confinement.name('/srv/r2')
    assert settings_lines(qemu_conf.render(qemu_conf.settings_for(0, '/srv/r', mount_namespace=True))) == [
        'user = "%s"' % account,
        'group = "%s"' % account,
        'stdio_handler = "file"',
        'security_driver = "none"',
        'cgroup_controllers = []',
        'namespaces = [ "mount" ]',
    ]


def test_without_a_mount_namespace_from_the_host_qemu_gets_none():
    assert 'namespaces = []' in qemu_conf.render(qemu_conf.settings_for(0, '/srv/r', mount_namespace=False))


def test_a_root_of_a_user_leaves_the_account_out():
    lines = settings_lines(qemu_conf.render(qemu_conf.settings_for(1000, '/home/u/r', mount_namespace=True)))
    assert not any(line.startswith(('user', 'group')) for line in lines)
    assert 'stdio_handler = "file"' in lines and 'namespaces = []' in lines


def test_only_the_default_an_earlier_release_wrote_for_root_is_legacy():
    with open(LEGACY, 'rb') as f:
        legacy = f.read()
    assert qemu_conf.is_legacy_default(legacy)
    assert not qemu_conf.is_legacy_default(legacy + b'max_files = 10\n')
    assert not qemu_conf.is_legacy_default(qemu_conf.render(qemu_conf.settings_for(0, '/r', mount_namespace=False)).encode())


@pytest.mark.parametrize('text, user', [
    ('user = "a"\n', 'a'),
    ("  user='b' # x\n", 'b'),
    ('# user = "c"\n', None),
    ('user = "a"\nuser = "d"\n', 'd'),
    ('username = "e"\n', None),
])
def test_setting_reads_what_libvirt_would(text, user):
    assert qemu_conf.setting(text, 'user') == user


def test_qemu_ids_are_none_for_root_and_numbers_for_plus_ids():
    assert qemu_conf.qemu_ids('user = "root"\n') is None
    assert qemu_conf.qemu_ids('group = "x"\n') is None
    assert qemu_conf.qemu_ids('user = "+4321"\ngroup = "+1234"\n') == (4321, 1234)
    with pytest.raises(KeyError):
        qemu_conf.qemu_ids('user = "embedvirt-no-such-user"\n')


def test_qemu_as_root_runs_swtpm_as_root_unless_extra_says_otherwise():
    # libvirt's default swtpm account (tss) cannot reach the files of a root.
    lines = settings_lines(qemu_conf.render(qemu_conf.settings_for(0, '/r', dict(user='root', group='root'))))
    assert lines[:4] == ['user = "root"', 'group = "root"', 'swtpm_user = "root"', 'swtpm_group = "root"']
    lines = settings_lines(qemu_conf.render(qemu_conf.settings_for(0, '/r', dict(user='+0', extra={'swtpm_user': '"tss"'}))))
    # swtpm's group is QEMU's, here the root's own account's group.
    assert 'swtpm_group = "%s"' % _confinement.name('/r') in lines
    assert 'swtpm_user = "tss"' in lines and 'swtpm_user = "+0"' not in lines
    own = qemu_conf.render(qemu_conf.settings_for(0, '/r', mount_namespace=True))
    assert 'swtpm' not in own


def test_options_replace_defaults_and_unset_ones_keep_them():
    settings = qemu_conf.settings_for(0, '/r', dict(user='qemu', group=None, cgroup_controllers=['cpu', 'memory'],
                                                    extra={'max_files': 4096, 'set_process_name': True,
                                                           'vnc_listen': '"0.0.0.0"', 'cgroup_device_acl': ['/dev/null']}),
                                      mount_namespace=False)
    lines = settings_lines(qemu_conf.render(settings))
    assert lines == [
        'user = "qemu"',
        'group = "%s"' % _confinement.name('/r'),
        'stdio_handler = "file"',
        'security_driver = "none"',
        'cgroup_controllers = [ "cpu", "memory" ]',
        'namespaces = []',
        'cgroup_device_acl = [ "/dev/null" ]',
        'max_files = 4096',
        'set_process_name = 1',
        'vnc_listen = "0.0.0.0"',
    ]


def test_a_value_with_double_quotes_is_single_quoted():
    assert "security_driver = 'a\"b'" in qemu_conf.render(dict(security_driver='a"b'))


@pytest.mark.parametrize('settings, says', [
    (dict(user='a\nuser = "root"'), 'holds a newline'),
    (dict(security_driver='a"\'b'), 'both kinds of quote'),
    (dict(extra={'x = 1\ny': '2'}), 'is not a name libvirt reads'),
    (dict(extra={'user': '"root"'}), 'is an option of its own'),
    (dict(extra={'max_files': '1\nuser = "root"'}), 'would start another setting'),
])
def test_what_qemu_conf_cannot_hold_is_refused(settings, says):
    with pytest.raises(ValueError) as err:
        qemu_conf.render(settings)
    assert says in str(err.value)


def test_write_default_writes_once_and_never_replaces(short_tmp):
    root = os.path.join(short_tmp, 'r')
    try:
        write_once(root)
    finally:
        if os.geteuid() == 0:
            _confinement.remove(root)


def write_once(root):
    with EmbedRoot(root).open(create=True) as root_dir:
        assert qemu_conf.write_default(root_dir)
        path = os.path.join(root, qemu_conf.PATH)
        st = os.lstat(path)
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
        if os.geteuid() == 0:
            assert _confinement.lookup(root) is not None  # made with the file that names it
        with open(path) as f:
            assert f.read() == qemu_conf.render(qemu_conf.settings_for(os.geteuid(), root))
        with open(path, 'w') as f:
            f.write('mine\n')
        assert not qemu_conf.write_default(root_dir)
    with open(path) as f:
        assert f.read() == 'mine\n'


def test_write_default_does_not_follow_a_link(short_tmp):
    root = os.path.join(short_tmp, 'r')
    os.makedirs(os.path.join(root, 'etc'), 0o700)
    outside = os.path.join(short_tmp, 'outside.conf')
    os.symlink(outside, os.path.join(root, qemu_conf.PATH))
    with EmbedRoot(root).open() as root_dir:
        assert not qemu_conf.write_default(root_dir)
    assert not os.path.lexists(outside)
