# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The NoCloud seed: its files read back with PyYAML (what cloud-init reads them with), its
FAT12 image read back by mtools, dosfstools' fsck, blkid and a small reader written here."""


import math
import os
import re
import shutil
import struct
import subprocess

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

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
    (dict(user_data={(1, 2): 'x'}), 'user_data has the key (1, 2), a tuple: give a string, number, boolean or null'),
    (dict(user_data={'a': [{'b': {1, 2}}]}), 'cloud_init.user_data.a[0].b is a set, which YAML cannot hold'),
    (dict(vendor_data='x'), 'cloud_init has no option vendor_data: use user_data, meta_data'),
])
def test_problems_name_the_option_and_the_fix(given, says):
    with pytest.raises(ValueError) as raised:
        cloud_init.render(options(**given), 'vm')
    assert says in str(raised.value)


# --- YAML -----------------------------------------------------------------------------------

def test_numbers_and_constants_keep_their_types():
    value = {'a': 1e16, 'b': -1e-300, 'c': float('-inf'), 'd': float('nan'), 'e': True, 'f': None, 'g': 0, 'h': -0.0}
    read = yaml.safe_load(cloud_init.to_yaml(value, 'x'))
    assert math.isnan(read.pop('d')) and read == {key: item for key, item in value.items() if key != 'd'}
    assert [type(item) for item in read.values()] == [float, float, float, bool, type(None), int, float]


def test_multi_line_text_is_a_literal_block():
    assert cloud_init.to_yaml({'run': ['echo a\necho b\n']}, 'x') == '"run":\n  - |\n    echo a\n    echo b\n'


# What YAML 1.1 reads as something other than the string written plain (booleans, nulls,
# numbers, dates, the value and merge keys), YAML's indicators, and every kind of line break,
# blank and character a scalar cannot hold as it is.
SPECIAL_TEXT = ['yes', 'no', 'on', 'off', 'y', 'n', 'Y', 'N', '~', 'null', 'Null', 'NULL', 'true', 'False', 'TRUE',
                '1', '-1', '+1', '0x1f', '0o17', '017', '0b101', '1_000', '1.5', '.5', '1e3', '1.0e+3', '.inf',
                '-.Inf', '.NaN', '1:20', '1:20:30.5', '2001-12-14', '2001-12-14t21:59:43.10-05:00', '=', '<<',
                '-', '?', ':', ',', '[', ']', '{', '}', '&', '*', '!', '|', '>', "'", '"', '%', '@', '`', '#',
                'a #b', 'a: b', 'a:', '- a', '? a', '--- a', '...', ' a', 'a ', '\t', 'a\t', '\ta', '\n', 'a\n',
                'a\n\n', 'a\n\n\n', '\n\na', 'a\nb', 'a \nb ', 'a\n \n', '\r', 'a\rb', 'a\r\n', '\x85', 'a\u2028b',
                'a\u2029', '\ufeff', '\ufeffa', '\x00', '\x01', '\x1b', '\x7f', '\x9f', '\ufffe', '\uffff', '\U0001f600',
                '\U0010ffff', '\\', '\\n', '\\/', '\\u2028', ' ', '010', '12:30', '#x', '[x]', '*a',
                '&a', '!tag', '---', '\r\n', '\na', ' a\nb', '\ta\nb', 'a\n b\n', 'a\r\nb', '\x07', '\x1b[0m',
                '\xa0', '\u2029', 'é', '日本', 'a\n😀\n', 'a\n---\n...\n', 'a\n# b\n', 'a\n\tb\n', 'x' * 300]
SPECIAL_CHARS = sorted(set(''.join(SPECIAL_TEXT)))
texts = st.one_of(st.sampled_from(SPECIAL_TEXT),
                  st.text(st.one_of(st.sampled_from(SPECIAL_CHARS), st.characters(exclude_categories=['Cs'])), max_size=12),
                  # Longer than the 1024 characters of a YAML implicit key.
                  st.builds(lambda text, times: text * times, st.sampled_from(['k', '\\', '\n', 'a\n', '\u2028']),
                            st.integers(1000, 1100)))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2 ** 70, 2 ** 70), st.floats(), texts,
                    st.sampled_from([0.1, -0.0, 1e16, 1.5e-7, 1e300, 5e-324, float('inf'), float('-inf')]))
keys = st.one_of(texts, st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False))
documents = st.dictionaries(keys, st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.lists(inner, max_size=3).map(tuple),
                                     st.dictionaries(keys, inner, max_size=4)), max_leaves=20), max_size=4)


def same(given, read):
    """Whether YAML read back `given` exactly: the same types (a tuple reads as a list), values
    and order, -0.0 and nan included (Python's == has True == 1 == 1.0 and nan != nan)."""
    if isinstance(given, tuple):
        given = list(given)
    if type(given) is not type(read):  # pylint: disable=unidiomatic-typecheck
        return False
    if isinstance(given, dict):
        return len(given) == len(read) and all(same(*pair) and same(given[pair[0]], read[pair[1]])
                                               for pair in zip(given, read))
    if isinstance(given, list):
        return len(given) == len(read) and all(same(*items) for items in zip(given, read))
    if isinstance(given, float):
        return repr(given) == repr(read)
    return given == read


@settings(max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(documents)
def test_every_document_reads_back_exactly_with_yaml_1_1(document):
    written = cloud_init.to_yaml(document, 'x')
    assert same(document, yaml.safe_load(written)), written


@pytest.mark.parametrize('text', SPECIAL_TEXT)
def test_every_special_string_reads_back_exactly_as_value_and_as_key(text):
    document = {text: [text, {text: text}, [text]], 'v': text}
    assert same(document, yaml.safe_load(cloud_init.to_yaml(document, 'x')))


@pytest.mark.parametrize('key', [None, True, False, 0, -7, 2 ** 70, 10 ** 1100, 1.5, -0.0, float('inf'), '"' * 600,
                                 '\u2028' * 200] + ['k' * length for length in range(1018, 1028)])
def test_keys_of_every_scalar_type_and_length_read_back_exactly(key):
    document = {key: {key: [{key: key}]}, 'next': 1}
    assert same(document, yaml.safe_load(cloud_init.to_yaml(document, 'x')))


def nested(depth):
    value = 'leaf'
    for level in range(depth):
        value = [value] if level % 2 else {'k': value}
    return value


def test_nesting_reads_back_exactly_up_to_the_bound_and_is_refused_beyond_by_its_path():
    document = {'top': nested(cloud_init.MAX_DEPTH - 1)}
    assert same(document, yaml.safe_load(cloud_init.to_yaml(document, 'x')))
    with pytest.raises(ValueError) as raised:
        cloud_init.to_yaml({'top': nested(cloud_init.MAX_DEPTH)}, 'cloud_init.user_data')
    assert re.match(r'cloud_init\.user_data\.top(\.k|\[0\]){%d} is nested more than %d levels deep'
                    % (cloud_init.MAX_DEPTH - 1, cloud_init.MAX_DEPTH), str(raised.value)), raised.value
    with pytest.raises(ValueError):
        cloud_init.to_yaml({'top': nested(5000)}, 'x')


@pytest.mark.parametrize('sign', [1, -1])
def test_integers_python_reads_only_as_text_are_refused_by_their_path(sign):
    longest = {'a': [sign * (10 ** cloud_init.MAX_DIGITS - 1)]}
    assert same(longest, yaml.safe_load(cloud_init.to_yaml(longest, 'x')))
    with pytest.raises(ValueError) as raised:
        cloud_init.to_yaml({'a': [sign * 10 ** cloud_init.MAX_DIGITS]}, 'cloud_init.user_data')
    assert str(raised.value).startswith('cloud_init.user_data.a[0] is an integer of more than 4300 digits')


@pytest.mark.parametrize('document, path', [
    ({'a': ['ok', 'x\ud800y']}, 'cloud_init.user_data.a[1]'),
    ({'a': {'b\udfff': 1}}, "cloud_init.user_data.a has the key 'b\\udfff'"),
    ({'a': '\udbff\udc00'}, 'cloud_init.user_data.a'),
])
def test_lone_surrogates_are_refused_by_their_path(document, path):
    with pytest.raises(ValueError) as raised:
        cloud_init.to_yaml(document, 'cloud_init.user_data')
    assert str(raised.value).startswith(path) and 'UTF-8' in str(raised.value), raised.value


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
