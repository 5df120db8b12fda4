# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The action of the instances module: the module, with the helper's code when it must start one."""

from ansible_collections.embedvirt.libvirt.plugins.plugin_utils._action import EmbedvirtAction


class ActionModule(EmbedvirtAction):
    pass
