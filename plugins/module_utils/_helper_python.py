# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""Which Python runs a root's helper, the only process that imports libvirt's bindings.

Modules and plugins speak the helper's protocol with the standard library, so they may run
in any Python: Ansible in a venv, or the controller's own Python for implicit localhost. The
helper needs one with the bindings: the one given (helper_python), else the task's own when
it has them, else the first of the distribution's that has them. A boot unit prefers the
distribution's: the task's may be a venv that is gone at the next boot.
"""

import os
import subprocess
import sys

# Where distributions put the Python their python3-libvirt package is built for.
DISTRIBUTION_PYTHONS = ('/usr/bin/python3', '/usr/libexec/platform-python', '/usr/local/bin/python3')
# Answers a known line only after the import: a program that merely exits 0 is not a Python.
PROBE = 'import libvirt, sys; sys.stdout.write("embedvirt-bindings %d" % libvirt.getVersion())'
PROBE_SECONDS = 30
INSTALL_HINT = ('install the libvirt Python bindings for the host\'s Python: python3-libvirt (Debian, Ubuntu, '
                'Fedora, RHEL, SUSE)')


class HelperPythonError(Exception):
    """No usable Python for the helper; the message names what was tried, hint the fix."""

    def __init__(self, message, hint):
        super().__init__(message)
        self.hint = hint


# {python: whether it has the bindings}, for this process: each Python is probed once.
_probed = {}


def has_bindings(python):
    """Whether python imports libvirt (in isolated mode, as the helper runs)."""
    if python not in _probed:
        try:
            probe = subprocess.run([python, '-I', '-c', PROBE], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, cwd='/', timeout=PROBE_SECONDS, check=False)
            _probed[python] = probe.returncode == 0 and probe.stdout.startswith(b'embedvirt-bindings ')
        except (OSError, subprocess.TimeoutExpired):
            _probed[python] = False
    return _probed[python]


def helper_python(given=None, for_boot=False):
    """The Python to start the helper with: given (an absolute path) when it has the bindings,
    else the first that has them of this process's and the distribution's. For a boot unit the
    distribution's come first: this process's may be a venv that is gone at the next boot."""
    if given:
        if not os.path.isabs(given):
            raise HelperPythonError("helper_python '%s' is not an absolute path" % given,
                                    'give one such as /usr/bin/python3, or leave it out to have one chosen')
        if not has_bindings(given):
            raise HelperPythonError('helper_python %s cannot import libvirt' % given,
                                    '%s, or give another helper_python, or leave it out to have one chosen'
                                    % INSTALL_HINT)
        return given
    tried = []
    for python in DISTRIBUTION_PYTHONS + (sys.executable,) if for_boot else (sys.executable,) + DISTRIBUTION_PYTHONS:
        if not python or python in tried or not os.access(python, os.X_OK):
            continue
        tried.append(python)
        if has_bindings(python):
            return python
    raise HelperPythonError('no Python on this host can import libvirt, which the helper needs (tried %s)'
                            % ', '.join(tried), '%s, or give helper_python: a Python that has them' % INSTALL_HINT)
