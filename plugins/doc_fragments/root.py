# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    # Options every module shares; the argument spec is ROOT_ARGUMENT_SPEC in module_utils/common.py.
    DOCUMENTATION = r'''
options:
  root:
    description:
      - The embedded driver root, the directory that holds everything of C(qemu:///embed?root=...)
        and C(secret:///embed?root=...) on the managed host.
      - Must be absolute, normalised, not C(/) and at most 700 bytes long. A root of more than 27 bytes
        reaches libvirt through a short alias (a symbolic link in C(/run/embedvirt) for root, in
        C(/tmp/.ev<uid>) for other users), so that the UNIX sockets libvirt puts under it fit.
      - Created (mode 0700) when missing. When it exists it must belong to the user running the task,
        unless that user is root.
      - If not given, the value of the E(EMBEDVIRT_ROOT) environment variable on the managed host is used.
    type: path
    required: true
  helper_idle_timeout:
    description:
      - Seconds the root's helper process stays up with no request before it exits; V(0) keeps it up.
      - When omitted, a running helper keeps its setting and a new helper uses 300 seconds.
      - Guests do not depend on the helper; they keep running when it exits.
    type: int
  helper_python:
    description:
      - The Python, on the managed host, that runs the root's helper, the only process that imports the
        libvirt bindings. An absolute path. The module itself may run in any Python (Ansible in a venv).
      - When omitted, the Python that runs the module if it has the bindings, else the first of
        C(/usr/bin/python3), C(/usr/libexec/platform-python) and C(/usr/local/bin/python3) that has them.
      - If not given, the value of the E(EMBEDVIRT_HELPER_PYTHON) environment variable on the managed host is used.
    type: path
  _helper_version:
    description:
      - Internal, set by this collection's action plugin; never set it in a task.
      - The version (sha256) of the helper's code on the controller.
    type: str
  _helper_code:
    description:
      - Internal, set by this collection's action plugin; never set it in a task.
      - The helper's code, given only when the module must start the root's helper.
    type: str
notes:
  - Libvirt allows one process per embedded root, so every task against a root goes through
    one helper process per root, started on demand and serialised with a lock in the root.
  - The helper runs as the owner of the root, also when the task runs as root; a task run as root
    never executes or follows a file that the owner could have placed in the root.
  - Needs on the managed host QEMU, libvirt's QEMU and secret driver modules and the libvirt Python
    bindings for one of its Pythons (see O(helper_python)). On Debian 12 C(apt-get install qemu-system-x86
    qemu-utils libvirt-daemon libvirt-daemon-driver-qemu python3-libvirt).
  - Running as root, libvirt's QEMU driver also needs the account C(libvirt-qemu) (user and group) to exist.
requirements:
  - libvirt Python bindings (python3-libvirt) for the Python that runs the helper (O(helper_python)), which need
    not be the one that runs the module
'''
