# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A module given only the helper's version (as its action gives it) works with a helper of that
version, and asks for the helper's code, having done nothing, when a helper must start or be
replaced; the code it is given must be of that version."""

import hashlib
import os

from ansible_collections.embedvirt.libvirt.plugins.module_utils._bundle import helper_bundle
from ansible_collections.embedvirt.libvirt.plugins.modules import domain, domain_info
from ansible_collections.embedvirt.libvirt.tests.unit.plugins.module_runner import run_module

XML = "<domain type='qemu'><name>web</name><memory unit='MiB'>32</memory></domain>"


def test_the_version_alone_serves_a_helper_of_that_version(fake_helper):
    fake_helper.add_domain('web')
    result = run_module(domain_info.main, fake_helper.root, _helper_version=fake_helper.version)
    assert not result.get('failed') and [d['name'] for d in result['domains']] == ['web']


def test_a_helper_of_another_version_is_left_alone_and_the_code_asked_for(fake_helper):
    result = run_module(domain.main, fake_helper.root, _helper_version='0' * 64, name='web', xml=XML, state='running')
    assert result['failed'] and result['error_kind'] == 'helper_code_needed'
    assert fake_helper.changes() == [] and fake_helper.args_of('domain_define') == []


def test_no_helper_no_root_made_and_the_code_asked_for(tmp_path):
    root = str(tmp_path / 'vms')
    result = run_module(domain.main, root, _helper_version=helper_bundle()[1], name='web', xml=XML)
    assert result['failed'] and result['error_kind'] == 'helper_code_needed'
    assert not os.path.lexists(root)


def test_code_that_is_not_of_the_version_given_is_refused(fake_helper):
    code = 'not the helper'
    result = run_module(domain_info.main, fake_helper.root, _helper_version=hashlib.sha256(b'other').hexdigest(),
                        _helper_code=code)
    assert result['failed'] and result['error_kind'] == 'protocol'
    assert code not in str(result)  # no_log: the code is never echoed
