# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""embedvirt.libvirt.volume's in-use check (the domains the helper reports using an image) and
how it reads a backing file (real qemu-img, fake helper)."""

import os
import subprocess

import pytest
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.embedvirt.libvirt.plugins.modules import volume
from ansible_collections.embedvirt.libvirt.tests.unit.plugins.module_runner import run_module

MIB = 1 << 20


@pytest.fixture
def image(fake_helper):
    """A raw 1 MiB image in the root's images/, named in the definition of domain web."""
    path = os.path.join(fake_helper.root, 'images', 'disk.img')
    with open(path, 'wb') as f:
        f.truncate(MIB)
    fake_helper.add_domain('web', xml='<domain type="qemu"><name>web</name><devices><disk type="file">'
                                      '<source file="%s"/></disk></devices></domain>' % path)
    return path


def run(fake, **args):
    return run_module(volume.main, fake.root, path='disk.img', format='raw', **args)


def test_an_image_of_a_running_domain_is_not_removed(fake_helper, image):
    fake_helper.domains['web']['state'] = 'running'
    result = run(fake_helper, state='absent')
    assert result['failed'] and result['error_kind'] == 'in_use'
    assert result['msg'] == ('refusing to remove %s: it is in use by running domain(s) web; shut them down first'
                             % image)
    assert os.path.exists(image)
    assert fake_helper.ops() == ['domain_disks']


def test_an_image_two_running_domains_share_is_not_grown(fake_helper, image):
    fake_helper.add_domain('db', xml='<domain type="qemu"><name>db</name><devices><disk type="file">'
                                     '<source file="%s"/></disk></devices></domain>' % image)
    fake_helper.domains['web']['state'] = fake_helper.domains['db']['state'] = 'running'
    result = run(fake_helper, size='2M')
    assert result['failed'] and result['error_kind'] == 'in_use'
    assert result['msg'] == ('refusing to grow %s: it is in use by running domain(s) db, web; shut them down first'
                             % image)
    assert os.path.getsize(image) == MIB
    assert fake_helper.changes() == []


def test_removing_an_image_of_a_defined_domain_warns_and_names_it(fake_helper, image):
    result = run(fake_helper, state='absent')
    assert result['changed'] and result['actions'] == ['remove'] and result['used_by'] == ['web']
    assert any('named in the definition of domain(s) web' in w for w in result['warnings'])
    assert not os.path.exists(image)


def test_a_disk_of_the_source_of_linked_clones_is_not_removed(fake_helper, image):
    fake_helper.add_domain('c1', clone_of='web')
    fake_helper.add_domain('c2', clone_of='web')
    result = run(fake_helper, state='absent')
    assert result['failed'] and result['error_kind'] == 'in_use' and 'linked clones c1, c2' in result['msg']
    assert os.path.getsize(image) == MIB and fake_helper.changes() == []


def test_an_image_nobody_names_is_removed_without_a_word(fake_helper, image):
    fake_helper.domains.clear()
    result = run(fake_helper, state='absent', check_mode=True)
    assert result['changed'] and result['used_by'] == [] and result['warnings'] == []
    assert os.path.exists(image)


@pytest.fixture
def qemu_img_runs(monkeypatch):
    """The argument lists of every qemu-img run (after timeout and qemu-img), run for real."""
    runs = []
    real = AnsibleModule.run_command

    def recording(self, args, **kwargs):
        runs.append(args[next(i for i, arg in enumerate(args) if os.path.basename(arg) == 'qemu-img') + 1:])
        return real(self, args, **kwargs)
    monkeypatch.setattr(AnsibleModule, 'run_command', recording)
    return runs


@pytest.fixture
def looks_like_qcow2(fake_helper):
    """A raw image a guest made look like a qcow2 of 1 GiB: it holds one's header."""
    path = os.path.join(fake_helper.root, 'images', 'raw.img')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', path, '1G'], check=True)
    return path


def overlay(fake, **args):
    return run_module(volume.main, fake.root, path='over.qcow2', backing_file='raw.img', backing_format='raw', **args)


def test_a_backing_file_of_a_given_format_is_read_in_that_format(fake_helper, looks_like_qcow2, qemu_img_runs):
    raw_size = -(-os.path.getsize(looks_like_qcow2) // 512) * 512  # qemu-img counts whole sectors of a raw file
    result = overlay(fake_helper, size='1M')
    assert not result.get('failed'), result['msg']
    assert result['volume']['virtual_size'] == MIB and result['volume']['backing_format'] == 'raw'
    assert ['info', '--output=json', '-U', '-f', 'raw', looks_like_qcow2] in qemu_img_runs
    # Smaller than the raw file (not than the 1 GiB its header claims) is still refused.
    refused = run_module(volume.main, fake_helper.root, path='small.qcow2', backing_file='raw.img',
                         backing_format='raw', size=str(raw_size - 1))
    assert refused['failed'] and refused['error_kind'] == 'shrink' and '%d of backing_file' % raw_size in refused['msg']


def test_without_size_a_backing_file_of_a_given_format_is_not_read(fake_helper, looks_like_qcow2, qemu_img_runs):
    result = overlay(fake_helper)
    assert result['changed'] and result['volume']['backing_format'] == 'raw'
    assert [run for run in qemu_img_runs if looks_like_qcow2 in run] == []
