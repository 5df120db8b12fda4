# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    # Where a root is, for the plugins that run on the controller (the guest_agent connection and
    # the domains inventory); plugin_utils/_hypervisor.py reads these. A plugin adds its own vars,
    # env and ini entries to an option by naming the option again.
    DOCUMENTATION = r'''
options:
  hypervisor:
    description:
      - The host that runs the root's QEMU guests, as C([user@]host) for C(ssh). Omit it when that is this
        machine.
      - The root's helper is then reached over one SSH session (key or agent authentication; no password
        prompt), with C(ControlMaster) so that tasks share the connection. Nothing needs to be installed
        there but python3 and the libvirt bindings.
    type: str
  hypervisor_ssh_args:
    description:
      - Extra arguments for C(ssh) to the O(hypervisor), such as C(-p 2222 -i ~/.ssh/vms).
    type: str
    default: ''
  hypervisor_python:
    description:
      - Python on the O(hypervisor) that runs the helper.
    type: str
    default: python3
'''
