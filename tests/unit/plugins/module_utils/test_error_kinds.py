# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Every error kind the code can return is in _protocol.ERROR_KINDS, and the guide lists them."""

import ast
import glob
import os

from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import ERROR_KINDS

CHECKOUT = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..')
# Kinds that are the defaults of the error classes' own arguments.
DEFAULTS = {'client', 'helper'}


def literal(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def kinds_in(path):
    """The error kinds a file names literally: error_kind=, the kind of HelperError and
    HelperClientError, {'kind': ...}, and the kind of a refusal rule's (kind, problem, fix)."""
    found = set()
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, 'id', '')
            found.update(literal(k.value) for k in node.keywords if k.arg == 'error_kind')
            if name in ('HelperError', 'HelperClientError'):
                found.update(literal(k.value) for k in node.keywords if k.arg == 'kind')
                position = 0 if name == 'HelperError' else 1
                if len(node.args) > position:
                    found.add(literal(node.args[position]))
        elif isinstance(node, ast.Dict):
            found.update(literal(v) for k, v in zip(node.keys, node.values) if literal(k) in ('kind', 'error_kind'))
        elif isinstance(node, ast.Return) and path.endswith('_rules.py') and isinstance(node.value, ast.Tuple):
            found.add(literal(node.value.elts[0]))
    return found - {None}


def every_kind():
    found = set()
    for path in glob.glob(os.path.join(CHECKOUT, 'plugins', '**', '*.py'), recursive=True):
        found |= kinds_in(path)
    return found


def test_every_error_kind_the_code_returns_is_registered_with_a_meaning():
    used = every_kind()
    assert used - set(ERROR_KINDS) == set()
    assert all(meaning and not meaning.endswith('.') for meaning in ERROR_KINDS.values())


def test_the_registry_holds_no_kind_nothing_returns():
    from ansible_collections.embedvirt.libvirt.plugins.module_utils import _protocol  # pylint: disable=import-outside-toplevel
    constants = set(v for k, v in vars(_protocol).items() if k.startswith('ERROR_') and isinstance(v, str))
    assert set(ERROR_KINDS) - every_kind() - constants - DEFAULTS == set()


def test_an_unregistered_kind_is_found(tmp_path):
    code = tmp_path / 'x.py'
    code.write_text("module.fail('no', error_kind='made_up')\nraise HelperError('also_made_up', 'x', 'y')\n")
    assert kinds_in(str(code)) == {'made_up', 'also_made_up'}


def test_the_troubleshooting_guide_lists_every_kind():
    with open(os.path.join(CHECKOUT, 'docs', 'docsite', 'rst', 'troubleshooting.rst')) as f:
        guide = f.read()
    section = guide.split('\nError kinds\n-----------\n', 1)[1]
    listed = [line.split('``')[1] for line in section.splitlines() if line.startswith('   * - ``')]
    assert listed == ['error_kind'] + list(ERROR_KINDS)
