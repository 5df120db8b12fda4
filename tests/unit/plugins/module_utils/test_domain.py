# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


from ansible_collections.embedvirt.libvirt.plugins.module_utils._domain import name_in_xml, render, same_definition


def test_name_in_xml():
    assert name_in_xml('<domain><name> web </name></domain>') == ('web', None)
    assert name_in_xml('<domain/>') == (None, None)
    name, error = name_in_xml('<domain><name>x</name>')
    assert name is None and 'not well-formed' in error


def test_render_puts_state_first():
    text = render({'state': 'running', 'autostart': True, 'persistent': True, 'xml': '<domain/>'})
    assert text == 'state: running\nautostart: True\npersistent: True\n<domain/>'
    assert render(None) == ''


# As libvirt 9.0 stores a q35 guest with an agent channel after its define, and after a start.
CONTROLLERS_AFTER_DEFINE = """<domain><name>t1</name><devices>
<controller type='pci' index='0' model='pcie-root'/>
<controller type='virtio-serial' index='0'><address type='pci' bus='0x02'/></controller>
<controller type='pci' index='1' model='pcie-root-port'><target chassis='1'/></controller>
<serial type='file'/></devices></domain>"""
CONTROLLERS_AFTER_START = """<domain><name>t1</name><devices>
<controller type='pci' index='0' model='pcie-root'/>
<controller type='pci' index='1' model='pcie-root-port'><target chassis='1'/></controller>
<controller type='virtio-serial' index='0'><address type='pci' bus='0x02'/></controller>
<serial type='file'/></devices></domain>"""


def test_controllers_libvirt_reorders_are_the_same_definition():
    assert same_definition(CONTROLLERS_AFTER_DEFINE, CONTROLLERS_AFTER_START)
    assert not same_definition(CONTROLLERS_AFTER_DEFINE, CONTROLLERS_AFTER_START.replace("chassis='1'", "chassis='2'"))
    assert not same_definition(CONTROLLERS_AFTER_DEFINE, CONTROLLERS_AFTER_DEFINE.replace('<serial', '<console'))
