# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The fake helper refuses what the real one refuses, so tests against it keep clients honest."""

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _protocol
from ansible_collections.embedvirt.libvirt.plugins.module_utils._client import HelperClient, HelperClientError


@pytest.mark.parametrize('name, args, says', [
    ('domain_paint', {}, "unknown operation 'domain_paint'"),
    ('domain_list', {'colour': 'red'}, 'domain_list takes names, states; unknown: colour'),
    ('domain_get', {}, 'domain_get takes name; missing: name'),
])
def test_requests_outside_the_protocol_are_protocol_errors(fake_helper, name, args, says):
    client = HelperClient(fake_helper.root, create=False)
    op = _protocol.Operation(name, tuple(args), {}, False, None)  # what a client of another release might send
    try:
        with pytest.raises(HelperClientError) as failure:
            client.request(op, args)
    finally:
        client.close()
    assert failure.value.kind == _protocol.ERROR_PROTOCOL and str(failure.value) == says
    assert fake_helper.ops() == []
