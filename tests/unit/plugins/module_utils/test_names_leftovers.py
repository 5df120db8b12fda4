# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Domain names libvirt must never see, and what a killed helper leaves behind."""


import types

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _root, _root_dir
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.domains import Domains
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.errors import HelperError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import PROBE_PREFIX, domain_name_problem
from ansible_collections.embedvirt.libvirt.plugins.module_utils._volume import is_below

ROOT_27 = '/tmp/evt-pb-names-123456789'


@pytest.mark.parametrize('name, says', [
    ('', 'empty'),
    ('.', 'names a directory'),
    ('..', 'names a directory'),
    ('a/b', "contains '/'"),
    ('x\ny', "'\\n'"),
    ('x\ty', "'\\t'"),
    ('x\x7fy', "'\\x7f'"),
    ('x\x85y', "'\\x85'"),
    (PROBE_PREFIX + 'x', 'reserved'),
])
def test_names_libvirt_would_misuse_are_refused_with_a_fix(name, says):
    problem, fix = domain_name_problem(name)
    assert says in problem
    assert fix


@pytest.mark.parametrize('name', ['web', 'p q', 'web.1', '...', '\u4e00' * 30, 'x' * 200, 'embedvirt-prob'])
def test_other_names_pass_without_a_root(name):
    assert domain_name_problem(name) is None


def test_socket_budget_counts_the_bytes_of_the_first_20_characters():
    # 27 + 37 + 20 + 23 = 107 bytes: the longest root fits 20 ASCII characters exactly.
    assert len(ROOT_27) == 27
    assert domain_name_problem('a' * 20, ROOT_27) is None
    assert domain_name_problem('a' * 60, ROOT_27) is None  # only 20 characters are kept
    problem, fix = domain_name_problem('\u4e00' * 20, ROOT_27)
    assert '(60 bytes)' in problem and '147 bytes long' in problem and '107 bytes' in problem
    assert 'take at most 20 bytes' in fix and '40 bytes shorter' in fix
    # 6 CJK characters (18 bytes) fit where 7 (21 bytes) do not.
    assert domain_name_problem('\u4e00' * 6, ROOT_27) is None
    assert domain_name_problem('\u4e00' * 7, ROOT_27) is not None
    assert domain_name_problem('\ud800', ROOT_27)[0].endswith('is not valid UTF-8')


def test_root_rule_and_name_budget_agree():
    assert len(_root.LONGEST_SOCKET_SUFFIX) + _root.DIRECT_ROOT_MAX == _root.SOCKET_PATH_MAX == 107


class FakeDomain:
    def __init__(self, name, log):
        self._name = name
        self.log = log

    def name(self):
        return self._name

    def undefineFlags(self, flags):
        self.log.append(('undefine', self._name, flags))
        if self._name.endswith('-busy'):
            raise FakeLibvirt.libvirtError('busy')


class FakeConnection:
    def __init__(self, names):
        self.log = []
        self.doms = [FakeDomain(name, self.log) for name in names]

    def listAllDomains(self, flags):
        self.log.append(('list', flags))
        return list(self.doms)


class FakeLibvirt:
    libvirtError = RuntimeError
    VIR_CONNECT_LIST_DOMAINS_INACTIVE = 2
    VIR_CONNECT_LIST_DOMAINS_PERSISTENT = 4
    VIR_DOMAIN_UNDEFINE_KEEP_NVRAM = 8
    VIR_DOMAIN_UNDEFINE_TPM = 32
    VIR_DOMAIN_UNDEFINE_KEEP_TPM = 64


def driver_with(path, names):
    """The helper's Domains on fake drivers whose QEMU connection holds names."""
    root = _root_dir.EmbedRoot.__new__(_root_dir.EmbedRoot)
    root.path = str(path)  # pytest's tmp_path is longer than a root may be; nothing here makes sockets
    return Domains(types.SimpleNamespace(root=root, libvirt=FakeLibvirt, qemu=FakeConnection(names)), None, None)


def test_listings_never_show_a_probe(tmp_path):
    driver = driver_with(tmp_path, ['web', PROBE_PREFIX + 'abc', 'db'])
    assert [dom.name() for dom in driver.domains()] == ['web', 'db']


def test_leftovers_go_and_nothing_else(tmp_path):
    driver = driver_with(tmp_path, ['web', PROBE_PREFIX + 'abc'])
    (tmp_path / 'etc' / 'qemu').mkdir(parents=True)
    (tmp_path / 'etc' / 'secrets').mkdir()
    for name in ('web.xml', 'web.xml.new', 'x.xml.new'):
        (tmp_path / 'etc' / 'qemu' / name).write_text('<domain/>')
    (tmp_path / 'etc' / 'secrets' / 'u.base64.new').write_text('c2VjcmV0')
    outside = tmp_path / 'outside'
    outside.write_text('keep')
    (tmp_path / 'etc' / 'qemu' / 'link.xml.new').symlink_to(outside)
    driver.clean_leftovers()
    assert ('list', 6) in driver.qemu.log
    # NVRAM and TPM state kept (8 | 64): a probe has none, yet a wrong flag must never cost a guest's.
    assert ('undefine', PROBE_PREFIX + 'abc', 72) in driver.qemu.log
    assert not any(entry[:2] == ('undefine', 'web') for entry in driver.qemu.log)
    assert sorted(p.name for p in (tmp_path / 'etc' / 'qemu').iterdir()) == ['web.xml']
    assert list((tmp_path / 'etc' / 'secrets').iterdir()) == []
    assert outside.read_text() == 'keep'


def test_leftovers_that_cannot_go_never_stop_a_helper(tmp_path):
    driver = driver_with(tmp_path, [PROBE_PREFIX + 'a-busy', PROBE_PREFIX + 'b'])
    (tmp_path / 'etc').mkdir()
    (tmp_path / 'etc' / 'qemu').symlink_to(tmp_path)
    (tmp_path / 'x.xml.new').write_text('keep')
    driver.clean_leftovers()  # no etc/secrets, etc/qemu a link: nothing raised
    assert ('undefine', PROBE_PREFIX + 'b', 72) in driver.qemu.log
    assert (tmp_path / 'x.xml.new').exists()


@pytest.mark.parametrize('xml, kind', [
    ("<domain><name>..</name></domain>", 'name'),
    ("<domain><name>a/b</name></domain>", 'name'),
    ("<domain><name>\n web\n</name></domain>", 'name'),
    ("<domain><name>%s</name></domain>" % ('\u4e00' * 20), 'name'),
    ("<domain><uuid>x</uuid></domain>", 'xml'),
])
def test_definitions_with_bad_names_never_reach_libvirt(tmp_path, xml, kind):
    driver = driver_with(tmp_path, [])
    for call in (driver.domain_define, lambda xml: driver.domain_create(xml, False), driver.normalize_definition):
        with pytest.raises(HelperError) as e:
            call(xml)
        assert e.value.kind == kind
    with pytest.raises(HelperError) as e:
        driver.domain_plan('..', None)
    assert e.value.kind == 'name'
    assert driver.qemu.log == []


def test_is_below():
    assert is_below('/r/images/a', '/r/images')
    assert not is_below('/r/images', '/r/images')
    assert not is_below('/r/images2/a', '/r/images')
    assert not is_below('/r/etc/qemu.conf', '/r/images')


def test_a_long_root_budgets_names_by_its_alias():
    root = '/home/u/' + 'v' * 200
    assert domain_name_problem('a' * 20, root) is None
    problem, fix = domain_name_problem('\u4e00' * 7, root)
    assert '107 bytes' in problem and 'take at most 20 bytes' in fix and 'shorter' not in fix
