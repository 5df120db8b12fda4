# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What confines QEMU of a root of root's: who may open /dev/kvm, and the directories QEMU's
account passes through or gets back from libvirt (real files and devices, made as root)."""

import os
import stat

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _confinement
from ansible_collections.embedvirt.libvirt.plugins.module_utils._qemu_conf import write_default
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import RootError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import EmbedRoot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='makes devices and gives files away')


@pytest.mark.parametrize('owner, group, mode, uid, gids, usable', [
    (0, 0, 0o600, 4242, {4242}, False),       # root's alone, as here: TCG
    (0, 4343, 0o660, 4242, {4242, 4343}, True),  # Debian's udev: root:kvm 0660, the account in kvm
    (0, 4343, 0o660, 4242, {4242}, False),
    (0, 4343, 0o640, 4242, {4343}, False),    # read only
    (0, 0, 0o666, 4242, {4242}, True),
    (4242, 0, 0o066, 4242, {0}, False),       # the owner's bits count for the owner, not the others'
    (0, 0, 0o600, 0, {0}, True),
])
def test_kvm_is_usable_by_the_bits_that_apply_to_the_account(short_tmp, monkeypatch, owner, group, mode, uid, gids, usable):
    kvm = os.path.join(short_tmp, 'kvm')
    os.mknod(kvm, stat.S_IFCHR | mode, os.makedev(10, 232))
    os.chown(kvm, owner, group)
    os.chmod(kvm, mode)
    monkeypatch.setattr(_confinement, 'KVM', kvm)
    assert _confinement.kvm_usable(uid, gids) is usable


def test_a_file_is_no_kvm(short_tmp, monkeypatch):
    kvm = os.path.join(short_tmp, 'kvm')
    open(kvm, 'w').close()
    os.chmod(kvm, 0o666)
    monkeypatch.setattr(_confinement, 'KVM', kvm)
    assert not _confinement.kvm_usable(4242, {4242})


def test_an_account_of_that_name_made_by_someone_else_is_not_taken(short_tmp):
    root = os.path.join(short_tmp, 'r')
    name = _confinement.name(root)
    os.system('useradd --system --no-create-home --comment "not ours" %s' % name)
    try:
        with pytest.raises(_confinement.AccountError) as err:
            _confinement.ensure(root)
        assert 'is not the QEMU account of root %s' % root in str(err.value) and 'userdel %s' % name in str(err.value)
        with pytest.raises(_confinement.AccountError):
            _confinement.remove(root)
    finally:
        os.system('userdel %s' % name)


def test_qemu_passes_through_the_root_to_its_files_and_gets_back_what_libvirt_lent(short_tmp):
    root = os.path.join(short_tmp, 'r')
    with EmbedRoot(root).open(create=True) as root_dir:
        for relative in ('etc/secrets', 'images/base', 'lib/embedvirt', 'lib/qemu/snapshot/g', 'lib/qemu/channel/target',
                         'lib/qemu/domain-1-g', 'log/console', 'run/embedvirt'):
            os.makedirs(os.path.join(root, relative))
        assert not root_dir.lets_qemu_pass
        changed = root_dir.open_to_qemu(4343)
        assert root in changed and os.path.join(root, 'images') in changed
        assert root_dir.lets_qemu_pass and root_dir.dir_mode('images') == 0o710 and root_dir.dir_mode('etc') == 0o700
        assert root_dir.open_to_qemu(4343) == []
        for relative, gid, mode in [('', 4343, 0o710), ('images', 4343, 0o710), ('log/console', 4343, 0o710),
                                    ('etc', 0, 0o755), ('run/embedvirt', 0, 0o755)]:
            st = os.stat(os.path.join(root, relative))
            assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (gid, mode), relative
        # What libvirt does at its open: its lib/qemu directories become QEMU's.
        for relative in ('lib/qemu', 'lib/qemu/snapshot', 'lib/qemu/channel/target', 'lib/qemu/domain-1-g'):
            os.chown(os.path.join(root, relative), 4242, 4343)
        os.makedirs(os.path.join(root, 'lib/qemu/planted'))
        os.chown(os.path.join(root, 'lib/qemu/planted'), 4242, 4343)
        taken = root_dir.take_back_from_qemu(4242)
    assert sorted(taken) == sorted(os.path.join(root, r) for r in (
        'lib/qemu', 'lib/qemu/snapshot', 'lib/qemu/planted', 'lib/qemu/channel/target'))
    for relative in ('lib/qemu', 'lib/qemu/snapshot', 'lib/qemu/planted'):
        st = os.stat(os.path.join(root, relative))
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o710), relative
    # A running guest's own directory stays its QEMU's.
    assert os.stat(os.path.join(root, 'lib/qemu/domain-1-g')).st_uid == 4242


def test_what_libvirt_makes_readable_by_all_on_qemus_way_becomes_roots_alone(short_tmp):
    root = os.path.join(short_tmp, 'r')
    with EmbedRoot(root).open(create=True) as root_dir:
        for relative in ('log/qemu', 'cache/qemu'):
            os.makedirs(os.path.join(root, relative), 0o755)
        assert sorted(root_dir.close_to_qemu()) == [os.path.join(root, 'cache'), os.path.join(root, 'log/qemu')]
        assert root_dir.close_to_qemu() == []
    for relative in ('log/qemu', 'cache'):
        assert stat.S_IMODE(os.stat(os.path.join(root, relative)).st_mode) == 0o700


def test_files_libvirt_lends_the_account_are_the_roots(short_tmp):
    # libvirt's DAC driver lends a running guest's disks and console log and gives a disk back
    # when its guest stops, but a backing image or a read-only disk never: where it lends
    # files, a file of the root's QEMU account is the root's.
    root = os.path.join(short_tmp, 'r')
    try:
        with EmbedRoot(root).open(create=True) as root_dir:
            write_default(root_dir)  # names the root's account, which it creates
            account = _confinement.lookup(root)
            for relative in ('images/base', 'etc', 'log/embedvirt', 'lib/qemu/nvram'):
                os.makedirs(os.path.join(root, relative), exist_ok=True)
            root_dir.open_to_qemu(account.pw_gid)
        lent = ('images/base/lent.qcow2', 'images/disk.qcow2', 'log/g-console.log', 'lib/qemu/nvram/g_VARS.fd')
        for relative in lent + ('images/base/linked.qcow2', 'etc/lent', 'log/embedvirt/helper.log'):
            with open(os.path.join(root, relative), 'w') as f:
                f.write('x')
            os.chown(os.path.join(root, relative), account.pw_uid, account.pw_gid)
        os.link(os.path.join(root, 'images/base/linked.qcow2'), os.path.join(short_tmp, 'second-name'))
        with EmbedRoot(root).open() as root_dir:
            assert root_dir.qemu_uid == account.pw_uid
            for relative in lent:
                os.close(root_dir.open_file(relative))
            # Another name elsewhere, or where libvirt lends nothing (etc, the helper's log): a stranger's.
            for relative in ('images/base/linked.qcow2', 'etc/lent', 'log/embedvirt/helper.log'):
                with pytest.raises(RootError, match='belongs to uid %d' % account.pw_uid):
                    root_dir.open_file(relative)
    finally:
        _confinement.remove(root)


def test_directories_the_volume_module_makes_outside_the_root_let_its_qemu_account_through(short_tmp):
    from ansible_collections.embedvirt.libvirt.tests.unit.plugins.module_utils.test_volume_paths import manager
    root = os.path.join(short_tmp, 'r')
    try:
        with EmbedRoot(root).open(create=True) as root_dir:
            write_default(root_dir)
            account = _confinement.lookup(root)
            root_dir.open_to_qemu(account.pw_gid)
        outside = os.path.join(short_tmp, 'out')
        manager(root, path=outside + '/a/x.raw', allow_outside_root=True).make_outside_dirs(outside + '/a')
        for path in (outside, outside + '/a'):
            st = os.stat(path)
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, account.pw_gid, 0o710), path
    finally:
        _confinement.remove(root)
    # A root whose QEMU runs as root (or its owner): private to the task's user, as before.
    other = os.path.join(short_tmp, 'o')
    with EmbedRoot(other).open(create=True):
        pass
    manager(other, path=short_tmp + '/priv/x.raw', allow_outside_root=True).make_outside_dirs(short_tmp + '/priv')
    assert stat.S_IMODE(os.stat(short_tmp + '/priv').st_mode) == 0o700


def in_child(function):
    """function() in a forked child (it may change the child's mounts and root): its exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only reports
        code = 2
        try:
            code = function()
        finally:
            os._exit(code)
    return os.WEXITSTATUS(os.waitpid(pid, 0)[1])


def test_entering_the_namespace_of_a_chroot_leaves_it(short_tmp):
    """libvirt makes QEMU's /dev from a process that enters QEMU's mount namespace: in a chroot
    (whose / is a mount point, so that the namespace itself works) that process starts outside."""
    tree = os.path.join(short_tmp, 'tree')
    os.makedirs(os.path.join(tree, 'proc'))

    def chrooted():
        _confinement.private_mounts()
        if _confinement.entered_root_moves():
            return 3
        _confinement.libc_call('mount', tree.encode(), tree.encode(), None, _confinement.MS_BIND, None)
        _confinement.libc_call('mount', b'/proc', os.path.join(tree, 'proc').encode(), None,
                               _confinement.MS_BIND | _confinement.MS_REC, None)
        os.chroot(tree)
        os.chdir('/')
        return 0 if _confinement.entered_root_moves() else 4
    assert in_child(chrooted) == 0


def test_the_probe_names_a_chroot(monkeypatch):
    monkeypatch.setattr(_confinement, 'private_mounts', lambda: None)
    monkeypatch.setattr(_confinement, 'entered_root_moves', lambda: True)
    assert 'runs in a chroot' in _confinement.mount_namespace_problem()
    monkeypatch.setattr(_confinement, 'entered_root_moves', lambda: False)
    assert _confinement.mount_namespace_problem() is None
