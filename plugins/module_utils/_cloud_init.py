# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""A cloud-init NoCloud seed, made on the managed host with Python's standard library alone:
its files (render) and the FAT12 filesystem labelled CIDATA that holds them (fat_image), which
cloud-init's NoCloud datasource finds by its label and mounts like any vfat disk.

FAT rather than ISO 9660: FAT12 with long names is a boot sector, two tables and a directory,
small enough to write here, where genisoimage/xorriso or mkfs.vfat would be one more package
on every managed host.

Both steps are deterministic (the same input gives the same bytes: sorted names, fixed dates,
a volume id derived from the content), so a task compares a seed's bytes to tell a change.
"""


import hashlib
import json
import math
import re
import struct

# The first line of each user-data format cloud-init knows; other text it ignores silently.
USER_DATA_STARTS = ('#cloud-config', '#!', '#include', '#cloud-boothook', '#part-handler',
                    '## template: jinja', 'Content-Type:', 'MIME-Version:')
OPTIONS = ('user_data', 'meta_data', 'network_config', 'hostname', 'ssh_authorized_keys')

# YAML is written here, not by PyYAML: ansible-core's module_utils bring no YAML, Debian 12's
# python3 does not pull in python3-yaml (priority optional), and a seed's bytes must not depend
# on what a host happens to have installed, or a task would report changes on one host and not
# on another. The subset below is block collections in the given order, strings quoted as JSON
# (a JSON string is a YAML double-quoted scalar) or, with line breaks, as literal blocks, keys of
# any scalar type, which YAML 1.1 (PyYAML's safe_load in cloud-init) reads back with the same
# types and values; what it could not read back so is refused by its path, never changed.
#
# The characters YAML 1.1 lets stand in a scalar as they are, less its line breaks other
# than \n (NEL, LS, PS) and the byte order mark; the rest are written as escapes.
_PRINTABLE = '\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff'
_UNPRINTABLE = re.compile('[^%s]' % _PRINTABLE)
_LITERAL = re.compile('(?=[^ \t\n])[%s]*\n[%s]*' % (_PRINTABLE, _PRINTABLE))
# A lone surrogate (a Python string may hold one) has no UTF-8 form: cloud-init could not write it.
_SURROGATE = re.compile('[\ud800-\udfff]')
# YAML reads an implicit key ("key: value") of at most 1024 characters; a longer one is written as
# an explicit key ("? key", then ": value" on the next line).
MAX_SIMPLE_KEY = 1024
# Nested lists and dicts deeper than this are refused, not left to Python's recursion limit (here
# and in PyYAML's composer in the guest); cloud-init's formats nest a few levels.
MAX_DEPTH = 100
# Python's int() and str() refuse longer integers (sys.int_info.default_max_str_digits, 3.11 on).
MAX_DIGITS = 4300

SECTOR = 512
LABEL = b'CIDATA     '
# A cluster count of 4085 or more makes a FAT16 to every reader (Microsoft's FAT specification).
FAT12_MAX_CLUSTERS = 4084
MAX_SECTORS_PER_CLUSTER = 64
# mtools refuses a volume whose sector count is not a multiple of the sectors per track.
SECTORS_PER_TRACK = 32
ENTRY = 32
ENTRIES_PER_SECTOR = SECTOR // ENTRY
LFN_CHARS = 13
ATTR_ARCHIVE, ATTR_VOLUME_ID, ATTR_LFN = 0x20, 0x08, 0x0F
DATE_1980_01_01 = (0 << 9) | (1 << 5) | 1
# int 18h, then halt: a BIOS told to boot the seed goes on to its next boot device.
BOOT_CODE = b'\xcd\x18\xf4\xeb\xfd'
SHORT_NAME_CHARS = re.compile(r"[^A-Z0-9!#$%&'()@^_`{}~-]")
LONG_NAME_FORBIDDEN = re.compile(r'[\x00-\x1f"*/:<>?\\|\x7f]')


def render(cloud_init, name):
    """The seed's files, {'user-data': bytes, 'meta-data': bytes[, 'network-config': bytes]}, for
    the instance module's option cloud_init (unset suboptions are None) of the guest `name`.

    The shortcuts go into a dict user_data's top level (hostname, ssh_authorized_keys); with a
    text user_data, which is not parsed here, they go into meta-data (local-hostname,
    public-keys), which NoCloud gives the image's default user and host name just the same.
    """
    options = {key: value for key, value in (cloud_init or {}).items() if value is not None}
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError('cloud_init has no option %s: use %s' % (', '.join(unknown), ', '.join(OPTIONS)))
    hostname = options.get('hostname')
    if hostname is not None and (not isinstance(hostname, str) or not hostname):
        raise ValueError('cloud_init.hostname is %r: give a host name as a non-empty string' % (hostname,))
    keys = _string_list(options.get('ssh_authorized_keys', []), 'cloud_init.ssh_authorized_keys')

    meta_data = options.get('meta_data', {})
    if not isinstance(meta_data, dict):
        raise ValueError('cloud_init.meta_data is a %s: give a dict (such as {instance-id: ..., '
                         'local-hostname: ...})' % type(meta_data).__name__)
    meta = {'instance-id': name, 'local-hostname': hostname or name}
    meta.update(meta_data)

    user_data = options.get('user_data', {})
    if isinstance(user_data, dict):
        user_data = _with_shortcuts(user_data, hostname, keys)
        user_text = '#cloud-config\n' + to_yaml(user_data, 'cloud_init.user_data')
    elif isinstance(user_data, str):
        if not user_data.startswith(USER_DATA_STARTS):
            raise ValueError('cloud_init.user_data is text that cloud-init would ignore: start it with '
                             '"#cloud-config" (a cloud config) or "#!" (a script), or give a dict')
        user_text = user_data
        if keys:
            meta['public-keys'] = _merged(meta.get('public-keys'), keys, 'cloud_init.meta_data.public-keys')
    else:
        raise ValueError('cloud_init.user_data is a %s: give a dict or text starting with "#cloud-config" '
                         'or "#!"' % type(user_data).__name__)

    files = {'user-data': user_text.encode('utf-8'),
             'meta-data': to_yaml(meta, 'cloud_init.meta_data').encode('utf-8')}
    network_config = options.get('network_config')
    if isinstance(network_config, dict):
        if 'version' not in network_config and 'version' not in (network_config.get('network') or {}):
            raise ValueError('cloud_init.network_config has no version: add version: 1 or version: 2 '
                             "(cloud-init's network configuration formats)")
        files['network-config'] = to_yaml(network_config, 'cloud_init.network_config').encode('utf-8')
    elif isinstance(network_config, str):
        files['network-config'] = network_config.encode('utf-8')
    elif network_config is not None:
        raise ValueError('cloud_init.network_config is a %s: give a dict or YAML text' % type(network_config).__name__)
    return files


def _string_list(value, where):
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ValueError('%s is %r: give a list of strings' % (where, value))
    return list(value)


def _merged(existing, more, where):
    """`existing` (a list of strings or None) followed by those of `more` it lacks."""
    merged = _string_list(existing if existing is not None else [], where)
    return merged + [item for item in more if item not in merged]


def _with_shortcuts(user_data, hostname, keys):
    user_data = dict(user_data)
    if hostname is not None:
        if user_data.setdefault('hostname', hostname) != hostname:
            raise ValueError("cloud_init.hostname '%s' and cloud_init.user_data's hostname '%s' differ: give "
                             "the host name once" % (hostname, user_data['hostname']))
    if keys:
        user_data['ssh_authorized_keys'] = _merged(user_data.get('ssh_authorized_keys'), keys,
                                                   'cloud_init.user_data.ssh_authorized_keys')
    return user_data


def to_yaml(value, where):
    """YAML text for a dict of JSON-like values, in their order; `where` names it in errors."""
    if not isinstance(value, dict):
        raise ValueError('%s is a %s: give a dict' % (where, type(value).__name__))
    if not value:
        return '{}\n'
    return '\n'.join(_block(value, 0, where)) + '\n'


def _block(value, indent, where):
    """The lines of a non-empty dict or list in block style, at `indent` spaces."""
    if indent // 2 >= MAX_DEPTH:
        raise ValueError('%s is nested more than %d levels deep, which cloud-init does not need: flatten it'
                         % (where, MAX_DEPTH))
    pad = ' ' * indent
    if isinstance(value, dict):
        for key, item in value.items():
            written = _key(key, where)
            if len(written) < MAX_SIMPLE_KEY:
                head = pad + written + ':'
            else:
                yield pad + '? ' + written
                head = pad + ':'
            yield from _entry(head, item, indent, '%s.%s' % (where, key))
    else:
        for index, item in enumerate(value):
            yield from _entry(pad + '-', item, indent, '%s[%d]' % (where, index))


def _entry(head, item, indent, where):
    if isinstance(item, (dict, list, tuple)) and item:
        if head.endswith('-'):
            # A collection in a list starts on the dash's line: "- key: value", "- - item".
            lines = list(_block(item, indent + 2, where))
            lines[0] = head + ' ' + lines[0][indent + 2:]
            yield from lines
        else:
            yield head
            yield from _block(item, indent + 2, where)
    else:
        yield from (head + ' ' + _scalar(item, indent + 2, where)).split('\n')


def _key(key, where):
    """A key as written: a string quoted, None, a boolean or a number as its scalar (which YAML reads
    back as the same type)."""
    if isinstance(key, str):
        _check_text(key, "%s has the key %r, which" % (where, key))
        return _quoted(key)
    if key is None or isinstance(key, (bool, int, float)):
        return _scalar(key, 0, '%s has a key that' % where)
    raise ValueError('%s has the key %r, a %s: give a string, number, boolean or null as a key'
                     % (where, key, type(key).__name__))


def _check_text(text, what):
    """Refuses text that has no UTF-8 form; `what` begins the message ("x.y", "x has the key 'k', which")."""
    surrogate = _SURROGATE.search(text)
    if surrogate:
        raise ValueError('%s holds the lone surrogate U+%04X at character %d, which UTF-8 cannot encode and '
                         'cloud-init could not write: give the character itself (a surrogate pair joined)'
                         % (what, ord(surrogate.group()), surrogate.start()))


def _scalar(value, indent, where):
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        if abs(value) >= 10 ** MAX_DIGITS:
            raise ValueError('%s is an integer of more than %d digits, which Python reads only as text (in the '
                             'guest too): give it as a string' % (where, MAX_DIGITS))
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return '.nan'
        if math.isinf(value):
            return '.inf' if value > 0 else '-.inf'
        text = repr(value)
        # YAML 1.1 reads 1e+16 as a string: its floats have a dot.
        return text if '.' in text or 'e' not in text else text.replace('e', '.0e')
    if isinstance(value, str):
        _check_text(value, where)
        if _LITERAL.fullmatch(value):
            return _literal(value, indent)
        return _quoted(value)
    if isinstance(value, (dict, list, tuple)):
        return '{}' if isinstance(value, dict) else '[]'
    raise ValueError('%s is a %s, which YAML cannot hold here: give a string, number, boolean, null, '
                     'list or dict' % (where, type(value).__name__))


def _quoted(text):
    return _UNPRINTABLE.sub(lambda m: '\\u%04x' % ord(m.group()), json.dumps(text, ensure_ascii=False))


def _literal(text, indent):
    """A literal block ("|") for text with line breaks that starts with neither a blank nor a
    break (the first line then sets the block's indentation)."""
    lines = text.split('\n')
    if text.endswith('\n'):
        lines.pop()
    chomping = '-' if not text.endswith('\n') else '+' if text.endswith('\n\n') else ''
    pad = ' ' * indent
    return '|' + chomping + ''.join('\n' + (pad + line if line else '') for line in lines)


def fat_image(files):
    """A FAT12 filesystem labelled CIDATA holding `files` ({name: bytes}) in its root directory,
    as the bytes of a disk image just large enough."""
    names = sorted(files)
    shorts = _short_names(names)
    long_entries = [[] if own else _long_name_entries(name, short) for name, (short, own) in zip(names, shorts)]
    root_sectors = -(-(1 + len(names) + sum(map(len, long_entries))) // ENTRIES_PER_SECTOR)
    for spc in (1, 2, 4, 8, 16, 32, MAX_SECTORS_PER_CLUSTER):
        cluster = spc * SECTOR
        needed = sum(-(-len(files[name]) // cluster) for name in names)
        # A FAT with room for a track more than needed holds what rounding up to tracks adds.
        fat_sectors = -(-((needed + SECTORS_PER_TRACK + 2) * 3 // 2 + 1) // SECTOR)
        system = 1 + 2 * fat_sectors + root_sectors
        total = -(-(system + needed * spc) // SECTORS_PER_TRACK) * SECTORS_PER_TRACK
        if (total - system) // spc <= FAT12_MAX_CLUSTERS:
            break
    else:
        raise ValueError('the cloud-init seed holds %d bytes, more than a FAT12 seed can (about %d MiB): keep '
                         'user_data, meta_data and network_config small and have the guest fetch large content'
                         % (sum(len(data) for data in files.values()),
                            FAT12_MAX_CLUSTERS * MAX_SECTORS_PER_CLUSTER * SECTOR >> 20))

    fat = [0xF00 | 0xF8, 0xFFF]
    directory = [_entry_bytes(LABEL, ATTR_VOLUME_ID, 0, 0)]
    data = []
    for name, (short, _own), long_name in zip(names, shorts, long_entries):
        content = files[name]
        count = -(-len(content) // cluster)
        first = len(fat) if count else 0
        if count:
            fat.extend(list(range(first + 1, first + count)) + [0xFFF])
        data.append(content.ljust(count * cluster, b'\0'))
        directory.extend(long_name + [_entry_bytes(short, ATTR_ARCHIVE, first, len(content))])

    volume_id = hashlib.sha256(b''.join(directory + data)).digest()[:4]
    boot = struct.pack('<3s8sHBHBHHBHHHII', b'\xeb\x3c\x90', b'EMBEDVRT', SECTOR, spc, 1, 2,
                       root_sectors * ENTRIES_PER_SECTOR, total if total < 0x10000 else 0, 0xF8, fat_sectors,
                       SECTORS_PER_TRACK, 2, 0, total if total >= 0x10000 else 0)
    boot += struct.pack('<BBB4s11s8s', 0x80, 0, 0x29, volume_id, LABEL, b'FAT12   ') + BOOT_CODE
    boot = boot.ljust(SECTOR - 2, b'\0') + b'\x55\xaa'
    table = _fat12(fat).ljust(fat_sectors * SECTOR, b'\0')
    image = boot + table + table + b''.join(directory).ljust(root_sectors * SECTOR, b'\0') + b''.join(data)
    return image.ljust(total * SECTOR, b'\0')


def _fat12(fat):
    """The table's bytes: two 12-bit entries in three bytes, low nibbles first."""
    fat = fat + [0] * (len(fat) % 2)
    return b''.join(struct.pack('<I', a | b << 12)[:3] for a, b in zip(fat[0::2], fat[1::2]))


def _entry_bytes(short, attributes, cluster, size):
    return struct.pack('<11sBBBHHHHHHHI', short, attributes, 0, 0, 0, DATE_1980_01_01, DATE_1980_01_01, 0,
                       0, DATE_1980_01_01, cluster, size)


def _short_names(names):
    """(11 bytes, own) for each name: its own 8.3 name when it is one (own True), else a unique
    BASE~N.EXT made from it (own False: the long name goes in front of it)."""
    shorts = {}
    for name in names:
        problem = _name_problem(name)
        if problem:
            raise ValueError('the seed file name %r %s: give a name such as user-data' % (name, problem))
        if sum(other.upper() == name.upper() for other in names) > 1:
            raise ValueError('the seed file names hold %r twice, ignoring case (as FAT does): rename one' % name)
        base, dot, ext = name.rpartition('.') if '.' in name.lstrip('.') else (name, '', '')
        if name == base.upper() + dot + ext.upper() and 0 < len(base) <= 8 and len(ext) <= 3 \
                and not SHORT_NAME_CHARS.search(base + ext):
            shorts[name] = (base.ljust(8) + ext.ljust(3)).encode('ascii'), True
    taken = set(short for short, _own in shorts.values())
    for name in names:
        if name in shorts:
            continue
        base, _dot, ext = name.rpartition('.') if '.' in name.lstrip('.') else (name, '', '')
        base, ext = (SHORT_NAME_CHARS.sub('_', part.upper().replace(' ', '')) for part in (base.lstrip('.'), ext))
        number = 1
        while True:
            tail = '~%d' % number
            short = ((base[:8 - len(tail)] + tail).ljust(8) + ext[:3].ljust(3)).encode('ascii')
            if short not in taken:
                break
            number += 1
        taken.add(short)
        shorts[name] = short, False
    return [shorts[name] for name in names]


def _name_problem(name):
    if not isinstance(name, str) or not name:
        return 'is not a non-empty string'
    if LONG_NAME_FORBIDDEN.search(name):
        return 'holds a character FAT does not allow (a control character or one of "*/:<>?\\|)'
    if name.endswith(('.', ' ')):
        return 'ends with a dot or a space, which FAT drops'
    if len(name.encode('utf-16-le')) > 255 * 2:
        return 'is longer than the 255 characters of a FAT long name'
    return None


def _long_name_entries(name, short):
    """The VFAT long-name entries for `name`, last part first, as they precede the 8.3 entry."""
    checksum = 0
    for byte in short:
        checksum = (((checksum & 1) << 7) + (checksum >> 1) + byte) & 0xFF
    units = name.encode('utf-16-le') + b'\0\0'
    units = units.ljust(-(-len(units) // (2 * LFN_CHARS)) * 2 * LFN_CHARS, b'\xff')
    parts = [units[start:start + 2 * LFN_CHARS] for start in range(0, len(units), 2 * LFN_CHARS)]
    return [struct.pack('<B10sBBB12sH4s', (number | 0x40) if number == len(parts) else number,
                        part[:10], ATTR_LFN, 0, checksum, part[10:22], 0, part[22:])
            for number, part in reversed(list(enumerate(parts, 1)))]
