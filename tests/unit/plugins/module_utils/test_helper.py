# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The helper's parts that run without libvirt: errors and their fixes, XML, digests, and
how a request becomes a reply."""

import base64
import errno
import logging
import os
from xml.etree import ElementTree

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _protocol, _root, _root_dir
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper import (
    agent, domains, drivers, errors, events, secrets, server, snapshots)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.errors import HelperError


def test_format_version():
    assert drivers.format_version(9000000) == '9.0.0'
    assert drivers.format_version(7002022) == '7.2.22'


def test_missing_account_names_the_account_and_the_command():
    err = errors.explain_open_error(
        "invalid argument: Failed to parse user 'libvirt-qemu'", '/srv/vms', '/nonexistent')
    assert err.kind == 'account'
    assert 'useradd --system' in err.hint and 'libvirt-qemu' in err.hint
    err = errors.explain_open_error(
        "invalid argument: Failed to parse group 'qemu'", '/srv/vms', '/nonexistent')
    assert 'groupadd --system qemu' in err.hint


def test_busy_root_names_the_process(tmp_path):
    pidfile = tmp_path / 'driver.pid'
    pidfile.write_text(u'%d' % os.getpid())
    err = errors.explain_open_error(
        "Failed to acquire pid file '/srv/vms/run/qemu/driver.pid': Resource temporarily unavailable",
        '/srv/vms', str(pidfile))
    assert err.kind == 'root_busy'
    assert 'process %d (' % os.getpid() in err.hint


def test_busy_root_without_a_readable_pidfile(tmp_path):
    err = errors.explain_open_error('Failed to acquire pid file', '/srv/vms', str(tmp_path / 'none'))
    assert 'another process' in err.hint


def test_missing_driver_names_the_packages():
    err = errors.explain_open_error('no connection driver available for qemu:///embed?root=/x', '/x', '/none')
    assert err.kind == 'driver_missing'
    assert 'libvirt-daemon-driver-qemu' in err.hint


def test_missing_secret_driver_names_its_own_package():
    # Debian 13 split the secret driver out of libvirt-daemon (only recommended there).
    err = errors.explain_open_error('no connection driver available for secret:///embed?root=/x', '/x', '/none')
    assert 'libvirt-daemon-driver-secret' in err.hint
    assert 'libvirt-daemon-driver-qemu' not in err.hint


def test_secrets_unreachable_without_the_private_symbols_says_so():
    for message in ('internal error: No current identity to elevate',
                    "invalid argument: Missing URI parameter 'root'"):
        assert 'virIdentitySetCurrent' in errors.hint_for_libvirt_error(message)


def test_other_libvirt_errors_pass_through():
    err = errors.explain_open_error('something else', '/x', '/none')
    assert (err.kind, err.message, err.hint) == ('libvirt', 'something else', None)


def test_interfaces_without_mac_keep_the_existing_ones_in_order():
    existing = ElementTree.fromstring(
        "<domain><devices><interface type='user'><mac address='52:54:00:00:00:01'/></interface>"
        "<interface type='user'><mac address='52:54:00:00:00:02'/></interface></devices></domain>")
    wanted = ElementTree.fromstring(
        "<domain><devices><interface type='user'/><interface type='user'><mac address='52:54:00:00:00:09'/>"
        "</interface><interface type='user'/></devices></domain>")
    domains.inherit_macs(wanted, existing)
    macs = [i.find('mac').get('address') if i.find('mac') is not None else None
            for i in wanted.findall('./devices/interface')]
    assert macs == ['52:54:00:00:00:01', '52:54:00:00:00:09', None]


def test_parse_xml_names_the_problem():
    with pytest.raises(HelperError) as err:
        errors.parse_xml('<domain>', 'domain')
    assert 'not well-formed' in err.value.message
    with pytest.raises(HelperError) as err:
        errors.parse_xml('<network/>', 'domain')
    assert 'describes <network>, not <domain>' in err.value.message


def test_value_digest_depends_on_salt_and_value():
    assert secrets.value_digest(b's', b'v') != secrets.value_digest(b't', b'v')
    assert secrets.value_digest(b's', b'v') != secrets.value_digest(b's', b'w')
    assert b'v' not in secrets.value_digest(b's', b'v')


def test_xml_escape():
    assert domains.xml_escape('a<b>&c') == 'a&lt;b&gt;&amp;c'


def test_secret_digest_is_written_whole_and_private(tmp_path):
    path = str(tmp_path / 'digests' / 'u')
    secrets.write_secret_digest(path, b'k3y')
    salt, digest = open(path, 'rb').read().split(b'$')
    assert digest == secrets.value_digest(base64.b64decode(salt), b'k3y')
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.listdir(str(tmp_path / 'digests')) == ['u']


def test_secret_digest_that_cannot_be_written_leaves_no_stale_one(tmp_path, monkeypatch):
    path = str(tmp_path / 'u')
    secrets.write_secret_digest(path, b'old value')

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(drivers.os, 'rename', full)
    with pytest.raises(HelperError) as raised:
        secrets.write_secret_digest(path, b'new value')
    assert raised.value.kind == 'storage' and 'set the value again' in raised.value.message
    assert 'free space there' in raised.value.hint
    # The old digest would vouch for 'old value', which the secret no longer holds.
    assert os.listdir(str(tmp_path)) == []


class Answering:
    """What server.answer needs of a Helper, with handle() given by the test."""

    def __init__(self, handle):
        self.handle = handle
        self.root = type('Root', (), {'log_path': '/srv/vms/log/embedvirt/helper.log'})()
        self.ended = []

    @staticmethod
    def begin(op, seconds):
        return 1

    def end(self, number):
        self.ended.append(number)


def answer(handle, request):
    helper = Answering(handle)
    reply = server.answer(helper, _protocol.encode(request))
    assert helper.ended == [1]  # the request no longer counts as in flight, whatever happened
    return reply


def test_os_errors_of_a_request_are_storage_errors_with_a_hint():
    def handle(request):
        raise OSError(errno.ENOSPC, 'No space left on device')
    reply = answer(handle, {'id': 1, 'op': 'secret_set_value'})
    assert reply['ok'] is False and reply['id'] == 1
    assert reply['error']['kind'] == 'storage' and 'free space there' in reply['error']['hint']


def test_a_bug_inside_an_operation_is_an_internal_error_with_its_traceback_in_the_log(caplog):
    def handle(request):
        raise TypeError("domain_list() got an unexpected keyword argument 'x'")
    with caplog.at_level(logging.ERROR, logger='embedvirt.helper'):
        reply = answer(handle, {'id': 2, 'op': 'domain_list', 'args': {}})
    assert reply['error']['kind'] == _protocol.ERROR_INTERNAL
    assert 'TypeError' in reply['error']['message'] and 'helper.log' in reply['error']['hint']
    assert 'Traceback' in caplog.text


@pytest.mark.parametrize('request_, says', [
    ({'id': 3, 'op': 'domain_list', 'args': {'name': 'web'}}, 'unknown: name'),
    ({'id': 3, 'op': 'domain_get', 'args': {}}, 'missing: name'),
    ({'id': 3, 'op': 'domain_get', 'args': ['web']}, 'not an object'),
    ({'id': 3, 'op': 'domain_start_all', 'args': {}}, "unknown operation 'domain_start_all'"),
])
def test_requests_outside_the_protocol_are_protocol_errors(request_, says):
    helper = server.Helper.__new__(server.Helper)
    reply = answer(helper.handle, request_)
    assert reply['error']['kind'] == _protocol.ERROR_PROTOCOL and says in reply['error']['message']


def test_a_line_that_is_not_a_request_is_a_protocol_error():
    reply = server.answer(Answering(None), b'[1, 2]')
    assert reply['id'] is None and reply['error']['kind'] == _protocol.ERROR_PROTOCOL


def test_a_request_of_more_values_than_any_request_holds_is_refused_before_it_is_parsed():
    # Parsed, 3 bytes of empty lists take some 60: 16 MiB of them made the helper take 450 MiB.
    values = b'[' + b'[],' * server.MAX_REQUEST_VALUES + b'[]]'
    reply = server.answer(Answering(None), b'{"id":1,"op":"helper_status","x":' + values + b'}')
    assert reply['id'] is None and reply['error']['kind'] == _protocol.ERROR_PROTOCOL
    assert 'more than the %d JSON values a request may hold' % server.MAX_REQUEST_VALUES in reply['error']['message']
    # Separators inside strings count too; a request with fewer passes, whatever its size.
    many = {'id': 2, 'op': 'helper_status', 'x': ',' * (server.MAX_REQUEST_VALUES // 2) + 'a' * (8 << 20)}
    assert answer(lambda request: 'status', many) == {'id': 2, 'ok': True, 'result': 'status'}


def test_every_operation_has_exactly_one_implementation_in_the_helper():
    helper = server.Helper.__new__(server.Helper)
    parts = [helper, drivers.Drivers(None), domains.Domains(drivers.Drivers(None), None, None),
             agent.GuestAgent(drivers.Drivers(None), None), secrets.Secrets(drivers.Drivers(None)),
             snapshots.Snapshots(drivers.Drivers(None), None), events.Events(drivers.Drivers(None))]
    found = server.implementations(parts)
    assert sorted(found) == sorted(_protocol.OPERATIONS)

    class Twice:
        def versions(self):
            pass
    with pytest.raises(RuntimeError, match='operation versions has 2 implementations'):
        server.implementations(parts + [Twice()])


def test_snapshot_xml_leaves_out_what_the_guest_cannot_write():
    xml = snapshots.snapshot_xml('s1', 'before', False, {'vda': 'libvirt-1-format', 'vdb': None})
    tree = ElementTree.fromstring(xml)
    assert tree.findtext('description') == 'before'
    assert tree.find('memory').get('snapshot') == 'no'
    assert {d.get('name'): d.get('snapshot') for d in tree.iter('disk')} == {'vda': 'internal', 'vdb': 'no'}


def test_snapshot_names_that_are_not_one_plain_word_are_refused():
    for bad in ('', None, 'a/b', '.hidden', '..', ' s', 'two words', 'a\nb', 'x\n', 'x' * 101, '-x', 'caf\u00e9'):
        problem, fix = _root.snapshot_name_problem(bad)
        assert 'not usable' in problem and 'letters, digits' in fix
    assert _root.snapshot_name_problem('before-upgrade_2026-11-26T03:00+1@x.y') is None
    assert _root.snapshot_name_problem('x' * 100) is None


@pytest.mark.parametrize('name', ['1', '0', '01', '007', '42', '1' * 100])
def test_snapshot_names_qemu_could_read_as_a_snapshot_id_are_refused_but_to_delete(name):
    # qcow2's revert looks a name up among the snapshots' ids (1, 2, ...) first: '1' would be
    # another snapshot. Its delete looks names up by name only.
    kind, problem, fix = snapshots.name_problem(name)
    assert kind == 'name' and 'snapshot id' in problem and 'snap-%s' % name in fix and 'state=absent' in fix
    assert snapshots.name_problem(name, deleting=True) is None


def test_snapshot_names_with_more_than_digits_are_kept_and_one_plain_word_is_needed_to_delete_too():
    for good in ('1a', 'a1', 'snap-1', '1.0', '1-2', '1:2', '1+1', '1@x', '1_'):
        assert snapshots.name_problem(good) is None
    assert snapshots.name_problem('two words', deleting=True)[0] == 'name'


class SnapshotDomain:
    """The libvirt domain snapshot_create sees; it records what it was asked to do."""

    def __init__(self, active, xml="<domain><name>web</name><os><type>hvm</type></os></domain>"):
        self.active, self.xml, self.calls = active, xml, []

    def isActive(self):
        return self.active

    def XMLDesc(self, flags):
        return self.xml

    def name(self):
        return 'web'

    def snapshotListNames(self, flags):
        return []

    def __getattr__(self, name):  # anything else would change the domain
        return lambda *args: self.calls.append(name)


@pytest.mark.parametrize('active, xml, args, kind', [
    (True, None, dict(snapshot='two words'), 'name'),
    (False, None, dict(memory=True), 'memory'),
    (False, None, dict(quiesce=True), 'quiesce'),
    (True, None, dict(memory=True, quiesce=True), 'quiesce'),
    (True, "<domain><os firmware='efi'/></domain>", {}, 'memory'),
    (True, "<domain><os><loader type='pflash'>/x.fd</loader></os></domain>", dict(memory=True), 'memory'),
])
def test_the_helper_refuses_a_snapshot_it_cannot_take_before_it_touches_the_domain(active, xml, args, kind):
    dom = SnapshotDomain(active, *([xml] if xml else []))
    part = snapshots.Snapshots.__new__(snapshots.Snapshots)
    part.domains = type('Domains', (), {'domain_required': staticmethod(lambda name: dom)})()
    request = dict(dict(name='web', snapshot='s1', description=None, memory=None, quiesce=False, timeout=60), **args)
    with pytest.raises(HelperError) as caught:
        part.snapshot_create(**request)
    assert caught.value.kind == kind and caught.value.hint and dom.calls == []


class NoLibvirt:
    """A libvirt stand-in that fails the test on any use."""

    def __getattr__(self, name):
        raise AssertionError('libvirt used: %s' % name)


def test_the_helper_refuses_to_revert_to_a_snapshot_name_qemu_reads_as_an_id_and_deletes_it_by_name():
    dom = SnapshotDomain(False)
    part = snapshots.Snapshots.__new__(snapshots.Snapshots)
    part.domains = type('Domains', (), {'domain_required': staticmethod(lambda name: dom),
                                        'refuse_clone_source': staticmethod(lambda name, action: None)})()
    part.drivers = type('Drivers', (), {'libvirt': NoLibvirt()})()
    with pytest.raises(HelperError) as caught:
        part.snapshot_revert(name='web', snapshot='1')
    assert caught.value.kind == 'name' and 'snapshot id' in caught.value.message and dom.calls == []
    dom.snapshotLookupByName = lambda name, flags: type('Snapshot', (), {'delete': lambda self, flags: dom.calls.append(
        'delete ' + name)})()
    part.snapshot_delete(name='web', snapshot='1')
    assert dom.calls == ['delete 1']


def clone_source_domains(clones):
    """Domains whose domain_clones finds clones (of any name), with a domain that records changes."""
    dom = SnapshotDomain(False)
    part = domains.Domains.__new__(domains.Domains)
    part.domain_clones = lambda name: clones
    part.domain_required = lambda name: dom
    part.find = lambda name: dom
    return part, dom


@pytest.mark.parametrize('operation, args, says', [
    ('domain_start', dict(name='web', paused=False), 'starting it would change'),
    ('domain_create', dict(xml='<domain><name>web</name></domain>', paused=False), 'starting it would change'),
    ('domain_set_autostart', dict(name='web', autostart=True), 'starting it with the root (autostart)'),
])
def test_the_helper_neither_starts_nor_marks_autostart_a_source_of_linked_clones(operation, args, says):
    part, dom = clone_source_domains(['c1', 'c2'])
    part.drivers = type('Drivers', (), {'root': _root_dir.EmbedRoot('/srv/vms'), 'libvirt': NoLibvirt()})()
    part.root = part.drivers.root
    with pytest.raises(HelperError) as caught:
        getattr(part, operation)(**args)
    assert caught.value.kind == 'clone_source' and says in caught.value.message
    assert 'c1, c2' in caught.value.message and 'remove the clones first' in caught.value.hint
    assert dom.calls == []


def test_a_source_of_linked_clones_may_lose_its_autostart_mark():
    part, dom = clone_source_domains(['c1'])
    part.domain_detail = lambda d: 'detail'
    part.drivers = type('Drivers', (), {'libvirt': NoLibvirt()})()
    assert part.domain_set_autostart('web', False) == 'detail' and dom.calls == ['setAutostart']


@pytest.mark.parametrize('operation, args, says', [
    ('snapshot_create', dict(snapshot='s1', description=None, memory=None, quiesce=False, timeout=60),
     'taking a snapshot, which is written inside its disks'),
    ('snapshot_revert', dict(snapshot='s1'), 'reverting it to a snapshot'),
])
def test_the_helper_neither_snapshots_nor_reverts_a_source_of_linked_clones(operation, args, says):
    clones, dom = clone_source_domains(['c1'])
    dom.snapshotLookupByName = lambda name, flags: 'snapshot s1'
    part = snapshots.Snapshots.__new__(snapshots.Snapshots)
    part.domains = clones
    part.drivers = type('Drivers', (), {'libvirt': NoLibvirt()})()
    with pytest.raises(HelperError) as caught:
        getattr(part, operation)(name='web', **args)
    assert caught.value.kind == 'clone_source' and says in caught.value.message and dom.calls == []


def test_no_clones_no_problem():
    assert domains.clone_source_problem('web', [], domains.START) is None


def test_the_autostart_mark_of_a_source_of_linked_clones_goes_before_the_drivers_open(short_tmp, caplog):
    definitions = os.path.join(short_tmp, 'etc', 'qemu')
    os.makedirs(os.path.join(definitions, 'autostart'), mode=0o700)
    os.chmod(os.path.join(short_tmp, 'etc'), 0o700)
    clone = "<domain><name>%s</name><metadata><clone xmlns='%s' source='%s'/></metadata></domain>"
    files = {
        'tmpl.xml': '<domain><name>tmpl</name></domain>',
        'c1.xml': clone % ('c1', _protocol.CLONE_NAMESPACE, 'tmpl'),
        'plain.xml': '<domain><name>plain</name></domain>',
        'broken.xml': '<domain><name>broken',
        'big.xml': clone % ('big', _protocol.CLONE_NAMESPACE, 'plain') + ' ' * domains.DEFINITION_LIMIT,
    }
    for name, text in files.items():
        with open(os.path.join(definitions, name), 'w') as f:
            f.write(text)
    # A definition of a clone of 'plain' through a link: libvirt loads no link either.
    outside = os.path.join(short_tmp, 'outside.xml')
    with open(outside, 'w') as f:
        f.write(clone % ('c2', _protocol.CLONE_NAMESPACE, 'plain'))
    os.symlink(outside, os.path.join(definitions, 'c2.xml'))
    for name in ('tmpl', 'c1', 'plain'):
        os.symlink(os.path.join(definitions, name + '.xml'), os.path.join(definitions, 'autostart', name + '.xml'))
    with caplog.at_level(logging.WARNING, logger='embedvirt.helper'):
        domains.unmark_autostart_of_clone_sources(_root_dir.EmbedRoot(short_tmp))
    assert sorted(os.listdir(os.path.join(definitions, 'autostart'))) == ['c1.xml', 'plain.xml']
    assert sorted(os.listdir(definitions)) == sorted(list(files) + ['autostart', 'c2.xml'])
    assert 'domain tmpl is the source of linked clones: removed its autostart mark' in caplog.text
    assert 'broken.xml' in caplog.text and 'big.xml' in caplog.text and 'c2.xml' in caplog.text


def test_a_root_without_autostart_marks_is_left_alone(short_tmp):
    domains.unmark_autostart_of_clone_sources(_root_dir.EmbedRoot(short_tmp))
    assert os.listdir(short_tmp) == []


def test_what_qemu_refuses_is_a_snapshot_error_with_a_fix_and_its_reply_in_the_log(caplog):
    class QemuMonitor:
        @staticmethod
        def qemuMonitorCommand(dom, command, flags):
            return '{"error": {"class": "GenericError", "desc": "Device has no medium"}}'
    root = _root_dir.EmbedRoot('/srv/vms')
    part = snapshots.Snapshots(type('Drivers', (), {'root': root, 'libvirt_qemu': QemuMonitor})(), None)
    with caplog.at_level(logging.ERROR, logger='embedvirt.helper'), pytest.raises(HelperError) as caught:
        part.monitor(SnapshotDomain(True), 'transaction', {'actions': []})
    assert caught.value.kind == 'snapshot' and 'Device has no medium' in caught.value.message
    assert 'memory=true' in caught.value.hint and root.log_path in caught.value.hint
    assert 'GenericError' in caplog.text


def test_a_clone_is_not_defined_while_its_source_runs_or_autostarts():
    class Source:
        def __init__(self, active, autostart=False):
            self.active, self.marked = active, autostart

        def isActive(self):
            return self.active

        def isPersistent(self):
            return True

        def autostart(self):
            return self.marked

        def name(self):
            return 'tmpl'

    part = domains.Domains.__new__(domains.Domains)
    clone = ElementTree.fromstring("<domain><name>c1</name><metadata><clone xmlns='%s' source='tmpl'/></metadata>"
                                   "</domain>" % _protocol.CLONE_NAMESPACE)
    part.find = lambda name: Source(True) if name == 'tmpl' else None
    with pytest.raises(HelperError, match="linked clone of 'tmpl', which is running now") as caught:
        part.refuse_running_source(clone)
    assert caught.value.kind == 'clone_source'
    part.find = lambda name: Source(False, autostart=True)
    with pytest.raises(HelperError, match="linked clone of 'tmpl', which starts with the root") as caught:
        part.refuse_running_source(clone)
    assert caught.value.kind == 'clone_source' and 'autostart=false' in caught.value.hint
    part.find = lambda name: Source(False)
    part.refuse_running_source(clone)
    part.refuse_running_source(ElementTree.fromstring('<domain><name>plain</name></domain>'))
