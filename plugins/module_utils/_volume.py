# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Disk images of a root, handled with qemu-img: the storage driver cannot be embedded."""


import json
import os
import stat
import struct
from xml.etree import ElementTree

from ansible.module_utils.common.text.formatters import human_to_bytes

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _versions
from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import Manager
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import ACTIVE_STATES
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import IMAGES, RootError

SECRET_ID = 'embedvirt-passphrase'
LUKS_ATTEMPTS = 10
# Seconds any qemu-img run may take (create, info, resize of headers take well under one):
# an image whose backing chain names a FIFO or a stuck network file would block it forever.
QEMU_IMG_TIMEOUT = 300
# Exit codes of timeout(1) when it stopped the command (TERM, then KILL after --kill-after).
TIMED_OUT = (124, 137)
QCOW2_MAGIC = b'QFI\xfb'
QCOW2_BACKING_FORMAT = 0xE2792ACA
QCOW2_DATA_FILE = 0x44415441
# The cluster sizes qemu accepts: 512 bytes to 2 MiB.
QCOW2_CLUSTER_BITS = (9, 21)


class VolumeManager(Manager):
    """An image file, handled with qemu-img.

    An image inside the root is reached through its directory, pinned by a descriptor whose
    every component RootDir.subdir checked (a real directory of the root's owner, writable by
    nobody else), and qemu-img is given /proc/self/fd/<that descriptor>/<file>. The file
    itself is checked with lstat first: a symbolic link planted there is refused. qemu-img
    follows links, and the owner could swap the file for one between that check and
    qemu-img's open, so for a root of another user qemu-img runs as that user: whatever the
    name then leads to, it can do no more than the owner could.
    """

    def __init__(self, module):
        super().__init__(module)
        self.root = module.client.root
        self.images = self.root.join(IMAGES)
        self.qemu_img_path = module.get_bin_path('qemu-img')
        self.timeout_path = module.get_bin_path('timeout')
        self.path = self.resolve_path(self.params['path'])
        # Below the root: (directory, file name) relative to it; None for an image elsewhere.
        self.place = self.locate('path', self.path)
        self.backing = self.backing_place = self._backing_info = None
        if self.params['backing_file']:
            refuse_protocol(module, self.params['backing_file'])
            # qemu-img reads a relative backing file name from the image's directory.
            self.backing = os.path.normpath(os.path.join(os.path.dirname(self.path), self.params['backing_file']))
            self.backing_place = self.locate('backing_file', self.backing)
        self.size = self.parse_size(self.params['size']) if self.params['size'] else None
        self.used_by = None
        self.dir_fd = None
        self.owner = None
        self.qemu_uid = None
        self.data_file = None

    # --- input -------------------------------------------------------------------------
    def resolve_path(self, path):
        """Absolute, normalised image path; a relative path is under <root>/images and stays there."""
        if os.path.isabs(path):
            return os.path.normpath(path)
        full = os.path.normpath(os.path.join(self.images, path))
        if not is_below(full, self.images):
            self.module.fail("path '%s' leaves %s (it is %s): a relative path is taken under the root's "
                             "images directory and may not climb out of it with '..'; give a file below "
                             "images/, or an absolute path with allow_outside_root=true"
                             % (path, self.images, full), error_kind='path')
        return full

    def locate(self, option, path):
        """(directory, file name) of path relative to the root, or None for a path outside the
        root that allow_outside_root allows; any other path outside images/ fails, and one in
        the root outside images/ always does: those are libvirt's files (qemu.conf, its state)."""
        if is_below(path, self.images):
            return os.path.split(os.path.relpath(path, self.root.path))
        if is_below(path, self.root.path) or path == self.root.path:
            self.module.fail("%s '%s' is inside root %s but outside its images directory, among the files "
                             "libvirt keeps, which no image may be (not even with allow_outside_root): put "
                             "images under %s" % (option, self.params[option], self.root.path, self.images),
                             error_kind='path')
        if not self.params['allow_outside_root']:
            self.module.fail("%s '%s' is outside root %s: put images under %s, or set allow_outside_root=true "
                             "to use an image elsewhere" % (option, self.params[option], self.root.path, self.images),
                             error_kind='path')
        return None

    def pin(self, place, create=False):
        """Descriptor of the directory of place below the root (see the class), or None while
        it does not exist; its components are checked, never followed through a link."""
        if self.module.root_missing:
            return None
        try:
            with self.root.open() as root_dir:
                self.owner = (root_dir.uid, root_dir.gid)
                self.qemu_uid = root_dir.qemu_uid
                return root_dir.subdir(place[0], create=create)
        except FileNotFoundError:
            return None
        except RootError as e:
            self.module.fail('cannot reach %s: %s' % (os.path.join(self.root.path, *place), e), error_kind='path')

    def existing(self, dir_fd, place):
        """Whether the file of place is in dir_fd (pinned); only a regular file of the root's
        owner or of root is accepted, or one that libvirt lent the root's QEMU account (a disk of a
        running guest, a backing image: RootDir.owns), never a symbolic link."""
        path = os.path.join(self.root.path, *place)
        try:
            st = os.stat(place[1], dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(st.st_mode):
            self.module.fail('%s is a symbolic link: refusing to follow it (whoever can write its directory '
                             'could point it anywhere, and qemu-img would follow); give the path of the image '
                             'itself, or remove the link' % path, error_kind='path')
        if not stat.S_ISREG(st.st_mode):
            self.module.fail('%s is not a regular file: remove it, or give another path' % path,
                             error_kind='path')
        if st.st_uid not in (0, self.owner[0]) and not (st.st_uid == self.qemu_uid and st.st_nlink == 1):
            self.module.fail('%s belongs to uid %d, not to the owner of the root (uid %d): somebody else may '
                             'have put it there; remove it' % (path, st.st_uid, self.owner[0]), error_kind='path')
        return True

    def image_exists(self):
        if self.place is None:
            return os.path.exists(self.path)
        return self.dir_fd is not None and self.existing(self.dir_fd, self.place)

    def check_backing(self):
        """A backing file inside the root is checked like an image there: no link, no stranger's file."""
        place = self.backing_place
        if place is None:
            return
        dir_fd = self.pin(place)
        try:
            if dir_fd is None or not self.existing(dir_fd, place):
                self.module.fail("backing_file '%s' does not exist: create it first, or correct the path"
                                 % self.params['backing_file'], error_kind='path')
        finally:
            if dir_fd is not None:
                os.close(dir_fd)

    @property
    def target(self):
        """The image path qemu-img is given: through the pinned directory when inside the root."""
        if self.place is None:
            return self.path
        return '/proc/self/fd/%d/%s' % (self.dir_fd, self.place[1])

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
    def command(self, args, passphrase=None):
        """The qemu-img command line: bounded by timeout(1), as the owner of another user's root."""
        command = [self.qemu_img_path] + args[:1]
        if self.place is not None and os.geteuid() == 0 and self.owner and self.owner[0] != 0:
            command = ['setpriv', '--reuid=%d' % self.owner[0], '--regid=%d' % self.owner[1],
                       '--clear-groups', '--'] + command
        if passphrase is not None:
            command += ['--object', 'secret,id=%s,file=/dev/fd/@FD@' % SECRET_ID]
        return [self.timeout_path, '--kill-after=10', str(QEMU_IMG_TIMEOUT)] + command + args[1:]

    def qemu_img(self, args, passphrase=None, image=None):
        """Run qemu-img on image (default: the volume's); a passphrase reaches it through a
        pipe, never argv or a file."""
        image = image or self.path
        command = self.command(args, passphrase)
        for attempt in range(LUKS_ATTEMPTS):
            read_fd = None
            if passphrase is not None:
                read_fd, write_fd = os.pipe()
                os.write(write_fd, passphrase.encode('utf-8'))
                os.close(write_fd)
            try:
                rc, out, err = self.module.run_command(
                    [part.replace('@FD@', str(read_fd)) for part in command],
                    pass_fds=[fd for fd in (read_fd, self.dir_fd) if fd is not None])
            finally:
                if read_fd is not None:
                    os.close(read_fd)
            # QEMU times its LUKS key derivation with the thread's CPU clock; where that clock
            # is coarse (seen on this project's VMs) QEMU before 10 fails now and then, creating nothing.
            if 'Unable to get accurate CPU usage' not in err or not self.luks_timing_flaky():
                break
        if rc in TIMED_OUT:
            self.module.fail('qemu-img %s of %s did not finish in %d seconds and was stopped: most likely its '
                             'backing chain (or external data file) names something that does not answer, such '
                             'as a FIFO or a stuck network file; check it with qemu-img info --backing-chain and '
                             'correct or remove it' % (args[0], image, QEMU_IMG_TIMEOUT), error_kind='qemu_img')
        if rc != 0:
            self.module.fail('qemu-img %s failed for %s: %s' % (args[0], image, err.strip() or out.strip()),
                             error_kind='qemu_img')
        return out

    def luks_timing_flaky(self):
        rc, out, _err = self.module.run_command([self.qemu_img_path, '--version'])
        try:
            return rc != 0 or not _versions.at_least(out, _versions.LUKS_TIMING_FIXED)
        except ValueError:
            return True  # a build that does not say its version: keep retrying

    def info(self):
        if not self.image_exists():
            return None
        # -U: read the header even while a guest holds the image open. -f: never let qemu-img
        # guess from contents a guest may have written (a raw disk made to look like qcow2).
        data = json.loads(self.qemu_img(['info', '--output=json', '-U', '-f', self.detect_format(), self.target]))
        encrypted = bool(data.get('encrypted'))
        self.data_file = data.get('format-specific', {}).get('data', {}).get('data-file')
        return {
            'path': self.path,
            'format': data.get('format'),
            'virtual_size': data.get('virtual-size'),
            'actual_size': data.get('actual-size'),
            'backing_file': data.get('backing-filename'),
            'backing_format': data.get('backing-filename-format'),
            'encrypted': encrypted,
        }

    def detect_format(self):
        """qcow2 when the image starts with its magic, else raw: the only formats this module
        makes; read here, never through a link or from a FIFO."""
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
        if self.place is None:
            fd = os.open(self.path, flags)
        else:
            fd = os.open(self.place[1], flags | os.O_NOFOLLOW, dir_fd=self.dir_fd)
        with os.fdopen(fd, 'rb') as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self.module.fail('%s is not a regular file: remove it, or give another path' % self.path,
                                 error_kind='path')
            return 'qcow2' if f.read(len(QCOW2_MAGIC)) == QCOW2_MAGIC else 'raw'

    # --- states ------------------------------------------------------------------------
    def run(self):
        if self.place is not None:
            self.dir_fd = self.pin(self.place)
        before = self.info()
        if self.params['state'] == 'absent':
            after = self.ensure_absent(before)
        else:
            after = self.ensure_present(before)
        result = dict(changed=self.changed, volume=after, actions=self.actions)
        if self.used_by is not None:
            result['used_by'] = self.used_by
        if self.module.diff_mode:
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
            if self.backing is not None:
                self.check_backing()
            if self.backing is not None and self.size is not None:
                backing_size = self.backing_info()['virtual-size']
                if self.size < backing_size:
                    self.module.fail('size asks for %d bytes, less than the %d of backing_file %s: the guest would '
                                     'see its disk cut short, so it is refused; give a size of at least %d bytes, or '
                                     'none' % (self.size, backing_size, params['backing_file'], backing_size),
                                     error_kind='shrink')
            if self.plan('create'):
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
            runner = self.refuse_if_in_use('grow')
            if self.data_file is not None:
                self.module.fail('%s keeps its data in the external file %s (qcow2 data_file): growing it would '
                                 'grow that file too, whoever it belongs to, so it is refused; copy the image to one '
                                 'without (qemu-img convert -O qcow2 %s <new image>) and use that'
                                 % (self.path, self.data_file, self.path), error_kind='path')
            if current['encrypted'] and passphrase is None:
                self.module.fail('%s is encrypted: give encryption_passphrase to grow it' % self.path,
                                 error_kind='passphrase')
            if runner is not None:
                # The running guest's QEMU has the image open: it grows it, and the guest sees it.
                if self.plan('grow live'):
                    self.module.helper_or_fail.domain_block_resize(name=runner, disk=self.path, size=self.size)
                    return self.info()
            elif self.plan('grow'):
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
        if self.place is not None and self.dir_fd is None:
            self.dir_fd = self.pin(self.place, create=True)
        options = []
        if params['backing_file']:
            options += ['-b', params['backing_file'], '-F', params['backing_format'] or self.backing_info()['format']]
        if passphrase is not None:
            options += ['-o', 'encrypt.format=luks,encrypt.key-secret=%s' % SECRET_ID]
        args = ['create', '-q', '-f', params['format']] + options + [self.target]
        if self.size is not None:
            args.append(str(self.size))
        if self.place is None:
            directory = os.path.dirname(self.path)
            if not os.path.isdir(directory):
                self.make_outside_dirs(directory)
            self.qemu_img(args, passphrase)
            os.chmod(self.path, 0o600)
            return
        self.reserve()
        try:
            self.qemu_img(args, passphrase)
        except BaseException:  # fail_json exits: the reserved name goes again
            os.unlink(self.place[1], dir_fd=self.dir_fd)
            raise

    def make_outside_dirs(self, directory):
        """The missing directories on the way to an image outside the root: this user's, mode 0700;
        for a root whose QEMU runs as an account of its own, mode 0710 of that account's group,
        which searches them to open the image while a guest runs (as it does the root's images/).
        Each is made and changed through its own descriptor, never through a link."""
        qemu = self.root_qemu_ids()
        missing = []
        while not os.path.isdir(directory):
            missing.append(directory)
            directory = os.path.dirname(directory)
        for path in reversed(missing):
            parent = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.mkdir(os.path.basename(path), 0o700, dir_fd=parent)
                fd = os.open(os.path.basename(path), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=parent)
            finally:
                os.close(parent)
            try:
                st = os.fstat(fd)
                if qemu is not None and st.st_uid == os.geteuid() and not st.st_mode & 0o077:
                    os.fchown(fd, -1, qemu[1])
                    os.fchmod(fd, 0o710)
            finally:
                os.close(fd)

    def root_qemu_ids(self):
        """(uid, gid) of the root's own QEMU account (a root of uid 0), or None."""
        if self.module.root_missing:
            return None
        try:
            with self.root.open() as root_dir:
                return root_dir.qemu_ids
        except (FileNotFoundError, RootError):
            return None

    def reserve(self):
        """Take the new image's name with a private file of the root's owner (O_EXCL,
        O_NOFOLLOW: never through a link) before qemu-img writes the image into it."""
        fd = os.open(self.place[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=self.dir_fd)
        try:
            if os.geteuid() == 0:
                os.fchown(fd, *self.owner)
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    def backing_info(self):
        """What qemu-img says of the backing file (format, virtual-size), read once: as
        backing_format when given (see info), else in the format qemu-img finds."""
        if self._backing_info is None:
            given = ['-f', self.params['backing_format']] if self.params['backing_format'] else []
            self._backing_info = json.loads(self.qemu_img(['info', '--output=json', '-U'] + given + [self.backing],
                                                          image=self.backing))
        return self._backing_info

    def grow(self, passphrase):
        if passphrase is None:
            self.qemu_img(['resize', '-q', '-f', self.params['format'], self.target, str(self.size)])
        else:
            self.qemu_img(['resize', '-q', '--image-opts',
                           'driver=qcow2,encrypt.key-secret=%s,file.filename=%s'
                           % (SECRET_ID, self.target.replace(',', ',,')),  # QEMU's option syntax
                           str(self.size)], passphrase)

    def ensure_absent(self, current):
        if current is None:
            return None
        self.refuse_if_in_use('remove')
        if self.plan('remove'):
            if self.place is None:
                os.unlink(self.path)
            else:
                os.unlink(self.place[1], dir_fd=self.dir_fd)
        return None

    def running_user(self, active):
        """Of the running domains that name the image (active), the one that has it as a disk of
        its own in what it runs with (not as a backing file, nor only in its stored definition),
        or None: none, or several that share it."""
        if len(active) != 1:
            return None
        name = next(iter(active))
        live = self.module.helper_or_fail.domain_live_xml(name=name)
        sources = ElementTree.fromstring(live).iterfind('devices/disk/source') if live else ()
        return name if self.path in [source.get('file') for source in sources] else None

    def refuse_if_in_use(self, what):
        """Refuse what (grow or remove) on an image that running domains use, or that is a disk of
        a source of linked clones. To grow it, one running guest's QEMU may (running_user): that
        guest is returned, or None."""
        users = [disk for disk in self.module.helper_or_fail.domain_disks() if disk['path'] == self.path]
        active = set(d['domain'] for d in users if d['state'] in ACTIVE_STATES)
        runner = self.running_user(active) if what == 'grow' else None
        active = sorted(active - set([runner]))
        if active:
            self.module.fail('refusing to %s %s: it is in use by running domain(s) %s; shut them down '
                             'first' % (what, self.path, ', '.join(active)), error_kind='in_use')
        defined = sorted(set(d['domain'] for d in users))
        self.used_by = defined
        for domain in defined:
            clones = self.module.helper_or_fail.domain_clones(name=domain)
            if clones:
                self.module.fail('refusing to %s %s: it is a disk of %s, the source of the linked clones %s, '
                                 'whose disks are built on it; remove the clones first (embedvirt.libvirt.instance '
                                 'state=undefined)' % (what, self.path, domain, ', '.join(clones)), error_kind='in_use')
        if defined and what == 'remove':
            self.module.warn('%s is named in the definition of domain(s) %s, which will not start '
                             'without it' % (self.path, ', '.join(defined)))
        return runner


def refuse_protocol(module, name):
    """qemu-img reads a backing file name with ':' before any '/' as a protocol (json:, nbd:,
    file:): such a name would reach any file, or the network, whatever locate checked."""
    if ':' in name.split('/', 1)[0]:
        module.fail("backing_file '%s' would be read by qemu-img as a protocol (%s): give a path, such as "
                    "./%s" % (name, name.split(':', 1)[0], name), error_kind='path')


def is_below(path, directory):
    """Whether the normalised path is inside directory (not directory itself)."""
    return path.startswith(directory.rstrip('/') + '/')


def render(volume):
    if volume is None:
        return ''
    return ''.join('%s: %s\n' % (key, volume[key]) for key in sorted(volume))


def qcow2_header(read):
    """{backing, format, encrypted, data_file, backing_offset, backing_size, cluster_size} of a
    qcow2 image (read(offset, length) gives its bytes), or None when it is not one. backing and
    format are None when it has no backing file; data_file says whether it keeps its data in
    an external file."""
    head = read(0, 104)
    if len(head) < 72 or head[:4] != QCOW2_MAGIC:
        return None
    version, backing_offset, backing_size, cluster_bits = struct.unpack('>IQII', head[4:24])
    encrypted = struct.unpack('>I', head[32:36])[0] != 0
    data_file = False
    offset = struct.unpack('>I', head[100:104])[0] if version >= 3 and len(head) >= 104 else 72
    backing_format = None
    for _extension in range(64):  # the header extensions, each (type, length, data padded to 8)
        extension = read(offset, 8)
        if len(extension) < 8:
            break
        kind, length = struct.unpack('>II', extension)
        if kind == 0:
            break
        if kind == QCOW2_BACKING_FORMAT:
            backing_format = read(offset + 8, min(length, 64)).decode('ascii', 'replace')
        data_file = data_file or kind == QCOW2_DATA_FILE
        offset += 8 + (length + 7) // 8 * 8
    backing = None
    if backing_offset and backing_size:
        backing = read(backing_offset, min(backing_size, 4096)).decode('utf-8', 'surrogateescape')
    return dict(backing=backing, format=backing_format if backing else None, encrypted=encrypted,
                data_file=data_file, backing_offset=backing_offset, backing_size=backing_size,
                cluster_size=1 << cluster_bits if QCOW2_CLUSTER_BITS[0] <= cluster_bits <= QCOW2_CLUSTER_BITS[1] else None)
