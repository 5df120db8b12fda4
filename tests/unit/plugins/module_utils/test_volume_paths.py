# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the volume module may put, grow and remove images."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
from types import SimpleNamespace

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils.root import EmbedRoot
from ansible_collections.embedvirt.libvirt.plugins.module_utils.volume import VolumeManager


class Failed(Exception):
    pass


class FakeModule:
    check_mode = False
    root_missing = False

    def __init__(self, root, **params):
        self.params = dict(path=None, state='present', format='qcow2', size=None, backing_file=None,
                           backing_format=None, encryption_passphrase=None, allow_outside_root=False)
        self.params.update(params)
        self.client = SimpleNamespace(root=EmbedRoot(root))
        self.module = SimpleNamespace(get_bin_path=lambda name, required: '/usr/bin/' + name)

    def fail(self, msg, **result):
        raise Failed(msg, result.get('error_kind'))


def manager(root='/srv/vms', **params):
    return VolumeManager(FakeModule(root, **params))


@pytest.mark.parametrize('path', ['../etc/qemu.conf', 'a/../../etc/qemu.conf', '.', '../../tmp/x'])
def test_a_relative_path_never_leaves_images(path):
    for allow in (False, True):
        with pytest.raises(Failed) as e:
            manager(path=path, allow_outside_root=allow)
        assert "leaves /srv/vms/images" in e.value.args[0]
        assert e.value.args[1] == 'path'


def test_relative_paths_inside_images():
    volume = manager(path='a/../b/c.qcow2')
    assert volume.path == '/srv/vms/images/b/c.qcow2'
    assert volume.place == ('images/b', 'c.qcow2')


def test_an_absolute_path_in_the_root_outside_images_needs_allow_outside_root():
    with pytest.raises(Failed) as e:
        manager(path='/srv/vms/etc/qemu.conf')
    assert 'inside root /srv/vms but outside its images directory' in e.value.args[0]
    assert manager(path='/srv/vms/etc/x.raw', allow_outside_root=True).place == ('etc', 'x.raw')
    assert manager(path='/srv/other/x.raw', allow_outside_root=True).place is None


def test_a_backing_file_outside_the_root_needs_allow_outside_root():
    with pytest.raises(Failed) as e:
        manager(path='x.qcow2', backing_file='/tmp/base.qcow2')
    assert "backing_file '/tmp/base.qcow2' is outside root /srv/vms" in e.value.args[0]
    assert 'allow_outside_root=true' in e.value.args[0]
    allowed = manager(path='x.qcow2', backing_file='/tmp/base.qcow2', allow_outside_root=True)
    assert allowed.backing_place is None
    # Relative to the image's directory, as qemu-img reads it.
    relative = manager(path='sub/x.qcow2', backing_file='../base.raw')
    assert (relative.backing, relative.backing_place) == ('/srv/vms/images/base.raw', ('images', 'base.raw'))
    with pytest.raises(Failed):
        manager(path='x.qcow2', backing_file='../etc/qemu.conf')


def test_links_in_the_root_are_never_followed(short_tmp):
    root = os.path.join(short_tmp, 'r')
    os.makedirs(os.path.join(root, 'images'), 0o700)
    outside = os.path.join(short_tmp, 'outside.raw')
    open(outside, 'w').close()
    os.symlink(outside, os.path.join(root, 'images', 'planted.raw'))
    os.symlink(short_tmp, os.path.join(root, 'images', 'sub'))
    for allow in (False, True):
        volume = manager(root, path='planted.raw', allow_outside_root=allow)
        volume.dir_fd = volume.pin(volume.place)
        with pytest.raises(Failed) as e:
            volume.image_exists()
        assert 'planted.raw is a symbolic link: refusing to follow it' in e.value.args[0]
        volume = manager(root, path='sub/outside.raw', allow_outside_root=allow)
        with pytest.raises(Failed) as e:
            volume.pin(volume.place)
        assert 'cannot reach %s/images/sub/outside.raw' % root in e.value.args[0]
    volume = manager(root, path='new/disk.qcow2')
    assert volume.pin(volume.place) is None  # not there yet, and not made by looking
    assert not os.path.exists(os.path.join(root, 'images', 'new'))
