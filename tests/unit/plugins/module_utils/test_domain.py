# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


from ansible_collections.embedvirt.libvirt.plugins.module_utils._domain import name_in_xml, render


def test_name_in_xml():
    assert name_in_xml('<domain><name> web </name></domain>') == ('web', None)
    assert name_in_xml('<domain/>') == (None, None)
    name, error = name_in_xml('<domain><name>x</name>')
    assert name is None and 'not well-formed' in error


def test_render_puts_state_first():
    text = render({'state': 'running', 'autostart': True, 'persistent': True, 'xml': '<domain/>'})
    assert text == 'state: running\nautostart: True\npersistent: True\n<domain/>'
    assert render(None) == ''
