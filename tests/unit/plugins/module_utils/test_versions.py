# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _versions


@pytest.mark.parametrize('text, version', [
    ('9.0.0', (9, 0, 0)),
    ('11.3.0', (11, 3, 0)),
    ('qemu-img version 10.0.3 (Debian 1:10.0.3+ds-0+deb13u1)\nCopyright', (10, 0, 3)),
    ('QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)', (7, 2, 19)),
    ('8.1', (8, 1, 0)),
])
def test_parse(text, version):
    assert _versions.parse(text) == version


def test_parse_refuses_text_without_a_version():
    with pytest.raises(ValueError):
        _versions.parse('qemu-img: command not found')


def test_ephemeral_secrets_only_where_libvirt_was_measured_not_to_crash():
    problem, fix = _versions.ephemeral_secret_problem('9.0.0')
    assert 'libvirt 9.0.0' in problem and '11.3.0 and later' in problem
    assert 'ephemeral=false' in fix
    # Not measured: kept on the safe side.
    assert _versions.ephemeral_secret_problem('10.0.0') is not None
    assert _versions.ephemeral_secret_problem('11.3.0') is None
    assert _versions.ephemeral_secret_problem('12.0.0') is None


def test_luks_retry_gate():
    assert not _versions.at_least('qemu-img version 7.2.19', _versions.LUKS_TIMING_FIXED)
    assert _versions.at_least('qemu-img version 10.0.3', _versions.LUKS_TIMING_FIXED)
