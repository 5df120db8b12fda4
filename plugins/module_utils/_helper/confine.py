# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""The helper's part in confining the QEMU of a root of uid 0 (see _confinement).

Before the drivers open it lets QEMU's account through the root (a root made by an
earlier release, or restored, gets it here) and, when that account cannot open /dev/kvm,
hides /dev/kvm from the helper's own mount namespace, so that libvirt does not probe QEMU
again at every start. After the open it takes back what libvirt lends the account.
"""

import logging
import os
import pwd

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _confinement, _qemu_conf, _root
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.errors import HelperError

log = logging.getLogger('embedvirt.helper')


class Confinement:
    """What QEMU of the root runs as, found and prepared before the drivers open (first thing:
    a mount namespace is the calling thread's, and no other thread may run yet)."""

    def __init__(self, root):
        self.root = root
        self.ids = None  # (uid, gid) QEMU runs as in a root of uid 0; None: uid 0, or the owner
        self.kvm = False
        self.kvm_hidden = False

    def before_open(self):
        if os.geteuid() != 0 or os.stat(self.root.path).st_uid != 0:
            # QEMU runs as this user, who opens /dev/kvm or not, like libvirt's probe.
            self.kvm = os.access(_confinement.KVM, os.R_OK | os.W_OK)
            return
        with self.root.open() as root_dir:
            text = root_dir.read_file(_root.QEMU_CONF)
            try:
                self.ids = _qemu_conf.qemu_ids(text.decode('utf-8', 'replace')) if text is not None else None
            except KeyError as e:
                raise HelperError('account', '%s names the account %s, which does not exist on this host'
                                  % (self.root.join(_root.QEMU_CONF), e),
                                  'run embedvirt.libvirt.root_dir (state=present) on the root, which creates its '
                                  'own account, or create that account')
            if self.ids is None:
                self.kvm = os.path.exists(_confinement.KVM)
                return
            for path in root_dir.open_to_qemu(self.ids[1]):
                log.info("let QEMU's group %d through %s", self.ids[1], path)
        uid, gid = self.ids
        try:
            gids = set(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
        except KeyError:
            gids = {gid}
        self.kvm = _confinement.kvm_usable(uid, gids)
        if not self.kvm and os.path.exists(_confinement.KVM):
            try:
                _confinement.private_mounts()
                _confinement.hide_kvm()
                self.kvm_hidden = True
            except OSError as e:
                log.warning('QEMU (uid %d) cannot open %s, and it cannot be hidden from libvirt here (%s): libvirt '
                            'probes QEMU again at every guest start. Give /dev/kvm to a group of that account (kvm, '
                            '0660), or run the helper where it may have a mount namespace', uid, _confinement.KVM, e)

    def after_open(self):
        if self.ids is None:
            return
        with self.root.open() as root_dir:
            for path in root_dir.take_back_from_qemu(self.ids[0]):
                log.info('took %s back from QEMU (libvirt gives it to uid %d at its open)', path, self.ids[0])
            for path in root_dir.close_to_qemu():
                log.info('closed %s to QEMU (libvirt makes it readable by all)', path)

    def status(self):
        """What the helper_status operation says of QEMU: its ids (None: as the helper) and KVM."""
        return {'uid': self.ids[0] if self.ids else None, 'gid': self.ids[1] if self.ids else None,
                'kvm': self.kvm, 'kvm_hidden': self.kvm_hidden}
