# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The domain_events source's arguments (its pure logic; the integration targets events and
guest_agent run it in the real ansible-rulebook)."""

import pytest

from ansible_collections.embedvirt.libvirt.extensions.eda.plugins.event_source.domain_events import settings


def test_a_path_takes_the_sources_arguments_and_a_dict_its_own():
    config = settings({'roots': ['/a', {'path': '/b', 'hypervisor': 'admin@h2', 'python': None}],
                       'hypervisor': 'admin@h1', 'ssh_args': '-p 2222', 'python': '/usr/bin/python3'})
    assert config['roots'] == [
        {'path': '/a', 'hypervisor': 'admin@h1', 'ssh_args': '-p 2222', 'python': '/usr/bin/python3', 'helper_python': None},
        {'path': '/b', 'hypervisor': 'admin@h2', 'ssh_args': '-p 2222', 'python': None, 'helper_python': None},
    ]


def test_root_is_one_root():
    assert [target['path'] for target in settings({'root': '/a'})['roots']] == ['/a']


@pytest.mark.parametrize('roots', [None, [], '/a', [{'hypervisor': 'h'}], [{'path': ''}], [{'path': '/a', 'ssh': 'x'}],
                                   [3]])
def test_roots_that_are_not_paths_or_dicts_with_a_path_are_refused(roots):
    with pytest.raises(ValueError, match='roots'):
        settings({'roots': roots})
