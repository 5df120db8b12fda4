# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""What the helper tells a client when something fails: the error, and the fix for the
failures libvirt's embedded mode is known for."""

from xml.etree import ElementTree

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _protocol


class HelperError(Exception):
    """An error a request reports back to its client: kind, message and a hint."""

    def __init__(self, kind, message, hint=None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint

    def to_dict(self):
        return {'kind': self.kind, 'message': self.message, 'hint': self.hint}


def explain_open_error(message, root, pidfile):
    """Turn libvirt's message for a failed embedded open into a HelperError with a fix."""
    for what in ('user', 'group'):
        marker = "Failed to parse %s '" % what
        if marker in message:
            name = message.split(marker, 1)[1].split("'", 1)[0]
            command = ('useradd --system --no-create-home --shell /usr/sbin/nologin %s' % name
                       if what == 'user' else 'groupadd --system %s' % name)
            return HelperError(
                'account', message,
                "running privileged, libvirt's QEMU driver looks up the %s '%s' (its build "
                "default) before it reads qemu.conf, even when qemu.conf names another %s: "
                "create it ('%s')"
                % (what, name, what, command))
    if 'Failed to acquire pid file' in message:
        return HelperError(
            'root_busy', message,
            "root '%s' is already open in %s, which is not this collection's helper; libvirt "
            "allows one process per embedded root: stop that process (or let it finish) and "
            "retry, or use another root" % (root, describe_pidfile_owner(pidfile)))
    if 'No space left on device' in message:
        return HelperError(_protocol.ERROR_STORAGE, message, hint_for_libvirt_error(message))
    if 'no connection driver available' in message:
        if 'available for secret:' in message:
            hint = ("libvirt's secret driver module is not installed: install libvirt-daemon-driver-secret "
                    "(Debian 13 and later, Fedora, RHEL: a package of its own) or libvirt-daemon (Debian 12)")
        else:
            hint = "libvirt's QEMU driver module is not installed: install libvirt-daemon-driver-qemu"
        return HelperError('driver_missing', message, hint + '; the embedvirt.libvirt.host role installs both')
    return HelperError(_protocol.ERROR_LIBVIRT, message)


def explain_agent_error(message, name, command):
    if 'not running' in message:
        return HelperError('not_running', "domain '%s' is not running: %s" % (name, message),
                           'start it (embedvirt.libvirt.domain state=running)')
    if 'not responding' in message or 'not connected' in message or 'not configured' in message:
        return HelperError(
            'agent_unavailable', "the guest agent of domain '%s' does not answer: %s" % (name, message),
            "give the domain a <channel type='unix'><target type='virtio' "
            "name='org.qemu.guest_agent.0'/></channel> and run qemu-guest-agent in the guest")
    if 'has been disabled' in message or 'CommandDisabled' in message:
        return HelperError('agent_disabled', "the guest agent of domain '%s' refuses %s: %s"
                           % (name, command, message),
                           'enable %s in the guest (qemu-ga --block-rpcs / allow-rpcs)' % command)
    return HelperError('agent', message)


_SECRETS_UNREACHABLE = (
    "the helper could not hand the guest its secrets (an encrypted disk's passphrase): if the helper's "
    "log says it cannot reach libvirt internals, this libvirt.so.0 does not export virIdentitySetCurrent "
    "and virSetConnectSecret: use your distribution's libvirt build (Debian, Ubuntu, Fedora and RHEL "
    "export them) or start the guest without secrets; if the log does not say so, it is a bug of this "
    "collection: report it with the helper's log")

# Messages of libvirt calls that fail because of embedded mode itself, and what to do.
EMBEDDED_MODE_HINTS = (
    ('virtnetworkd-sock', "libvirt networks do not exist in embedded mode (the network driver "
                          "cannot be embedded): use <interface type='user'>, type='bridge' with an "
                          "existing host bridge, or type='ethernet' with a tap device"),
    ('virtstoraged-sock', "storage pools and volumes do not exist in embedded mode: give disks as "
                          "<disk type='file'> with a path (see embedvirt.libvirt.volume)"),
    ('virtlogd-sock', 'add stdio_handler = "file" to <root>/etc/qemu.conf, so QEMU logs to files '
                      'instead of the system virtlogd'),
    ('to satisfy', "no UEFI firmware is installed for firmware: uefi: install ovmf (Debian/Ubuntu) or edk2-ovmf "
                   "(Fedora/RHEL); the embedvirt.libvirt.host role does"),
    # Where the thread's identity or secret connection is missing (drivers.SecretThreadContext).
    ('No current identity to elevate', _SECRETS_UNREACHABLE),
    ("Missing URI parameter 'root'", _SECRETS_UNREACHABLE),
    # Not embedded mode's fault, but where a root's files go is: say which filesystem.
    ('No space left on device', 'the filesystem that holds the root is full: free space there '
                                '(df <root>) and run the task again; libvirt keeps what it had '
                                'stored before'),
)


def hint_for_libvirt_error(message):
    for marker, hint in EMBEDDED_MODE_HINTS:
        if marker in message:
            return hint
    return None


def describe_pidfile_owner(pidfile):
    """Who holds a libvirt pidfile: 'process <pid> (<command line>)'."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return 'another process'
    argv = _protocol.process_argv(pid)
    return 'process %d (%s)' % (pid, ' '.join(argv)[:120]) if argv else 'another process'


def parse_xml(xml, root_tag):
    """An XML document with root_tag at its top, or the error that says what is wrong."""
    try:
        tree = ElementTree.fromstring(xml)
    except ElementTree.ParseError as e:
        raise HelperError('xml', 'the XML is not well-formed: %s' % e, 'fix the XML syntax')
    if tree.tag != root_tag:
        raise HelperError('xml', 'the XML describes <%s>, not <%s>' % (tree.tag, root_tag),
                          'give a <%s> document' % root_tag)
    return tree
