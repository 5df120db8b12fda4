# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


import shutil
import tempfile

import pytest


@pytest.fixture
def short_tmp():
    """A directory for roots, short enough for their sockets (27 bytes: no alias is made in tests)."""
    path = tempfile.mkdtemp(prefix='evu', dir='/tmp')
    yield path
    shutil.rmtree(path)
