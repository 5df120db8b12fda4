# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


from xml.etree import ElementTree

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils._secret import USAGE_ELEMENTS, render, secret_xml


@pytest.mark.parametrize('usage_type, element', sorted(USAGE_ELEMENTS.items()))
def test_usage_is_named_by_the_element_libvirt_expects(usage_type, element):
    tree = ElementTree.fromstring(secret_xml(None, usage_type, 'x & y', None, True, False))
    assert tree.find('usage').get('type') == usage_type
    assert tree.findtext('usage/' + element) == 'x & y'


def test_flags_uuid_and_description():
    tree = ElementTree.fromstring(secret_xml('0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f', 'none', None,
                                             'my <key>', False, True))
    assert (tree.get('private'), tree.get('ephemeral')) == ('no', 'yes')
    assert tree.findtext('uuid') == '0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f'
    assert tree.findtext('description') == 'my <key>'
    assert tree.find('usage') is None


def test_render_never_shows_a_value():
    secret = {'uuid': 'u', 'usage_type': 'volume', 'usage_id': '/a', 'description': None,
              'private': True, 'ephemeral': False, 'value': 'hunter2'}
    text = render(secret)
    assert 'hunter2' not in text
    assert 'usage_id: /a' in text
    assert render(None) == ''
