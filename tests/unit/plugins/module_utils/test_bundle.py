# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


import ast
import hashlib
import json
import os
import subprocess
import sys

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _bundle

MODULE_UTILS = os.path.dirname(_bundle.__file__)


def source_file(name):
    relative = name[len(_bundle.PACKAGE) + 1:].replace('.', '/')
    path = os.path.join(MODULE_UTILS, relative)
    return os.path.join(path, '__init__.py') if os.path.isdir(path) else path + '.py'


def collection_imports(name):
    """The modules of this collection that a module's code imports, anywhere in it."""
    found = set()
    with open(source_file(name)) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(_bundle.PACKAGE):
            for alias in node.names:
                full = node.module + '.' + alias.name
                found.add(full if os.path.exists(source_file(full)) else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(_bundle.PACKAGE))
    return found


def closure(names):
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(collection_imports(name))
    return seen


def test_the_helper_bundle_holds_every_helper_module_and_everything_they_import():
    helper_dir = os.path.join(MODULE_UTILS, '_helper')
    every_helper_file = set('%s._helper.%s' % (_bundle.PACKAGE, f[:-3]) for f in os.listdir(helper_dir)
                            if f.endswith('.py') and f != '__init__.py') | {_bundle.PACKAGE + '._helper'}
    assert every_helper_file <= set(_bundle.HELPER_MODULES)
    assert closure(_bundle.HELPER_MODULES) == set(_bundle.HELPER_MODULES)
    assert _bundle.HELPER_MAIN in _bundle.HELPER_MODULES


def test_the_relay_bundle_holds_the_client_and_everything_it_imports():
    client = _bundle.PACKAGE + '._client'
    assert closure([client]) <= set(_bundle.RELAY_MODULES) and set(_bundle.HELPER_MODULES) <= set(_bundle.RELAY_MODULES)


def test_no_module_carries_the_helper_in_its_payload():
    # AnsiballZ packs whatever a module imports, anywhere in its code; the helper's code goes to a
    # module from its action, and only when it must start a helper (plugin_utils/_action.py).
    modules_dir = os.path.join(MODULE_UTILS, '..', 'modules')
    for name in sorted(f[:-3] for f in os.listdir(modules_dir) if f.endswith('.py') and f != '__init__.py'):
        with open(os.path.join(modules_dir, name + '.py')) as f:
            tree = ast.parse(f.read())
        imported = set(node.module + '.' + alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                       and (node.module or '').startswith(_bundle.PACKAGE) for alias in node.names)
        imported = set(n if os.path.exists(source_file(n)) else n.rsplit('.', 1)[0] for n in imported)
        carried = sorted(n for n in closure(imported) if n.endswith('._helper') or '._helper.' in n)
        assert not carried, (name, carried)


def test_the_bundle_ships_each_module_s_file_and_its_hash_is_the_version():
    data, version = _bundle.helper_bundle()
    bundle = json.loads(data)
    assert sorted(bundle['sources']) == sorted(n + ('.__init__' if n.endswith('._helper') else '') for n in _bundle.HELPER_MODULES)
    for name in _bundle.HELPER_MODULES:
        with open(source_file(name)) as f:
            assert bundle['sources'][name + ('.__init__' if name.endswith('._helper') else '')] == f.read()
    assert bundle['main'] == _bundle.HELPER_MAIN
    assert version == hashlib.sha256(data).hexdigest()


def test_reading_the_bundle_imports_and_compiles_none_of_the_helper():
    code = ('import sys; from ansible_collections.embedvirt.libvirt.plugins.module_utils import _client, _bundle; '
            '_bundle.helper_bundle(); _bundle.relay_setup(); '
            'print(sorted(m for m in sys.modules if m.endswith(("_network", "_versions", "_qemu_conf", "._helper")) '
            'or "._helper." in m))')
    out = subprocess.check_output([sys.executable, '-c', code], env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert out.decode().strip() == '[]'


def test_a_bundle_imports_its_packages_and_gives_each_module_s_source_back():
    sources = {'evt_bundle_test.__init__': 'X = 1\n', 'evt_bundle_test.inner': 'from evt_bundle_test import X\nY = X + 1\n'}
    scope = {'BUNDLE_SOURCES': sources}
    exec(_bundle.BUNDLE_IMPORTER, scope)  # pylint: disable=exec-used
    try:
        from evt_bundle_test import inner  # pylint: disable=import-error,import-outside-toplevel
        assert inner.Y == 2
        assert inner.__file__ == 'evt_bundle_test/inner.py'
        assert inner.__loader__.get_data(inner.__file__) == sources['evt_bundle_test.inner'].encode()
        package = sys.modules['evt_bundle_test']
        assert package.__file__ == 'evt_bundle_test/__init__.py' and package.__loader__.get_data(package.__file__) == b'X = 1\n'
    finally:
        sys.meta_path.remove(next(f for f in sys.meta_path if getattr(f, 'sources', None) is not None))
        for name in ('evt_bundle_test', 'evt_bundle_test.inner'):
            sys.modules.pop(name, None)


def test_the_relay_makes_from_its_bundle_the_same_helper_bundle_as_from_files():
    # What the relay does on a hypervisor: the client, imported from the relay's bundle, reads
    # the helper's sources from it.
    code = ('import json, sys; setup = json.load(sys.stdin); exec(setup["importer"], {"BUNDLE_SOURCES": setup["sources"]}); '
            'from ansible_collections.embedvirt.libvirt.plugins.module_utils import _bundle; '
            'assert type(_bundle.__loader__).__name__ == "Bundle", _bundle.__loader__; '
            'print(_bundle.helper_bundle()[1])')
    out = subprocess.check_output([sys.executable, '-I', '-c', code], input=json.dumps(_bundle.relay_setup()).encode())
    assert out.decode().strip() == _bundle.helper_bundle()[1]
