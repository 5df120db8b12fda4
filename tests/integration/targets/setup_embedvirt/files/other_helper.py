"""Run a helper of another release of this collection, as a client of that release would.

The helper is this collection's bundle with one line added (so another version), fed to
`python -I -c BOOTSTRAP` on stdin as the client does. Usage:
  other_helper.py <collections path> --embedvirt-helper --root <root> --idle-timeout <s>
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, sys.argv[1])
from ansible_collections.embedvirt.libvirt.plugins.module_utils import _bundle  # noqa: E402 pylint: disable=wrong-import-position

bundle = json.loads(_bundle.helper_bundle()[0])
bundle['sources'][_bundle.HELPER_MAIN] += '\n# another release\n'
with tempfile.TemporaryFile() as f:
    f.write(json.dumps(bundle, sort_keys=True).encode('utf-8'))
    f.seek(0)
    os.dup2(f.fileno(), 0)
os.execv(sys.executable, [sys.executable, '-I', '-c', _bundle.BOOTSTRAP] + sys.argv[2:])
