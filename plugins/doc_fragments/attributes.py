# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    # The attributes every module documents; each module sets its own support level.
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
  action:
    description: Has an action plugin, which runs on the controller; it gives the module the helper's code when
      the module must start the root's helper, and runs the module a second time for that.
    support: full
'''

    # Every module of the action group libvirt in meta/runtime.yml.
    ACTIONGROUP_LIBVIRT = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/embedvirt.libvirt.libvirt) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - embedvirt.libvirt.libvirt
'''
