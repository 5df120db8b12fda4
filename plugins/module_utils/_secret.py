# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Bring a secret of the embedded secret driver to the definition and value asked for.

The value travels only to the helper over the root's private socket; it is never part of a
result, a diff or a log line.
"""


import base64
import binascii
import uuid as uuidlib
from xml.etree import ElementTree

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _versions
from ansible_collections.embedvirt.libvirt.plugins.module_utils._common import Manager

# libvirt's <usage type=...> and the element that names what the secret is for.
USAGE_ELEMENTS = {'volume': 'volume', 'ceph': 'name', 'iscsi': 'target', 'tls': 'name', 'vtpm': 'name'}
USAGE_TYPES = ['none'] + sorted(USAGE_ELEMENTS)
FIELDS = ('usage_type', 'usage_id', 'description', 'private', 'ephemeral')


def secret_xml(uuid, usage_type, usage_id, description, private, ephemeral):
    root = ElementTree.Element('secret', ephemeral='yes' if ephemeral else 'no',
                               private='yes' if private else 'no')
    if uuid:
        ElementTree.SubElement(root, 'uuid').text = uuid
    if description:
        ElementTree.SubElement(root, 'description').text = description
    if usage_type != 'none':
        usage = ElementTree.SubElement(root, 'usage', type=usage_type)
        ElementTree.SubElement(usage, USAGE_ELEMENTS[usage_type]).text = usage_id
    return ElementTree.tostring(root, encoding='unicode')


def render(secret):
    if secret is None:
        return ''
    return ''.join('%s: %s\n' % (key, secret.get(key)) for key in ('uuid',) + FIELDS)


class SecretManager(Manager):
    def __init__(self, module):
        super().__init__(module)
        self.value_changed = False

    def encoded_value(self):
        """The value as base64, which is how it travels to the helper."""
        value = self.params['value']
        if self.params['value_encoding'] == 'text':
            return base64.b64encode(value.encode('utf-8')).decode('ascii')
        try:
            return base64.b64encode(base64.b64decode(value, validate=True)).decode('ascii')
        except (binascii.Error, ValueError):
            self.module.fail('value is not valid base64 (value_encoding=base64): give base64 text, '
                             'or set value_encoding=text', error_kind='value')

    def run(self):
        params = self.params
        if params['uuid']:
            try:
                params['uuid'] = str(uuidlib.UUID(params['uuid']))
            except ValueError:
                self.module.fail("uuid '%s' is not a UUID: give one such as %s, or leave it out"
                                 % (params['uuid'], uuidlib.uuid4()), error_kind='uuid')
        lookup = dict(uuid=params['uuid'])
        if not params['uuid']:
            lookup.update(usage_type=params['usage_type'], usage_id=params['usage_id'])
        before = self.module.helper_or_fail.secret_get(**lookup)
        after = before
        if params['state'] == 'absent':
            if before is not None:
                if self.plan('undefine'):
                    self.module.helper_or_fail.secret_undefine(uuid=before['uuid'])
                after = None
        else:
            value = self.encoded_value() if params['value'] is not None else None
            after = self.ensure_present(before, value)
        result = dict(changed=self.changed, actions=self.actions, secret=after, value_changed=self.value_changed)
        if self.module.diff_mode:
            after_text = render(after) + ('value: (changed)\n' if self.value_changed else '')
            result['diff'] = dict(before=render(before), after=after_text)
        return result

    def ensure_present(self, current, value):
        params = self.params
        wanted = dict((key, params[key]) for key in FIELDS)
        if params['usage_type'] == 'none':
            wanted['usage_id'] = None
        secret = current
        if current is None or any(current[key] != wanted[key] for key in FIELDS):
            uuid = params['uuid'] or (current or {}).get('uuid')
            # (A root check mode would create gets the libvirt of the real run: not known yet.)
            problem = (params['ephemeral'] and not self.module.root_missing
                       and _versions.ephemeral_secret_problem(self.module.helper_or_fail.helper_status()['libvirt']))
            if problem:
                self.module.fail('%s: %s' % problem, error_kind='unsupported')
            if self.plan('define'):
                secret = self.module.helper_or_fail.secret_define(xml=secret_xml(uuid, **wanted))
            else:
                secret = dict(wanted, uuid=uuid)
        if value is not None:
            matches = None
            if current is not None and secret.get('uuid'):
                matches = self.module.helper_or_fail.secret_value_matches(uuid=secret['uuid'], value=value)
            if not matches:
                self.value_changed = True
                if self.plan('set value'):
                    secret = self.module.helper_or_fail.secret_set_value(uuid=secret['uuid'], value=value)
        return secret
