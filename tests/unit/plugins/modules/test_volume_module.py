# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""embedvirt.libvirt.volume's in-use check: the domains the helper reports using an image
(real qemu-img, fake helper)."""

import os

import pytest

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


@pytest.mark.parametrize('args, what', [(dict(state='absent'), 'remove'), (dict(size='2M'), 'grow')])
def test_an_image_of_a_running_domain_is_left_alone(fake_helper, image, args, what):
    fake_helper.domains['web']['state'] = 'running'
    result = run(fake_helper, **args)
    assert result['failed'] and result['error_kind'] == 'in_use'
    assert result['msg'] == ('refusing to %s %s: it is in use by running domain(s) web; shut them down first'
                             % (what, image))
    assert os.path.getsize(image) == MIB
    assert fake_helper.ops() == ['domain_disks']


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
