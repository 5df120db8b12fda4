# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A root's life: create its layout, marker and qemu.conf, and purge it, only ever inside itself.

Run as uid 0 on a root that belongs to a user, everything below the root is done through
descriptors of the pinned root (root.RootDir), never by path: the owner may have put links
anywhere in it.
"""


import grp
import os
import pwd
import signal
import stat
import time

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _confinement, _qemu_conf as qemu_conf
from ansible_collections.embedvirt.libvirt.plugins.module_utils._boot_unit import boot_unit, install_boot_helper
from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import Manager
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import ACTIVE_STATES
from ansible_collections.embedvirt.libvirt.plugins.module_utils._marker import marker_fields, write_marker
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import (
    BOOT_HELPER, IMAGES, LAYOUT, MARKER_NAME, RootError, remove_alias)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import open_dir_path
from ansible_collections.embedvirt.libvirt.plugins.module_utils._marker import enclosing_root, proven_marker
from ansible_collections.embedvirt.libvirt.plugins.module_utils._tree import (
    DirStack, MountAppeared, delete_tree, mount_points, other_filesystems, qemu_processes)


class RootLifecycle(Manager):
    def __init__(self, module):
        super().__init__(module)
        self.root = module.client.root
        self.path = self.root.path
        self.diff = None

    def run(self):
        result = self.purge() if self.params['state'] == 'absent' else self.ensure_present()
        unit = boot_unit(self.path, self.module.guard(self.module.client.helper_python, for_boot=True))
        if self.params['state'] == 'present' and self.params['boot_helper']:
            unit['helper_changed'] = self.module.guard(self.ensure_boot_helper)
        result.update(changed=self.changed, actions=self.actions, root=self.path, boot_unit=unit)
        if self.diff is not None and self.module.diff_mode:
            result['diff'] = self.diff
        return result

    # --- present -----------------------------------------------------------------------
    def ensure_boot_helper(self):
        bundle = self.module.client.bundle
        needed = install_boot_helper(bundle, check_mode=True)
        if needed and self.plan('install %s' % BOOT_HELPER):
            install_boot_helper(bundle, check_mode=False)
        return needed

    def ensure_present(self):
        # A file where the root should be gets the rule and the fix, not makedirs' EEXIST.
        self.module.guard(self.root.check_access)
        outer = enclosing_root(self.path)
        if outer is not None:
            self.module.fail("root '%s' is inside the root %s: libvirt would mix their files; use "
                             "a directory outside it" % (self.path, outer), error_kind='root')
        if os.path.lexists(self.path):
            root_dir = self.module.guard(self.root.open)
        else:
            uid, gid = self.owner_ids(None)
            if not self.plan('create %s' % self.path):
                # Check mode: everything below a root that is not there would be made.
                self.actions.extend(['create %s/%s' % (self.path, d) for d in LAYOUT] + ['mark', 'write ' + qemu_conf.PATH])
                return self.present_result(uid, gid, qemu_conf_changed=True)
            root_dir = self.module.guard(self.root.open, create=True, uid=uid, gid=gid, mode=self.mode())
        try:
            return self.module.guard(self.ensure_contents, root_dir)
        finally:
            root_dir.close()

    def ensure_contents(self, root_dir):
        params = self.params
        marker, why_not = proven_marker(root_dir)
        if marker is None and os.listdir(root_dir.fd) and not params['adopt']:
            self.module.fail("'%s' is a directory with files but no embedvirt marker (%s): refusing to take it "
                             "over; set adopt=true if it is an embedded root made before, or choose an "
                             "empty or new directory" % (self.path, why_not), error_kind='not_ours')
        uid, gid = self.owner_ids(root_dir)
        text, qemu_conf_changed = self.ensure_qemu_conf(root_dir)
        mode = self.mode()
        qemu = self.qemu_ids(root_dir, text)
        if qemu is not None:
            # Its group is QEMU's, which passes through it (and QEMU_PASSAGE) and nowhere else.
            gid, mode = qemu[1], (mode & ~0o070) | stat.S_IXGRP
        st = os.fstat(root_dir.fd)
        if stat.S_IMODE(st.st_mode) != mode and self.plan('chmod %s' % self.path):
            os.fchmod(root_dir.fd, mode)
        if st.st_gid != gid and self.plan('chgrp %s' % self.path):
            os.fchown(root_dir.fd, -1, gid)
            root_dir.gid = gid  # what it gives the files it writes from now on
        for relative in LAYOUT:
            self.ensure_directory(root_dir, relative, gid)
        wanted = marker_fields(self.path, params['lifecycle'])
        if marker is None or any(marker.get(k) != v for k, v in wanted.items()):
            if self.plan('mark'):
                write_marker(root_dir, params['lifecycle'], created=(marker or {}).get('created'))
        return self.present_result(uid, gid, qemu_conf_changed=qemu_conf_changed)

    def present_result(self, uid, gid, qemu_conf_changed):
        return dict(owner=uid, group=gid, privileged=uid == 0, lifecycle=self.params['lifecycle'],
                    qemu_conf=dict(path=self.root.join(qemu_conf.PATH), changed=qemu_conf_changed))

    def mode(self):
        return int(self.params['mode'], 8)

    def owner_ids(self, root_dir):
        """uid and gid the root must have: as asked, else as it has, else the caller's."""
        params = self.params
        try:
            uid = pwd.getpwnam(params['owner']).pw_uid if params['owner'] else None
            gid = grp.getgrnam(params['group']).gr_gid if params['group'] else None
        except KeyError as e:
            self.module.fail('unknown user or group %s: create it first, or give an existing one' % e,
                             error_kind='owner')
        if root_dir is not None and uid not in (None, root_dir.uid):
            # Its files (libvirt's too) are the owner's, and trusted as the owner's.
            self.module.fail("root '%s' belongs to uid %d, not %s: a root changes hands only with all its "
                             "files; chown -R it yourself and run again, or give owner=%s"
                             % (self.path, root_dir.uid, params['owner'], pwd_name(root_dir.uid)),
                             error_kind='owner')
        if uid is None:
            uid = root_dir.uid if root_dir is not None else os.geteuid()
        if gid is None:
            gid = root_dir.gid if root_dir is not None and root_dir.uid != 0 else pwd.getpwuid(uid).pw_gid
        if os.geteuid() != 0 and uid != os.geteuid():
            self.module.fail('only root may create a root for another user: run the task as %s, or with become'
                             % params['owner'], error_kind='owner')
        return uid, gid

    def qemu_ids(self, root_dir, text):
        """(uid, gid) QEMU of a root of uid 0 runs as by its qemu.conf, or None (as uid 0, or the owner)."""
        if root_dir.uid != 0 or text is None:
            return None
        try:
            return qemu_conf.qemu_ids(text)
        except KeyError as e:
            if self.module.check_mode and qemu_conf.setting(text, 'user') == _confinement.name(self.path):
                return None  # the account it would create
            self.module.fail('%s names the account %s, which does not exist here: create it, or set qemu_conf.user '
                             'and qemu_conf.group empty for an account of the root\'s own'
                             % (self.root.join(qemu_conf.PATH), e), error_kind='qemu_conf')

    def ensure_directory(self, root_dir, relative, gid):
        """A layout directory: the owner's, made when missing; mode 0700, or 0710 where QEMU passes."""
        path = self.root.join(relative)
        try:
            os.stat(relative, dir_fd=root_dir.fd, follow_symlinks=False)
        except FileNotFoundError:
            if self.plan('create %s' % path):
                os.close(root_dir.subdir(relative, create=True))
            return
        fd = root_dir.subdir(relative)  # a real directory of the owner, or RootError with the fix
        try:
            st = os.fstat(fd)
            if st.st_gid != gid and self.plan('chgrp %s' % path):
                os.fchown(fd, -1, gid)
            mode = root_dir.dir_mode(relative)
            if stat.S_IMODE(st.st_mode) != mode and self.plan('chmod %s' % path):
                os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def ensure_qemu_conf(self, root_dir):
        """Write qemu.conf: the given settings, or the defaults when there is none or an earlier
        release's default for a root of uid 0 (QEMU as uid 0). Its text (None in check mode when
        it would be made) and whether it changed."""
        options = self.params['qemu_conf']
        try:
            fd = root_dir.open_file(qemu_conf.PATH)
        except FileNotFoundError:
            before = st = None
        else:
            with os.fdopen(fd, 'rb') as f:
                st = os.fstat(fd)
                before = f.read(1 << 20)
        legacy = before is not None and root_dir.uid == 0 and qemu_conf.is_legacy_default(before)
        if options is None and before is not None and not legacy:
            return before.decode('utf-8', 'replace'), False  # not asked: whatever is there stays
        try:
            settings = qemu_conf.settings_for(root_dir.uid, self.path, options)
            text = qemu_conf.render(settings)
        except ValueError as e:
            self.module.fail(str(e), error_kind='qemu_conf')
        # Its group is the root's, which may change after (to QEMU's account's): mode 0600 gives it nothing.
        if (before == text.encode() and st.st_uid == root_dir.uid and stat.S_IMODE(st.st_mode) == qemu_conf.MODE):
            return text, False
        self.warn_about_qemu(root_dir, settings, options, legacy)
        if settings['user'] == _confinement.name(self.path):
            created = self.module.guard(_confinement.ensure, self.path, check_mode=True)[1]
            if created and self.plan('create account %s' % settings['user']):
                self.module.guard(_confinement.ensure, self.path)
        path = self.root.join(qemu_conf.PATH)
        self.diff = dict(before_header=path, after_header=path, after=text,
                         before='' if before is None else before.decode('utf-8', 'replace'))
        if self.plan('write %s' % path):
            # Unasked, it writes only where there is none, even if one appeared meanwhile.
            root_dir.write_file(qemu_conf.PATH, text.encode(), mode=qemu_conf.MODE,
                                replace=options is not None or legacy)
        return text, True

    def warn_about_qemu(self, root_dir, settings, options, legacy):
        """Say what the qemu.conf about to be written gives away, or leaves as it was."""
        if root_dir.uid != 0:
            return
        for warning in qemu_conf.warnings(self.path, settings, (options or {}).get('namespaces') is not None):
            self.module.warn(warning)
        if legacy:
            running = [d['name'] for d in self.module.helper_or_fail.domain_list() if d['state'] in ACTIVE_STATES]
            self.module.warn("root %s was made by an earlier release, whose QEMU ran as root: its qemu.conf now names "
                             "the account %s, for guests started after its helper restarts%s"
                             % (self.path, settings['user'], '; these still run as root until then, shut them '
                                'down and start them again: %s' % ', '.join(running) if running else ''))

    # --- absent ------------------------------------------------------------------------
    def purge(self):
        params = self.params
        if not os.path.lexists(self.path):
            return dict(purged=False)
        real = os.path.realpath(self.path)
        if real != self.path:
            self.module.fail("'%s' goes through a symbolic link (it resolves to %s): refusing to purge; "
                             "give the real path of the root" % (self.path, real), error_kind='symlink')
        self.module.guard(self.root.check_access)
        try:
            root_dir = self.root.open()
        except RootError as e:
            self.module.fail("'%s' is not known to be a root of this collection (%s): refusing to delete it"
                             % (self.path, e), error_kind='not_ours')
        try:
            marker, why_not = proven_marker(root_dir)
            if marker is None:
                self.module.fail("'%s' has no embedvirt marker that proves it is a root of this collection (%s): "
                                 "refusing to delete it" % (self.path, why_not), error_kind='not_ours')
            self.refuse_mounts(root_dir)
            scratch = marker.get('lifecycle') == 'ephemeral'
            domains = self.module.helper_or_fail.domain_list()
            images = self.module.guard(self.images, root_dir)
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
            if self.plan('stop helper'):
                self.module.guard(self.module.client.stop)
                self.module.guard(self.kill_leftover_qemu)
            if self.plan('delete %s' % self.path):
                self.refuse_mounts(root_dir)  # again: nothing may have been mounted meanwhile
                self.module.guard(self.delete, root_dir)
                self.module.guard(remove_alias, self.path, root_dir.uid)
            # Its QEMU processes have ended: the account owns nothing any more.
            if root_dir.uid == 0 and self.module.guard(_confinement.remove, self.path, check_mode=True):
                if self.plan('remove account %s' % _confinement.name(self.path)):
                    self.module.guard(_confinement.remove, self.path)
        finally:
            root_dir.close()
        return dict(purged=True, domains=domains, images=images)

    def refuse_mounts(self, root_dir):
        """Fail unless everything below the root is on its own filesystem and mounted nowhere."""
        try:
            points = [p for p in mount_points(self.path) if p != self.path]
            points += [p for p in other_filesystems(root_dir.fd, self.path, os.fstat(root_dir.fd).st_dev)
                       if p not in points]
        except OSError as e:
            self.module.fail("cannot check root '%s' for mount points (%s): purge it as root or as its owner"
                             % (self.path, e), error_kind='mount')
        if points:
            self.module.fail("root '%s' has %s mounted inside it: a purge would delete what is mounted there, "
                             "or stop half way; nothing was deleted. Unmount %s first (umount %s) and purge again"
                             % (self.path, ', '.join(points), 'it' if len(points) == 1 else 'them',
                                ' '.join(sorted(points, reverse=True))), error_kind='mount', mount_points=points)

    def delete(self, root_dir):
        """Delete the pinned root, its marker last (a purge that stops half way can run again).

        delete_tree removes links, never what they point to, and stops at a filesystem
        mounted since refuse_mounts looked. A root that is itself a mount point is emptied
        and kept."""
        dirs = DirStack(root_dir.fd, self.path, root_dir.dev)
        for name in os.listdir(root_dir.fd):
            if name == MARKER_NAME:
                continue
            if stat.S_ISDIR(os.stat(name, dir_fd=root_dir.fd, follow_symlinks=False).st_mode):
                try:
                    delete_tree(dirs, name)
                except MountAppeared as e:
                    self.module.fail("root '%s' has %s mounted inside it (mounted during the purge): the purge "
                                     "stopped before it, the marker is kept; unmount it (umount %s) and purge "
                                     "again" % (self.path, e.path, e.path), error_kind='mount', mount_points=[e.path])
            else:
                os.unlink(name, dir_fd=root_dir.fd)
        os.unlink(MARKER_NAME, dir_fd=root_dir.fd)
        if self.path in mount_points(self.path):
            self.actions.append('keep %s, a mount point' % self.path)
            return
        parent = open_dir_path(os.path.dirname(self.path))
        try:
            name = os.path.basename(self.path)
            if not os.path.samestat(os.stat(name, dir_fd=parent, follow_symlinks=False), os.fstat(root_dir.fd)):
                raise RootError("'%s' was replaced while it was purged: its contents are deleted, the new "
                                "directory is kept; look at what replaced it" % self.path)
            os.rmdir(name, dir_fd=parent)
        finally:
            os.close(parent)

    def images(self, root_dir):
        """Files under <root>/images, relative to it."""
        try:
            fd = root_dir.subdir(IMAGES)
        except FileNotFoundError:
            return []
        found = []
        try:
            for directory, _dirs, files, _fd in os.fwalk('.', dir_fd=fd):
                found.extend(os.path.normpath(os.path.join(directory, name)) for name in files)
        finally:
            os.close(fd)
        return sorted(found)

    def stop_guest(self, name):
        if not self.plan('shutdown %s' % name):
            return
        timeout = self.params['shutdown_timeout']
        outcome = self.module.helper_or_fail.domain_shutdown(name=name, timeout=timeout, force=True)
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


def pwd_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
