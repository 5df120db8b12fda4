# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""The helper's secret operations (secret_* in _protocol.Operations), on the embedded secret
driver, and the digests that tell whether a private secret holds a value."""

import base64
import hashlib
import hmac
import os

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _versions
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.drivers import DriverUser, write_whole
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.errors import (
    HelperError, hint_for_libvirt_error, parse_xml)


class Secrets(DriverUser):
    """The secrets of the root."""

    def __init__(self, drivers):
        super().__init__(drivers)
        # uuid -> digest record of a private ephemeral secret's value: only in memory, as the
        # secret itself.
        self.ephemeral_digests = {}

    def _secret(self, secret_uuid=None, usage_type=None, usage_id=None):
        """The secret with this uuid, or else with this usage; None if there is none."""
        try:
            if secret_uuid:
                return self.secret.secretLookupByUUIDString(secret_uuid)
            usage = getattr(self.libvirt, 'VIR_SECRET_USAGE_TYPE_%s' % usage_type.upper())
            return self.secret.secretLookupByUsage(usage, usage_id)
        except self.libvirt.libvirtError as e:
            if e.get_error_code() == self.libvirt.VIR_ERR_NO_SECRET:
                return None
            raise

    def secret_detail(self, sec):
        tree = parse_xml(sec.XMLDesc(0), 'secret')
        usage = tree.find('usage')
        usage_id = None
        if usage is not None:
            for child in usage:
                usage_id = (child.text or '').strip()
        return {
            'uuid': sec.UUIDString(),
            'usage_type': usage.get('type') if usage is not None else 'none',
            'usage_id': usage_id,
            'description': (tree.findtext('description') or '').strip() or None,
            'private': tree.get('private') == 'yes',
            'ephemeral': tree.get('ephemeral') == 'yes',
        }

    def secret_get(self, uuid, usage_type, usage_id):
        sec = self._secret(uuid, usage_type, usage_id)
        return self.secret_detail(sec) if sec is not None else None

    def secret_define(self, xml):
        if parse_xml(xml, 'secret').get('ephemeral') == 'yes':
            problem = _versions.ephemeral_secret_problem(self.drivers.libvirt_version())
            if problem:
                raise HelperError('unsupported', *problem)
        return self.secret_detail(self.secret.secretDefineXML(xml, 0))

    def secret_value_matches(self, uuid, value):
        """Whether the secret holds value (base64); None when that cannot be known."""
        sec = self._secret(uuid)
        detail = self.secret_detail(sec)
        wanted = base64.b64decode(value)
        if not detail['private']:
            try:
                return hmac.compare_digest(sec.value(0), wanted)
            except self.libvirt.libvirtError:
                return False  # no value set yet
        # libvirt never hands out a private secret's value: compare with the salted digest
        # recorded when this collection set it.
        try:
            if detail['ephemeral']:
                record = self.ephemeral_digests[detail['uuid']]
            else:
                with open(self.root.secret_digest_path(uuid), 'rb') as f:
                    record = f.read()
            salt, digest = record.split(b'$', 1)
        except (OSError, KeyError, ValueError):
            return None
        return hmac.compare_digest(digest, value_digest(base64.b64decode(salt), wanted))

    def secret_set_value(self, uuid, value):
        sec = self._secret(uuid)
        secret_value = base64.b64decode(value)
        sec.setValue(secret_value, 0)
        detail = self.secret_detail(sec)
        path = self.root.secret_digest_path(uuid)
        if detail['private'] and detail['ephemeral']:
            self.ephemeral_digests[detail['uuid']] = digest_record(secret_value)
        elif detail['private']:
            write_secret_digest(path, secret_value)
        if not detail['private'] or detail['ephemeral']:
            remove_file(path)
        return detail

    def secret_undefine(self, uuid):
        """Remove a secret (and the digest of its value).

        Before _versions.SECRET_DRIVER_FIXED, virSecretUndefine crashes the process: the
        helper deletes the stored definition and value itself and then restarts, so the next
        helper loads the secrets that remain. Running guests already hold what they were given.
        """
        sec = self._secret(uuid)
        name = sec.UUIDString()
        self.ephemeral_digests.pop(name, None)
        if _versions.at_least(self.drivers.libvirt_version(), _versions.SECRET_DRIVER_FIXED):
            sec.undefine()
            remove_file(self.root.secret_digest_path(name))
            return {'restart': False}
        for path in self.root.secret_files(name):
            remove_file(path)
        self.drivers.restart_requested = True
        return {'restart': True}


def remove_file(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_secret_digest(path, secret_value):
    """Record a salted digest of a private secret's value, all or nothing.

    The value is already in libvirt's store. If the digest cannot be written, the old one
    goes too: it would vouch for a value the secret no longer holds.
    """
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_whole(path, digest_record(secret_value))
    except OSError as e:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise HelperError('storage', 'the secret holds the new value, but its digest could not be '
                          'recorded (%s), so the next run will set the value again' % e,
                          hint_for_libvirt_error(str(e)))


def digest_record(secret_value):
    """A fresh salt and the digest of the value with it: what secret_value_matches compares."""
    salt = os.urandom(16)
    return base64.b64encode(salt) + b'$' + value_digest(salt, secret_value)


def value_digest(salt, value):
    return hashlib.sha256(salt + value).hexdigest().encode('ascii')
