# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The NoCloud seed: its files read back with PyYAML (what cloud-init reads them with), its
FAT12 image read back by mtools, dosfstools' fsck, blkid and a small reader written here."""


import math
import os
import random
import shutil
import struct
import subprocess

import pytest
import yaml

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _cloud_init as cloud_init

KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBpWfH2p+3l6Vh8O0aQ3o1n9Qr5y7C7m2Tt0nQf0u1Lx alice@host'
NOTHING = dict(user_data=None, meta_data=None, network_config=None, hostname=None, ssh_authorized_keys=None)


def options(**given):
    """cloud_init as the instance module hands it over: every suboption, None when not set."""
    return dict(NOTHING, **given)


def cloud_config(data):
    text = data.decode('utf-8')
    assert text.startswith('#cloud-config\n')
    return yaml.safe_load(text)


# --- render ---------------------------------------------------------------------------------

def test_a_dict_user_data_keeps_its_order_and_gets_the_shortcuts_at_its_end():
    user_data = {'users': [{'name': 'alice', 'sudo': 'ALL=(ALL) NOPASSWD:ALL', 'ssh_authorized_keys': [KEY]}],
                 'write_files': [{'path': '/etc/motd', 'content': 'Hello\nfrom the seed\n', 'permissions': '0644'}],
                 'runcmd': [['touch', '/run/x'], 'echo done'],
                 'ssh_authorized_keys': ['ssh-rsa AAAA old@host']}
    files = cloud_init.render(options(user_data=user_data, hostname='g1', ssh_authorized_keys=[KEY]), 'vm')
    assert sorted(files) == ['meta-data', 'user-data']
    read = cloud_config(files['user-data'])
    assert list(read) == ['users', 'write_files', 'runcmd', 'ssh_authorized_keys', 'hostname']
    assert read == dict(user_data, ssh_authorized_keys=['ssh-rsa AAAA old@host', KEY], hostname='g1')
    assert yaml.safe_load(files['meta-data']) == {'instance-id': 'vm', 'local-hostname': 'g1'}
    # The caller's dict is not changed.
    assert 'hostname' not in user_data and user_data['ssh_authorized_keys'] == ['ssh-rsa AAAA old@host']


def test_a_key_given_twice_is_written_once():
    files = cloud_init.render(options(user_data={'ssh_authorized_keys': [KEY]}, ssh_authorized_keys=[KEY]), 'vm')
    assert cloud_config(files['user-data'])['ssh_authorized_keys'] == [KEY]


def test_without_options_the_seed_names_the_instance_and_host_after_the_guest():
    files = cloud_init.render(options(), 'vm1')
    assert files == {'user-data': b'#cloud-config\n{}\n',
                     'meta-data': b'"instance-id": "vm1"\n"local-hostname": "vm1"\n'}
    assert cloud_init.render({}, 'vm1') == files


def test_meta_data_overrides_the_defaults_in_place():
    files = cloud_init.render(options(meta_data={'local-hostname': 'other', 'instance-id': 'vm-2'}), 'vm')
    assert list(yaml.safe_load(files['meta-data']).items()) == [('instance-id', 'vm-2'), ('local-hostname', 'other')]


def test_text_user_data_is_kept_as_given_and_the_shortcuts_go_into_meta_data():
    script = '#!/bin/sh\necho "héllo" > /run/seed\n'
    files = cloud_init.render(options(user_data=script, hostname='g2', ssh_authorized_keys=[KEY]), 'vm')
    assert files['user-data'] == script.encode('utf-8')
    assert yaml.safe_load(files['meta-data']) == {'instance-id': 'vm', 'local-hostname': 'g2', 'public-keys': [KEY]}


def test_network_config_as_a_dict_or_as_text():
    v2 = {'version': 2, 'ethernets': {'id0': {'match': {'macaddress': '52:54:00:12:34:56'}, 'dhcp4': True}}}
    files = cloud_init.render(options(network_config=v2), 'vm')
    assert yaml.safe_load(files['network-config']) == v2
    assert not files['network-config'].startswith(b'#')
    text = 'network:\n  version: 1\n  config: []\n'
    assert cloud_init.render(options(network_config=text), 'vm')['network-config'] == text.encode()
    wrapped = {'network': {'version': 1, 'config': [{'type': 'physical', 'name': 'eth0', 'subnets': [{'type': 'dhcp'}]}]}}
    assert yaml.safe_load(cloud_init.render(options(network_config=wrapped), 'vm')['network-config']) == wrapped


def test_the_same_options_give_the_same_bytes():
    given = options(user_data={'packages': ['nginx'], 'b': {'x': 1.5}}, hostname='h', ssh_authorized_keys=[KEY])
    assert cloud_init.render(given, 'vm') == cloud_init.render(dict(given), 'vm')


@pytest.mark.parametrize('given, says', [
    (dict(user_data='packages: [nginx]\n'), 'start it with "#cloud-config"'),
    (dict(user_data=['runcmd']), 'user_data is a list: give a dict or text'),
    (dict(user_data={'hostname': 'a'}, hostname='b'), "hostname 'b' and cloud_init.user_data's hostname 'a' differ"),
    (dict(user_data={'ssh_authorized_keys': KEY}, ssh_authorized_keys=[KEY]),
     'user_data.ssh_authorized_keys is %r: give a list of strings' % KEY),
    (dict(ssh_authorized_keys=KEY), 'give a list of strings'),
    (dict(hostname=5), 'give a host name as a non-empty string'),
    (dict(meta_data='instance-id: x'), 'meta_data is a str: give a dict'),
    (dict(network_config={'ethernets': {}}), 'has no version: add version: 1 or version: 2'),
    (dict(network_config=[1]), 'network_config is a list: give a dict or YAML text'),
    (dict(user_data={1: 'x'}), 'user_data has the key 1, which is not a string: quote it'),
    (dict(user_data={'a': [{'b': {1, 2}}]}), 'cloud_init.user_data.a[0].b is a set, which YAML cannot hold'),
    (dict(vendor_data='x'), 'cloud_init has no option vendor_data: use user_data, meta_data'),
])
def test_problems_name_the_option_and_the_fix(given, says):
    with pytest.raises(ValueError) as raised:
        cloud_init.render(options(**given), 'vm')
    assert says in str(raised.value)


# --- YAML -----------------------------------------------------------------------------------

# Strings YAML would take for something else if they were written plain, and characters it
# does not let stand in a scalar.
TRICKY = ['', ' ', 'yes', 'No', 'on', 'null', '~', '1e3', '0x1F', '010', '1_000', '12:30', '.inf', '- a', 'a: b',
          '#x', 'a #b', '"', "'", '\\', '{', '[x]', '*a', '&a', '!tag', '%', '@', '`', '|', '>', '---', '...',
          '\t', '\n', '\r\n', 'a\n', 'a\n\n', 'a\n\n\n', '\na', ' a\nb', '\ta\nb', 'a\n b\n', 'a\n  \n',
          'a\r\nb', '\x00', '\x07', '\x1b[0m', '\x7f', '\x85', '\x9f', '\xa0', '\u2028', '\u2029', '\ufeff',
          '\ufffe', '\uffff', 'é', '日本', '😀', 'a\n😀\n', 'a\n---\n...\n', 'a\n# b\n', 'a\n\tb\n', 'x' * 300]
ALPHABET = ''.join(sorted(set(''.join(TRICKY)))) + 'ab :-#\n'
SCALARS = [None, True, False, 0, -7, 2 ** 70, 0.1, -0.0, 1e16, 1.5e-7, 1e300, float('inf')]


def random_text(rng):
    if rng.random() < 0.5:
        return rng.choice(TRICKY)
    return ''.join(rng.choice(ALPHABET) for _char in range(rng.randrange(12)))


def random_value(rng, depth=0):
    kind = rng.choice(['scalar', 'text', 'text', 'dict', 'list', 'tuple'] if depth < 3 else ['scalar', 'text'])
    if kind == 'scalar':
        return rng.choice(SCALARS)
    if kind == 'text':
        return random_text(rng)
    items = [random_value(rng, depth + 1) for _item in range(rng.randrange(4))]
    if kind == 'dict':
        return {random_text(rng): item for item in items}
    return items if kind == 'list' else tuple(items)


def as_loaded(value):
    """What YAML gives back for a value: a tuple is a list."""
    if isinstance(value, dict):
        return {key: as_loaded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_loaded(item) for item in value]
    return value


@pytest.mark.parametrize('text', TRICKY)
def test_every_string_reads_back_unchanged_as_value_and_as_key(text):
    written = cloud_init.to_yaml({text: [text, {text: text}]}, 'x')
    assert yaml.safe_load(written) == {text: [text, {text: text}]}, written


def test_random_documents_read_back_unchanged():
    rng = random.Random(11)
    for _document in range(3000):
        value = {'k': random_value(rng)}
        written = cloud_init.to_yaml(value, 'x')
        assert yaml.safe_load(written) == as_loaded(value), written


def test_numbers_and_constants_keep_their_types():
    value = {'a': 1e16, 'b': -1e-300, 'c': float('-inf'), 'd': float('nan'), 'e': True, 'f': None, 'g': 0, 'h': -0.0}
    read = yaml.safe_load(cloud_init.to_yaml(value, 'x'))
    assert math.isnan(read.pop('d')) and read == {key: item for key, item in value.items() if key != 'd'}
    assert [type(item) for item in read.values()] == [float, float, float, bool, type(None), int, float]


def test_multi_line_text_is_a_literal_block():
    assert cloud_init.to_yaml({'run': ['echo a\necho b\n']}, 'x') == '"run":\n  - |\n    echo a\n    echo b\n'


# --- FAT image ------------------------------------------------------------------------------

def tool(name):
    path = shutil.which(name, path=os.environ.get('PATH', '') + ':/usr/sbin:/sbin')
    if not path:
        pytest.fail('%s is missing: install mtools, dosfstools and util-linux (hacking/bootstrap.sh does)' % name)
    return path


def run(*command):
    done = subprocess.run([tool(command[0])] + list(command[1:]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False, env=dict(os.environ, MTOOLSRC='/dev/null', LC_ALL='C.UTF-8'))
    assert done.returncode == 0, done.stdout
    return done.stdout


def read_fat12(image):
    """{name: bytes} of a FAT12 image's root directory, long names preferred: a reader that
    shares nothing with the writer but the specification."""
    (bytes_per_sector, per_cluster, reserved, fats, root_entries, total16, _media, fat_sectors,
     _track, _heads, _hidden, total32) = struct.unpack_from('<HBHBHHBHHHII', image, 11)
    assert image[510:512] == b'\x55\xaa' and bytes_per_sector == 512
    assert len(image) == (total16 or total32) * 512
    fat = image[reserved * 512:(reserved + fat_sectors) * 512]
    assert fat == image[(reserved + fat_sectors) * 512:(reserved + 2 * fat_sectors) * 512], 'the two FATs differ'
    root = (reserved + fats * fat_sectors) * 512
    data = root + root_entries * 32
    clusters = (len(image) - data) // (per_cluster * 512)
    assert clusters < 4085, 'FAT16 by its cluster count'
    # Linux's vfat driver refuses a volume with more clusters than its FAT has entries.
    assert fat_sectors * 512 * 2 // 3 >= clusters + 2, 'the FAT is too small for the clusters'

    def next_cluster(n):
        pair = struct.unpack_from('<H', fat, n * 3 // 2)[0]
        return pair >> 4 if n % 2 else pair & 0xFFF

    files, long_parts = {}, []
    for offset in range(root, data, 32):
        entry = image[offset:offset + 32]
        if entry[0] == 0:
            break
        if entry[11] == 0x0F:
            long_parts.insert(0, entry[1:11] + entry[14:26] + entry[28:32])
            continue
        if entry[11] & 0x08:
            continue
        first, size = struct.unpack_from('<H', entry, 26)[0], struct.unpack_from('<I', entry, 28)[0]
        name = b''.join(long_parts).decode('utf-16-le').split('\0', 1)[0] if long_parts else \
            (entry[:8].rstrip() + b'.' + entry[8:11].rstrip()).rstrip(b'.').decode('ascii')
        long_parts = []
        content, cluster = b'', first
        while 2 <= cluster < 0xFF8:
            start = data + (cluster - 2) * per_cluster * 512
            content += image[start:start + per_cluster * 512]
            cluster = next_cluster(cluster)
        files[name] = content[:size]
    return files


@pytest.fixture
def write(tmp_path):
    def write(image, name='seed.img'):
        path = tmp_path / name
        path.write_bytes(image)
        return str(path)
    return write


SEED = cloud_init.render(options(user_data={'hostname': 'g1', 'write_files': [{'path': '/x', 'content': 'x\n'}]},
                                 network_config={'version': 2, 'ethernets': {}}), 'vm')


def test_the_seed_is_a_fat12_labelled_cidata_that_every_reader_takes(write):
    image = cloud_init.fat_image(SEED)
    path = write(image)
    assert run('fsck.fat', '-n', '-v', path).count(b'\n') > 3
    assert run('blkid', '-o', 'value', '-s', 'LABEL', path) == b'CIDATA\n'
    assert run('blkid', '-o', 'value', '-s', 'TYPE', path) == b'vfat\n'
    listing = run('mdir', '-i', path, '::').decode()
    assert 'Volume in drive : is CIDATA' in listing
    assert sorted(line.split()[-1] for line in listing.splitlines() if '~' in line) == sorted(SEED)
    for name, content in SEED.items():
        assert run('mtype', '-i', path, '::' + name) == content
    assert read_fat12(image) == SEED


@pytest.mark.parametrize('files', [
    {},
    {'empty': b'', 'one': b'1', 'sector': b's' * 512, 'more': b'm' * 513},
    # 8.3 names stay as they are; the generated ones step past them and past each other.
    {'USER-D~1': b'a', 'user-data': b'b', 'user-data1': b'c', 'README.TXT': b'd', 'lower.txt': b'e'},
    {'a name with spaces, ünïcode and more than the 26 characters of two long name entries.yaml': b'x' * 70000},
    # Clusters of more than one sector: past the 4084 clusters of 512 bytes.
    {'big': bytes(range(256)) * 9000, 'small': b'y'},
])
def test_names_and_sizes_read_back_with_mtools_fsck_and_the_reader(write, files):
    image = cloud_init.fat_image(files)
    path = write(image)
    run('fsck.fat', '-n', path)
    assert read_fat12(image) == files
    assert run('mdir', '-b', '-i', path, '::').decode().split('\n') == ['::/' + name for name in sorted(files)] + ['']
    for name, content in files.items():
        assert run('mtype', '-i', path, '::' + name) == content


@pytest.mark.parametrize('sectors', range(325, 345))
def test_the_fat_covers_the_clusters_that_rounding_to_whole_tracks_adds(write, sectors):
    # One FAT sector holds 341 entries; the volume is rounded up to whole tracks of 32 sectors.
    files = {'user-data': b'u' * (sectors * 512)}
    image = cloud_init.fat_image(files)
    run('fsck.fat', '-n', write(image))
    assert read_fat12(image) == files


def test_a_name_beyond_the_basic_multilingual_plane_is_stored_as_utf_16_surrogates(write):
    # mtools shows such a character as "__"; Linux's vfat driver and this reader decode it.
    files = {'seed-😀.txt': b'x'}
    image = cloud_init.fat_image(files)
    run('fsck.fat', '-n', write(image))
    assert read_fat12(image) == files


def test_the_same_files_give_the_same_bytes_in_any_order():
    again = dict(reversed(list(SEED.items())))
    assert list(again) != list(SEED)
    assert cloud_init.fat_image(again) == cloud_init.fat_image(SEED)
    changed = dict(SEED, **{'meta-data': SEED['meta-data'] + b'\n'})
    assert cloud_init.fat_image(changed) != cloud_init.fat_image(SEED)


@pytest.mark.parametrize('files, says', [
    ({'a/b': b''}, "name 'a/b' holds a character FAT does not allow"),
    ({'meta-data.': b''}, 'ends with a dot or a space'),
    ({'': b''}, 'is not a non-empty string'),
    ({'x' * 256: b''}, 'longer than the 255 characters'),
    ({'User-Data': b'', 'user-data': b''}, 'twice, ignoring case (as FAT does): rename one'),
    ({'user-data': b'\0' * (128 << 20)}, 'more than a FAT12 seed can (about 127 MiB)'),
])
def test_files_fat12_cannot_hold_are_refused(files, says):
    with pytest.raises(ValueError) as raised:
        cloud_init.fat_image(files)
    assert says in str(raised.value)
