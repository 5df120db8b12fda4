# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private package: it is not part of this collection's public API and may change
# without notice in any release.

"""The per-root helper, by job: server.py (socket, clients, lifecycle, idle timeout),
drivers.py (libvirt's event loop and the root's two embedded connections), domains.py,
agent.py and secrets.py (the operations of _protocol.Operations), errors.py (what failed and
the fix). The client ships this package with the modules it imports as one bundle (_bundle.py)."""
