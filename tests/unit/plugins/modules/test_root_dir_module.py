# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""embedvirt.libvirt.root_dir state=absent (RootLifecycle.purge): what it finds in the root,
from the helper's domain listing, decides what it deletes."""

import os
import stat

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _confinement

from ansible_collections.embedvirt.libvirt.plugins.modules import root_dir
from ansible_collections.embedvirt.libvirt.tests.unit.plugins.module_runner import run_module


def run(fake, **args):
    return run_module(root_dir.main, fake.root, **args)


@pytest.fixture
def marked(fake_helper):
    """The fake's root, taken over by root_dir (it has files but no marker yet)."""
    result = run(fake_helper, adopt=True)
    assert result['changed'] and 'mark' in result['actions']
    return fake_helper


def test_a_root_with_guests_is_kept_and_the_guests_named(marked):
    marked.add_domain('web', state='running')
    marked.add_domain('db')
    result = run(marked, state='absent')
    assert result['failed'] and result['error_kind'] == 'not_empty'
    assert 'still holds guests db, web (set purge_guests=true to delete them): nothing was deleted' in result['msg']
    assert [d['name'] for d in result['domains']] == ['db', 'web']
    assert os.path.isdir(marked.root) and marked.changes() == []


def test_check_mode_purge_lists_what_it_would_stop_and_changes_nothing(marked):
    marked.add_domain('web', state='running')
    marked.add_domain('db')
    result = run(marked, state='absent', purge_guests=True, check_mode=True)
    assert result['changed'] and result['purged']
    # Run as root, the root is root's, with a QEMU account of its own.
    account = ['remove account %s' % _confinement.name(marked.root)] if os.geteuid() == 0 else []
    assert result['actions'] == ['shutdown web', 'stop helper', 'delete %s' % marked.root] + account
    assert marked.ops() == ['domain_list'] and os.path.isdir(marked.root)


# qemu.conf as earlier releases wrote it for a root of root's (the root_role target's fixture).
LEGACY_QEMU_CONF = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'integration', 'targets', 'root_role', 'files',
                                'qemu.conf-0.x-root')
as_root = pytest.mark.skipif(os.geteuid() != 0, reason='a root of root\'s gets a QEMU account only when root makes it')


@as_root
def test_a_root_of_roots_runs_qemu_as_its_own_account_which_passes_through_it_only(fake_helper):
    result = run(fake_helper, adopt=True)
    account = _confinement.lookup(fake_helper.root)
    assert result['changed'] and 'create account %s' % account.pw_name in result['actions']
    with open(os.path.join(fake_helper.root, 'etc', 'qemu.conf')) as f:
        assert 'user = "%s"\ngroup = "%s"\n' % (account.pw_name, account.pw_name) in f.read()
    st = os.stat(fake_helper.root)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, account.pw_gid, 0o710)
    for relative, mode in [('images', 0o710), ('images/base', 0o710), ('lib', 0o710), ('log', 0o710),
                           ('etc', 0o700), ('lib/embedvirt', 0o700), ('run/embedvirt', 0o700), ('log/embedvirt', 0o700)]:
        assert stat.S_IMODE(os.stat(os.path.join(fake_helper.root, relative)).st_mode) == mode, relative
    again = run(fake_helper)
    assert not again['changed'], again['actions']


@as_root
def test_a_root_an_earlier_release_made_moves_to_its_own_account_naming_the_guests_still_as_root(fake_helper):
    os.makedirs(os.path.join(fake_helper.root, 'etc'), exist_ok=True)
    with open(LEGACY_QEMU_CONF) as f, open(os.path.join(fake_helper.root, 'etc', 'qemu.conf'), 'w') as out:
        out.write(f.read())
    fake_helper.add_domain('web', state='running')
    fake_helper.add_domain('db')
    result = run(fake_helper, adopt=True)
    account = _confinement.name(fake_helper.root)
    assert result['qemu_conf']['changed']
    assert any('earlier release' in w and account in w and 'down and start them again: web' in w
               for w in result['warnings']), result['warnings']
    with open(os.path.join(fake_helper.root, 'etc', 'qemu.conf')) as f:
        assert 'user = "%s"' % account in f.read()


@as_root
def test_qemu_as_root_is_possible_when_asked_and_says_what_it_gives_away(fake_helper):
    result = run(fake_helper, adopt=True, qemu_conf=dict(user='root', group='root'))
    assert any('runs as root, with every capability' in w for w in result['warnings']), result['warnings']
    st = os.stat(fake_helper.root)
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0o700)
