# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""embedvirt.libvirt.root_dir state=absent (RootLifecycle.purge): what it finds in the root,
from the helper's domain listing, decides what it deletes."""

import os

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
