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
      - Python on the O(hypervisor) that runs the relay to the root's helper there; it needs only the standard
        library.
    type: str
    default: python3
  helper_python:
    description:
      - Python, on the host of the root (this machine, or the O(hypervisor)), that runs the root's helper, the
        only process that imports the libvirt bindings; an absolute path. The plugin itself may run in any
        Python (Ansible in a venv).
      - When omitted, the Python that runs the plugin (or the relay) if it has the bindings, else the first of
        C(/usr/bin/python3), C(/usr/libexec/platform-python) and C(/usr/local/bin/python3) that has them.
      - A helper that already runs is used whatever its Python.
    type: path
'''
