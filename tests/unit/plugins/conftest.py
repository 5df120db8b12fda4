# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


import pytest

from ansible_collections.embedvirt.libvirt.tests.unit.plugins.fake_helper import FakeHelper


@pytest.fixture
def fake_helper():
    """A fresh root whose helper is a FakeHelper (see fake_helper.py), removed afterwards."""
    with FakeHelper() as fake:
        yield fake
