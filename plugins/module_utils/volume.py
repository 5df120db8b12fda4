# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Disk images of a root, handled with qemu-img: the storage driver cannot be embedded."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

from ansible.module_utils.common.text.formatters import human_to_bytes

from ansible_collections.embedvirt.libvirt.plugins.module_utils.common import Manager
from ansible_collections.embedvirt.libvirt.plugins.module_utils.helper_server import ACTIVE_STATES

SECRET_ID = 'embedvirt-passphrase'
LUKS_ATTEMPTS = 10


class VolumeManager(Manager):
    def __init__(self, module):
        super(VolumeManager, self).__init__(module)
        self.root = module.client.root
        self.qemu_img_path = module.module.get_bin_path('qemu-img', required=True)
        self.path = self.resolve_path(self.params['path'])
        self.size = self.parse_size(self.params['size']) if self.params['size'] else None
        self.used_by = None

    # --- input -------------------------------------------------------------------------
    def resolve_path(self, path):
        """Absolute, normalised image path; relative paths are under <root>/images."""
        if not os.path.isabs(path):
            path = os.path.join(self.root.path, 'images', path)
        path = os.path.normpath(path)
        if self.params['allow_outside_root']:
            return path
        real_root = os.path.realpath(self.root.path)
        real_path = os.path.realpath(path)
        if os.path.commonpath([real_root, real_path]) != real_root:
            self.module.fail("path '%s' is outside root %s%s: put images under the root, or set "
                             "allow_outside_root=true to manage an image elsewhere"
                             % (self.params['path'], self.root.path,
                                ' (it resolves to %s)' % real_path if real_path != path else ''),
                             error_kind='path')
        return path

    def parse_size(self, text):
        try:
            size = human_to_bytes(text)
        except ValueError as e:
            self.module.fail("size '%s' is not a size: give bytes or a number with K, M, G or T "
                             "(powers of 1024), such as 10G (%s)" % (text, e), error_kind='size')
        if size <= 0:
            self.module.fail("size '%s' must be more than 0 bytes" % text, error_kind='size')
        return size

    # --- qemu-img ----------------------------------------------------------------------
    def qemu_img(self, args, passphrase=None):
        """Run qemu-img; a passphrase reaches it through a pipe, never argv or a file."""
        command = [self.qemu_img_path] + args[:1]
        if passphrase is not None:
            command += ['--object', 'secret,id=%s,file=/dev/fd/@FD@' % SECRET_ID]
        command += args[1:]
        for attempt in range(LUKS_ATTEMPTS):
            read_fd = None
            if passphrase is not None:
                read_fd, write_fd = os.pipe()
                os.write(write_fd, passphrase.encode('utf-8'))
                os.close(write_fd)
            try:
                rc, out, err = self.module.module.run_command(
                    [part.replace('@FD@', str(read_fd)) for part in command],
                    pass_fds=[read_fd] if read_fd is not None else [])
            finally:
                if read_fd is not None:
                    os.close(read_fd)
            # QEMU times its LUKS key derivation with the thread's CPU clock; where that clock
            # is coarse (seen on this project's VMs) it fails now and then, creating nothing.
            if 'Unable to get accurate CPU usage' not in err:
                break
        if rc != 0:
            self.module.fail('qemu-img %s failed for %s: %s' % (args[0], self.path, err.strip() or out.strip()),
                             error_kind='qemu_img')
        return out

    def info(self):
        if not os.path.exists(self.path):
            return None
        # -U: read the header even while a guest holds the image open.
        data = json.loads(self.qemu_img(['info', '--output=json', '-U', self.path]))
        encrypted = bool(data.get('encrypted'))
        return {
            'path': self.path,
            'format': data.get('format'),
            'virtual_size': data.get('virtual-size'),
            'actual_size': data.get('actual-size'),
            'backing_file': data.get('backing-filename'),
            'backing_format': data.get('backing-filename-format'),
            'encrypted': encrypted,
        }

    # --- states ------------------------------------------------------------------------
    def run(self):
        before = self.info()
        if self.params['state'] == 'absent':
            after = self.ensure_absent(before)
        else:
            after = self.ensure_present(before)
        result = dict(changed=self.changed, volume=after, actions=self.actions)
        if self.used_by is not None:
            result['used_by'] = self.used_by
        if self.module.module._diff:
            result['diff'] = dict(before=render(before), after=render(after))
        return result

    def ensure_present(self, current):
        params = self.params
        passphrase = params['encryption_passphrase']
        if current is None:
            if self.size is None and not params['backing_file']:
                self.module.fail("%s does not exist: give size (or backing_file) to create it" % self.path,
                                 error_kind='size')
            if passphrase is not None and params['format'] != 'qcow2':
                self.module.fail('encryption needs format=qcow2', error_kind='format')
            if self.act('create'):
                self.create(passphrase)
                return self.info()
            return {'path': self.path, 'format': params['format'], 'virtual_size': self.size,
                    'actual_size': None, 'backing_file': params['backing_file'],
                    'backing_format': params['backing_format'], 'encrypted': passphrase is not None}
        self.check_matches(current)
        if self.size is not None and self.size != current['virtual_size']:
            if self.size < current['virtual_size']:
                self.module.fail('%s is %d bytes and size asks for %d: shrinking would destroy data, so it '
                                 'is refused; give a size of at least %d bytes'
                                 % (self.path, current['virtual_size'], self.size, current['virtual_size']),
                                 error_kind='shrink')
            self.refuse_if_in_use('grow')
            if current['encrypted'] and passphrase is None:
                self.module.fail('%s is encrypted: give encryption_passphrase to grow it' % self.path,
                                 error_kind='passphrase')
            if self.act('grow'):
                self.grow(passphrase if current['encrypted'] else None)
                return self.info()
            return dict(current, virtual_size=self.size)
        return current

    def check_matches(self, current):
        """An existing image that differs in kind is an error, never replaced: it holds data."""
        params = self.params
        wanted = {'format': params['format'], 'encrypted': params['encryption_passphrase'] is not None}
        if params['backing_file']:
            wanted['backing_file'] = params['backing_file']
        for key, value in wanted.items():
            if current[key] != value:
                self.module.fail('%s exists with %s %s, not %s: it is left as it is; remove it first '
                                 '(state=absent) or ask for what it is' % (self.path, key, current[key], value),
                                 error_kind='mismatch', volume=current)

    def create(self, passphrase):
        params = self.params
        options = []
        if params['backing_file']:
            options += ['-b', params['backing_file'], '-F', params['backing_format'] or self.backing_format()]
        if passphrase is not None:
            options += ['-o', 'encrypt.format=luks,encrypt.key-secret=%s' % SECRET_ID]
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        args = ['create', '-q', '-f', params['format']] + options + [self.path]
        if self.size is not None:
            args.append(str(self.size))
        self.qemu_img(args, passphrase)
        os.chmod(self.path, 0o600)

    def backing_format(self):
        data = json.loads(self.qemu_img(['info', '--output=json', '-U', self.params['backing_file']]))
        return data['format']

    def grow(self, passphrase):
        if passphrase is None:
            self.qemu_img(['resize', '-q', '-f', self.params['format'], self.path, str(self.size)])
        else:
            self.qemu_img(['resize', '-q', '--image-opts',
                           'driver=qcow2,encrypt.key-secret=%s,file.filename=%s' % (SECRET_ID, self.path),
                           str(self.size)], passphrase)

    def ensure_absent(self, current):
        if current is None:
            return None
        self.refuse_if_in_use('remove')
        if self.act('remove'):
            os.unlink(self.path)
        return None

    def refuse_if_in_use(self, what):
        users = [disk for disk in self.module.call('domain_disks') if disk['path'] == self.path]
        active = sorted(set(d['domain'] for d in users if d['state'] in ACTIVE_STATES))
        if active:
            self.module.fail('refusing to %s %s: it is in use by running domain(s) %s; shut them down '
                             'first' % (what, self.path, ', '.join(active)), error_kind='in_use')
        defined = sorted(set(d['domain'] for d in users))
        self.used_by = defined
        if defined and what == 'remove':
            self.module.module.warn('%s is named in the definition of domain(s) %s, which will not start '
                                    'without it' % (self.path, ', '.join(defined)))


def render(volume):
    if volume is None:
        return ''
    return ''.join('%s: %s\n' % (key, volume[key]) for key in sorted(volume))
