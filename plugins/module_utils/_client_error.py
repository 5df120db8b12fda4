# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""What stops a call through a root's helper (HelperClientError), raised by the client and by
the code that starts the helper alike; plugins and modules import it from _client."""


from ansible_collections.embedvirt.libvirt.plugins.module_utils import _protocol


class HelperClientError(Exception):
    """Anything that stops a call through the helper; the message says what to do."""

    def __init__(self, message, kind='client', hint=None, pid=None, detail=None):
        super().__init__(message)
        self.kind = kind
        self.hint = hint
        self.pid = pid
        self.detail = detail or {}

    @classmethod
    def from_reply(cls, error, pid=None):
        """The error a helper reported; pid is who reported it (the helper's own word on its
        pid is not taken: the owner of the root may run anything on its socket)."""
        if not isinstance(error, dict):
            error = {}
        return cls(str(error.get('message') or 'helper error'), str(error.get('kind', 'helper')),
                   error.get('hint') and str(error['hint']), pid, error)

    def to_dict(self):
        """The error as a reply's error (the SSH relay passes it on)."""
        return {'message': self.args[0], 'kind': self.kind, 'hint': self.hint, 'pid': self.pid}

    def __str__(self):
        text = self.args[0]
        return '%s. Fix: %s' % (text, self.hint) if self.hint else text


def unresponsive(root, pid, problem):
    """The error for a helper that does not answer: its pid, and how to get going again."""
    who = 'the helper (pid %s)' % pid if pid else 'the helper'
    return HelperClientError(
        '%s of %s %s' % (who, root.path, problem), _protocol.ERROR_UNRESPONSIVE,
        'it is stopped (kill -CONT %s) or stuck inside libvirt (see %s); `kill %s` replaces it (guests '
        'keep running, the next task starts a new helper)' % (pid or '<pid>', root.log_path, pid or '<pid>'),
        pid)
