# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""The helper's bundle, the one place that knows its parts: which modules it holds, the
importer that makes them importable from a bundle, the bootstrap that runs it, and its version
(the sha256 of its bytes). The SSH relay's bundle (the client and the helper's) is made here too.

The bundle is made where this collection is installed (the controller, or the SSH relay's own
bundle) and never imported there: reading a module's source (bundle_sources) does not import it.
A module gets it from its action (plugin_utils/_action.py) only when it must start a helper: no
module imports the helper, so AnsiballZ leaves it out of every module's payload.
"""

import hashlib
import json

PACKAGE = __name__.rsplit('.', 1)[0]

# The helper: _helper/server.py's main() and everything it imports of this collection.
HELPER_MODULES = tuple(PACKAGE + '.' + name for name in (
    '_protocol', '_root', '_root_dir', '_rules', '_versions', '_network', '_confinement', '_qemu_conf', '_helper',
    '_helper.errors', '_helper.drivers', '_helper.domains', '_helper.agent', '_helper.secrets', '_helper.snapshots',
    '_helper.events', '_helper.confine', '_helper.server'))
HELPER_MAIN = PACKAGE + '._helper.server'
# The relay on a hypervisor (plugin_utils/_hypervisor.py): a client there, with the helper to start.
RELAY_MODULES = tuple(PACKAGE + '.' + name for name in ('_bundle', '_client', '_client_error', '_helper_start', '_helper_python')) + HELPER_MODULES

# `python -I -c BOOTSTRAP <helper argv>` reads the helper's bundle from stdin, makes its modules
# importable and runs the helper; the version is the hash of exactly those bytes. A boot unit
# gives it the same bytes from a file (StandardInput=file:).
BOOTSTRAP = ("import hashlib, importlib, json, sys; data = sys.stdin.buffer.read(); sys.stdin.close(); "
             "bundle = json.loads(data); exec(bundle['importer'], {'BUNDLE_SOURCES': bundle['sources']}); "
             "sys.exit(importlib.import_module(bundle['main']).main(sys.argv[1:], hashlib.sha256(data).hexdigest()))")

# The importer of a bundle: python modules given as {name: source}, importable by name (the
# packages above them made empty). Each module's origin is the path it has in the collection
# ('a/b/__init__.py', 'a/b/c.py'), and its loader's get_data gives a source back by that path, as a
# module's loader does from a file or AnsiballZ's zip: so bundle_sources reads a bundle like those.
# The helper (BOOTSTRAP) and the SSH relay run it before they import anything of this collection.
BUNDLE_IMPORTER = r'''
import importlib.abc, importlib.util, sys

class Bundle(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, sources):
        self.sources = dict((name, source.encode('utf-8')) for name, source in sources.items())
    def find_spec(self, name, path=None, target=None):
        package = name + '.__init__' in self.sources or any(m.startswith(name + '.') for m in self.sources)
        if name.endswith('.__init__') or not (package or name in self.sources):
            return None
        origin = name.replace('.', '/') + ('/__init__.py' if package else '.py')
        return importlib.util.spec_from_loader(name, self, origin=origin, is_package=package)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        module.__file__ = module.__spec__.origin
        source = self.sources.get(module.__file__[:-3].replace('/', '.'))
        if source is not None:
            exec(compile(source, module.__file__, 'exec'), module.__dict__)
    def get_data(self, path):
        return self.sources[path[:-3].replace('/', '.')]

sys.meta_path.insert(0, Bundle(BUNDLE_SOURCES))
'''


def bundle_sources(names):
    """{name: source} of this collection's modules, for a bundle (a package under '<name>.__init__'):
    each read as shipped, from a file, AnsiballZ's zip or a bundle alike, by the loader of this
    module, which lies next to them. Never imported, nor compiled: importlib's find_spec compiles
    a module in a zip to tell its file name."""
    here = __spec__  # pylint: disable=undefined-variable
    directory = here.origin.rsplit('/', 1)[0]
    sources = {}
    for name in names:
        path = directory + '/' + name[len(PACKAGE) + 1:].replace('.', '/')
        if any(other.startswith(name + '.') for other in names):
            sources[name + '.__init__'] = here.loader.get_data(path + '/__init__.py').decode('utf-8')
        else:
            sources[name] = here.loader.get_data(path + '.py').decode('utf-8')
    return sources


def helper_bundle():
    """The helper's bundle (what BOOTSTRAP reads) and its version."""
    data = json.dumps({'importer': BUNDLE_IMPORTER, 'main': HELPER_MAIN, 'sources': bundle_sources(HELPER_MODULES)},
                      sort_keys=True).encode('utf-8')
    return data, hashlib.sha256(data).hexdigest()


def relay_setup():
    """What the SSH relay needs before its first request: the importer and the sources."""
    return {'package': PACKAGE, 'importer': BUNDLE_IMPORTER, 'sources': bundle_sources(RELAY_MODULES)}
