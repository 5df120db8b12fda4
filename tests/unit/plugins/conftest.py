# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


import os
import pwd

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _confinement
from ansible_collections.embedvirt.libvirt.tests.unit.plugins.fake_helper import FakeHelper


@pytest.fixture
def fake_helper():
    """A fresh root whose helper is a FakeHelper (see fake_helper.py), removed afterwards."""
    with FakeHelper() as fake:
        yield fake


@pytest.fixture(scope='session', autouse=True)
def qemu_accounts_removed():
    """Run as root, tests make roots of root's, which get real QEMU accounts: those of roots
    that are gone are removed when the tests end (each test process does it; a root another
    one still uses is still there)."""
    yield
    if os.geteuid() != 0:
        return
    prefix = _confinement.COMMENT % ''
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(_confinement.PREFIX) and entry.pw_gecos.startswith(prefix):
            root = entry.pw_gecos[len(prefix):]
            if not os.path.exists(root):
                _confinement.remove(root)
