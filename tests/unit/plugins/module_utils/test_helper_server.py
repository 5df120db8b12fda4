# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


import base64
import errno
import os
import socket

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import helper_server


def test_messages_round_trip_as_single_lines():
    message = {'id': 3, 'op': 'domain_list', 'args': {'names': ['a\nb']}}
    line = helper_server.encode(message)
    assert line.endswith(b'\n') and line.count(b'\n') == 1
    assert helper_server.decode(line) == message


def test_version_is_the_hash_of_the_code():
    assert helper_server.code_version(b'a') != helper_server.code_version(b'a ')
    assert len(helper_server.code_version(b'')) == 64


def test_format_version():
    assert helper_server.format_version(9000000) == '9.0.0'
    assert helper_server.format_version(7002022) == '7.2.22'


def test_peer_credentials_of_a_socket_pair():
    left, right = socket.socketpair(socket.AF_UNIX)
    try:
        pid, uid, _gid = helper_server.peer_credentials(left)
        assert (pid, uid) == (os.getpid(), os.geteuid())
    finally:
        left.close()
        right.close()


def test_missing_account_names_the_account_and_the_command():
    err = helper_server.explain_open_error(
        "invalid argument: Failed to parse user 'libvirt-qemu'", '/srv/vms', '/nonexistent')
    assert err.kind == 'account'
    assert 'useradd --system' in err.hint and 'libvirt-qemu' in err.hint
    err = helper_server.explain_open_error(
        "invalid argument: Failed to parse group 'qemu'", '/srv/vms', '/nonexistent')
    assert 'groupadd --system qemu' in err.hint


def test_busy_root_names_the_process(tmp_path):
    pidfile = tmp_path / 'driver.pid'
    pidfile.write_text(u'%d' % os.getpid())
    err = helper_server.explain_open_error(
        "Failed to acquire pid file '/srv/vms/run/qemu/driver.pid': Resource temporarily unavailable",
        '/srv/vms', str(pidfile))
    assert err.kind == 'root_busy'
    assert 'process %d (' % os.getpid() in err.hint


def test_busy_root_without_a_readable_pidfile(tmp_path):
    err = helper_server.explain_open_error('Failed to acquire pid file', '/srv/vms', str(tmp_path / 'none'))
    assert 'another process' in err.hint


def test_missing_driver_names_the_packages():
    err = helper_server.explain_open_error('no connection driver available for qemu:///embed?root=/x', '/x', '/none')
    assert err.kind == 'driver_missing'
    assert 'libvirt-daemon-driver-qemu' in err.hint


def test_other_libvirt_errors_pass_through():
    err = helper_server.explain_open_error('something else', '/x', '/none')
    assert (err.kind, err.message, err.hint) == ('libvirt', 'something else', None)


def test_interfaces_without_mac_keep_the_existing_ones_in_order():
    from xml.etree import ElementTree
    existing = ElementTree.fromstring(
        "<domain><devices><interface type='user'><mac address='52:54:00:00:00:01'/></interface>"
        "<interface type='user'><mac address='52:54:00:00:00:02'/></interface></devices></domain>")
    wanted = ElementTree.fromstring(
        "<domain><devices><interface type='user'/><interface type='user'><mac address='52:54:00:00:00:09'/>"
        "</interface><interface type='user'/></devices></domain>")
    helper_server.inherit_macs(wanted, existing)
    macs = [i.find('mac').get('address') if i.find('mac') is not None else None
            for i in wanted.findall('./devices/interface')]
    assert macs == ['52:54:00:00:00:01', '52:54:00:00:00:09', None]


def test_parse_xml_names_the_problem():
    import pytest
    with pytest.raises(helper_server.HelperError) as err:
        helper_server.parse_xml('<domain>', 'domain')
    assert 'not well-formed' in err.value.message
    with pytest.raises(helper_server.HelperError) as err:
        helper_server.parse_xml('<network/>', 'domain')
    assert 'describes <network>, not <domain>' in err.value.message


def test_value_digest_depends_on_salt_and_value():
    assert helper_server.value_digest(b's', b'v') != helper_server.value_digest(b't', b'v')
    assert helper_server.value_digest(b's', b'v') != helper_server.value_digest(b's', b'w')
    assert b'v' not in helper_server.value_digest(b's', b'v')


def test_xml_escape():
    assert helper_server.xml_escape('a<b>&c') == 'a&lt;b&gt;&amp;c'


def test_secret_digest_is_written_whole_and_private(tmp_path):
    path = str(tmp_path / 'digests' / 'u')
    helper_server.write_secret_digest(path, b'k3y')
    salt, digest = open(path, 'rb').read().split(b'$')
    assert digest == helper_server.value_digest(base64.b64decode(salt), b'k3y')
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.listdir(str(tmp_path / 'digests')) == ['u']


def test_secret_digest_that_cannot_be_written_leaves_no_stale_one(tmp_path, monkeypatch):
    path = str(tmp_path / 'u')
    helper_server.write_secret_digest(path, b'old value')

    def full(src, dst):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(helper_server.os, 'replace', full)
    with pytest.raises(helper_server.HelperError) as raised:
        helper_server.write_secret_digest(path, b'new value')
    assert raised.value.kind == 'storage' and 'set the value again' in raised.value.message
    assert 'free space there' in raised.value.hint
    # The old digest would vouch for 'old value', which the secret no longer holds.
    assert os.listdir(str(tmp_path)) == []


def test_os_errors_of_a_request_are_storage_errors_with_a_hint():
    class Full:
        def begin(self, op, seconds):
            return 1

        def end(self, number):
            pass

        def handle(self, request):
            raise OSError(errno.ENOSPC, 'No space left on device')
    reply = helper_server.Handler.answer(Full(), helper_server.encode({'id': 1, 'op': 'secret_set_value'}))
    assert reply['ok'] is False and reply['id'] == 1
    assert reply['error']['kind'] == 'storage' and 'free space there' in reply['error']['hint']
