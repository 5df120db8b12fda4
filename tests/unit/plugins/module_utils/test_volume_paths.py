# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the volume module may put, grow and remove images."""


import os
import subprocess
import time
from types import SimpleNamespace

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import EmbedRoot
from ansible_collections.embedvirt.libvirt.plugins.module_utils import _volume as volume_utils
from ansible_collections.embedvirt.libvirt.plugins.module_utils._volume import QEMU_IMG_TIMEOUT, VolumeManager


class Failed(Exception):
    pass


class FakeModule:
    check_mode = False
    diff_mode = False
    root_missing = False

    def __init__(self, root, **params):
        self.params = dict(path=None, state='present', format='qcow2', size=None, backing_file=None,
                           backing_format=None, encryption_passphrase=None, allow_outside_root=False)
        self.params.update(params)
        self.client = SimpleNamespace(root=EmbedRoot(root))
        self.helper_or_fail = SimpleNamespace(domain_disks=lambda: [])  # no guest uses any image
        self.commands = []

    @staticmethod
    def get_bin_path(name):
        return '/usr/bin/' + name

    def run_command(self, command, pass_fds=()):
        self.commands.append(command)
        done = subprocess.run(command, pass_fds=pass_fds, capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr

    def guard(self, function, *args):
        return function(*args)

    def fail(self, msg, **result):
        raise Failed(msg, result.get('error_kind'))


def manager(root='/srv/vms', **params):
    return VolumeManager(FakeModule(root, **params))


def refused_whatever_allow_says(**params):
    """The messages of a volume refused (error_kind path) with allow_outside_root false and true."""
    messages = []
    for allow in (False, True):
        with pytest.raises(Failed) as e:
            manager(allow_outside_root=allow, **params)
        assert e.value.args[1] == 'path'
        messages.append(e.value.args[0])
    return messages


@pytest.mark.parametrize('path', ['../etc/qemu.conf', 'a/../../etc/qemu.conf', '.', '../../tmp/x'])
def test_a_relative_path_never_leaves_images(path):
    for message in refused_whatever_allow_says(path=path):
        assert "leaves /srv/vms/images" in message


def test_relative_paths_inside_images():
    volume = manager(path='a/../b/c.qcow2')
    assert volume.path == '/srv/vms/images/b/c.qcow2'
    assert volume.place == ('images/b', 'c.qcow2')


@pytest.mark.parametrize('path', ['/srv/vms/etc/qemu.conf', '/srv/vms/lib/x.raw', '/srv/vms/x.raw', '/srv/vms'])
def test_an_absolute_path_in_the_root_outside_images_is_always_refused(path):
    for message in refused_whatever_allow_says(path=path):
        assert 'inside root /srv/vms but outside its images directory' in message
        assert 'not even with allow_outside_root' in message
    refused_whatever_allow_says(path='x.qcow2', backing_file=path)
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


@pytest.mark.parametrize('name', ['json:{"file.filename":"/etc/shadow"}', 'nbd:host:10809', 'file:x.raw'])
def test_a_backing_file_qemu_would_read_as_a_protocol_is_refused(name):
    with pytest.raises(Failed) as e:
        manager(path='x.qcow2', backing_file=name)
    assert 'as a protocol' in e.value.args[0] and e.value.args[1] == 'path'
    assert manager(path='x.qcow2', backing_file='./' + name).backing_place[0].startswith('images')


def test_every_qemu_img_run_is_bounded_and_runs_as_the_owner_of_another_users_root(monkeypatch):
    monkeypatch.setattr(os, 'geteuid', lambda: 0)
    volume = manager(path='a.qcow2')
    volume.owner = (1000, 1000)
    assert volume.command(['info', '-U', 'x']) == [
        '/usr/bin/timeout', '--kill-after=10', str(QEMU_IMG_TIMEOUT),
        'setpriv', '--reuid=1000', '--regid=1000', '--clear-groups', '--', '/usr/bin/qemu-img', 'info', '-U', 'x']
    assert 60 <= QEMU_IMG_TIMEOUT <= 600


def make_images(short_tmp):
    root = os.path.join(short_tmp, 'r')
    os.makedirs(os.path.join(root, 'images'), 0o700)
    return root, os.path.join(root, 'images')


def test_an_image_backed_by_a_fifo_fails_in_the_bound_with_the_cause(short_tmp, monkeypatch):
    root, images = make_images(short_tmp)
    os.mkfifo(os.path.join(short_tmp, 'fifo'))
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', '-u', '-b', os.path.join(short_tmp, 'fifo'),
                           '-F', 'raw', os.path.join(images, 'f.qcow2'), '1M'])
    monkeypatch.setattr(volume_utils, 'QEMU_IMG_TIMEOUT', 2)
    volume = manager(root, path='f.qcow2', size='2M')
    started = time.time()
    with pytest.raises(Failed) as e:
        volume.run()
    assert time.time() - started < 15
    assert e.value.args[1] == 'qemu_img'
    assert 'qemu-img resize of %s/f.qcow2 did not finish in 2 seconds' % images in e.value.args[0]
    assert 'backing chain' in e.value.args[0]


def test_qemu_img_info_is_told_the_format_a_guest_cannot_change(short_tmp):
    root, images = make_images(short_tmp)
    # A raw disk whose guest wrote a qcow2 header naming a backing file on the host.
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', '-u', '-b', '/etc/shadow', '-F', 'raw',
                           os.path.join(images, 'disk.raw'), '1M'])
    volume = manager(root, path='disk.raw', format='raw')
    volume.dir_fd = volume.pin(volume.place)
    with pytest.raises(Failed) as e:
        volume.check_matches(volume.info())
    assert 'exists with format qcow2, not raw' in e.value.args[0]
    assert all('-f' in command for command in volume.module.commands)
    volume = manager(root, path='plain.raw', format='raw', size='1M')
    volume.run()
    assert volume.info()['format'] == 'raw'


def test_commas_in_image_opts_are_doubled(short_tmp, monkeypatch):
    root, images = make_images(short_tmp)
    volume = manager(root, path='a,b.qcow2', size='1M', encryption_passphrase='secret words')
    monkeypatch.setattr(volume_utils.VolumeManager, 'refuse_if_in_use', lambda self, what: None)
    volume.run()
    grown = manager(root, path='a,b.qcow2', size='2M', encryption_passphrase='secret words')
    grown.run()
    assert grown.info()['virtual_size'] == 2 * 1024 * 1024
    assert any(arg.endswith('file.filename=/proc/self/fd/%d/a,,b.qcow2' % grown.dir_fd)
               for command in grown.module.commands for arg in command)
