# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A root's life: create its layout and marker, and purge it, only ever inside itself."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import grp
import json
import os
import pwd
import shutil
import signal
import time

from ansible_collections.embedvirt.libvirt.plugins.module_utils.common import Manager
from ansible_collections.embedvirt.libvirt.plugins.module_utils.helper_server import ACTIVE_STATES
from ansible_collections.embedvirt.libvirt.plugins.module_utils.root import MARKER_NAME, RootError

# Directories this collection keeps in a root; libvirt makes its own below etc, lib, run, log.
LAYOUT = ('etc', 'images', 'lib', 'lib/embedvirt', 'log', 'log/embedvirt', 'run', 'run/embedvirt')


def read_marker(path):
    """The marker of a root as a dict, or None when there is none (or it is not ours)."""
    try:
        with open(os.path.join(path, MARKER_NAME)) as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get('root') == path else None


def enclosing_root(path):
    """The nearest marked root above path, or None."""
    parent = os.path.dirname(path)
    while parent != os.path.dirname(parent):
        if read_marker(parent) is not None:
            return parent
        parent = os.path.dirname(parent)
    return None


def qemu_processes(root):
    """pids of processes whose command line points into root (QEMU of its guests)."""
    prefix = (root + '/').encode()
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as f:
                cmdline = f.read()
        except OSError:
            continue
        if b'qemu' in cmdline.split(b'\0', 1)[0] and prefix in cmdline:
            pids.append(int(entry))
    return pids


class RootLifecycle(Manager):
    def __init__(self, module):
        super(RootLifecycle, self).__init__(module)
        self.root = module.client.root
        self.path = self.root.path

    def run(self):
        if self.params['state'] == 'absent':
            return self.purge()
        return self.ensure_present()

    # --- present -----------------------------------------------------------------------
    def ensure_present(self):
        params = self.params
        # A file where the root should be gets the rule and the fix, not makedirs' EEXIST.
        self.module.guard(self.root.check_access)
        outer = enclosing_root(self.path)
        if outer is not None:
            self.module.fail("root '%s' is inside the root %s: libvirt would mix their files; use "
                             "a directory outside it" % (self.path, outer), error_kind='root')
        uid, gid = self.owner_ids()
        marker = read_marker(self.path)
        if os.path.isdir(self.path) and marker is None and os.listdir(self.path) and not params['adopt']:
            self.module.fail("'%s' is a directory with files but no embedvirt marker: refusing to take it "
                             "over; set adopt=true if it is an embedded root made before, or choose an "
                             "empty or new directory" % self.path, error_kind='not_ours')
        for relative in ('',) + LAYOUT:
            self.ensure_directory(os.path.join(self.path, relative) if relative else self.path, uid, gid)
        wanted = {'root': self.path, 'created_by': 'embedvirt.libvirt', 'lifecycle': params['lifecycle']}
        if marker is None or any(marker.get(k) != v for k, v in wanted.items()):
            if self.act('mark'):
                wanted['created'] = (marker or {}).get('created') or time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
                path = os.path.join(self.path, MARKER_NAME)
                with open(path, 'w') as f:
                    json.dump(wanted, f, indent=2, sort_keys=True)
                os.chown(path, uid, gid)
        return dict(changed=self.changed, actions=self.actions, root=self.path, owner=uid, group=gid,
                    privileged=uid == 0, lifecycle=params['lifecycle'])

    def owner_ids(self):
        params = self.params
        try:
            uid = pwd.getpwnam(params['owner']).pw_uid if params['owner'] else os.geteuid()
            gid = grp.getgrnam(params['group']).gr_gid if params['group'] else pwd.getpwuid(uid).pw_gid
        except KeyError as e:
            self.module.fail('unknown user or group %s: create it first, or give an existing one' % e,
                             error_kind='owner')
        if os.geteuid() != 0 and uid != os.geteuid():
            self.module.fail('only root may create a root for another user: run the task as %s, or with become'
                             % params['owner'], error_kind='owner')
        return uid, gid

    def ensure_directory(self, path, uid, gid):
        mode = int(self.params['mode'], 8) if path == self.path else 0o700
        if not os.path.isdir(path):
            if self.act('create %s' % path):
                # Parents of the root are ordinary directories; inside it, each one is ours.
                (os.makedirs if path == self.path else os.mkdir)(path, mode)
                os.chmod(path, mode)
                os.chown(path, uid, gid)
            return
        st = os.lstat(path)
        if (st.st_uid, st.st_gid) != (uid, gid):
            if self.act('chown %s' % path):
                os.chown(path, uid, gid)
        if st.st_mode & 0o7777 != mode:
            if self.act('chmod %s' % path):
                os.chmod(path, mode)

    # --- absent ------------------------------------------------------------------------
    def purge(self):
        params = self.params
        if not os.path.lexists(self.path):
            return dict(changed=False, actions=[], root=self.path, purged=False)
        real = os.path.realpath(self.path)
        if real != self.path:
            self.module.fail("'%s' goes through a symbolic link (it resolves to %s): refusing to purge; "
                             "give the real path of the root" % (self.path, real), error_kind='symlink')
        marker = read_marker(self.path)
        if marker is None:
            self.module.fail("'%s' has no embedvirt marker (%s), so it is not known to be a root of this "
                             "collection: refusing to delete it" % (self.path, MARKER_NAME), error_kind='not_ours')
        scratch = marker.get('lifecycle') == 'ephemeral'
        domains = self.module.call('domain_list')
        images = self.images()
        kept = []
        if domains and not (params['purge_guests'] or scratch):
            kept.append('guests %s (set purge_guests=true to delete them)'
                        % ', '.join(d['name'] for d in domains))
        if images and not (params['purge_images'] or scratch):
            kept.append('disk images %s (set purge_images=true to delete them)' % ', '.join(images))
        if kept:
            self.module.fail("root %s still holds %s: nothing was deleted" % (self.path, ' and '.join(kept)),
                             error_kind='not_empty', domains=domains, images=images)
        for domain in domains:
            if domain['state'] in ACTIVE_STATES:
                self.stop_guest(domain['name'])
        if self.act('stop helper'):
            self.module.guard(self.module.client.stop)
            self.module.guard(self.kill_leftover_qemu)
        if self.act('delete %s' % self.path):
            shutil.rmtree(self.path)  # removes symbolic links inside, never what they point to
        return dict(changed=True, actions=self.actions, root=self.path, purged=True,
                    domains=domains, images=images)

    def images(self):
        """Files under <root>/images, relative to it."""
        found = []
        base = os.path.join(self.path, 'images')
        for directory, _dirs, files in os.walk(base):
            found.extend(os.path.relpath(os.path.join(directory, name), base) for name in files)
        return sorted(found)

    def stop_guest(self, name):
        if not self.act('shutdown %s' % name):
            return
        timeout = self.params['shutdown_timeout']
        outcome = self.module.call('domain_shutdown', name=name, timeout=timeout, force=True,
                                   call_timeout=timeout + 60)
        self.actions.extend('%s %s' % (step, name) for step in outcome['steps'] if step != 'shutdown')

    def kill_leftover_qemu(self):
        """QEMU processes of this root that libvirt did not know (a lost helper's guests)."""
        pids = qemu_processes(self.path)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            deadline = time.time() + 5
            while time.time() < deadline and qemu_processes(self.path):
                time.sleep(0.1)
            pids = qemu_processes(self.path)
            if not pids:
                return
        raise RootError('QEMU processes %s of root %s did not exit' % (pids, self.path))
