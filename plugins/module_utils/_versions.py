# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""Which libvirt and QEMU versions need which workaround. Each gate is the first version the
workaround was measured to be unneeded on; versions in between that nobody measured keep it
(it works there too)."""

import re

# libvirt 9.0's embedded secret driver calls the shutdown-inhibit callback that embedded mode
# leaves NULL, and so crashes the process in virSecretUndefine and when it defines an
# ephemeral secret. Measured fixed on 11.3.
SECRET_DRIVER_FIXED = (11, 3, 0)
# QEMU 7.2's qemu-img now and then fails to create a LUKS image ("Unable to get accurate CPU
# usage") where the thread CPU clock is coarse, as on this project's VMs. Not seen on 10.0.
LUKS_TIMING_FIXED = (10, 0, 0)
# libvirt 9.0's parser refuses <backend type='passt'/> on an <interface type='user'>; 11.3 runs
# passt for it with its <portForward>s. 10.x was not measured: from 10.0, as issue 22 asked.
PASST_WORKS = (10, 0, 0)


def parse(text):
    """(major, minor, micro) of the first version number in text: '9.0.0', 'qemu-img version 10.0.3'."""
    match = re.search(r'(\d+)\.(\d+)(?:\.(\d+))?', text or '')
    if not match:
        raise ValueError('no version number in %r' % text)
    return tuple(int(part or 0) for part in match.groups())


def at_least(version, gate):
    return parse(version) >= gate


def text(version):
    return '.'.join(str(part) for part in version)


def ephemeral_secret_problem(libvirt_version):
    """(problem, fix) when this libvirt cannot hold ephemeral secrets embedded, else None."""
    if at_least(libvirt_version, SECRET_DRIVER_FIXED):
        return None
    return ("libvirt %s's embedded secret driver cannot hold ephemeral secrets (it crashes defining "
            "one; %s and later can)" % (libvirt_version, text(SECRET_DRIVER_FIXED)),
            'use ephemeral=false, or libvirt %s or later' % text(SECRET_DRIVER_FIXED))
