# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The benches import this collection's code; no test runs them (they take minutes and need a
libvirtd), so a moved name would break them unseen (bench/common.py did, after the split of _root)."""

import glob
import importlib
import os
import re

BENCH = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'bench')
COLLECTION = 'ansible_collections.embedvirt.libvirt'


def collection_imports():
    """(file, module, name) of each import from the collection, in code and in the programs a
    bench runs in another process (strings) alike."""
    for path in sorted(glob.glob(os.path.join(BENCH, '*.py')) + glob.glob(os.path.join(BENCH, '*', '*.py'))):
        with open(path) as f:
            text = f.read()
        for module, names in re.findall(r'^\s*from (%s[\w.]*) import ([\w, ]+)$' % re.escape(COLLECTION), text, re.M):
            for name in names.split(','):
                yield os.path.basename(path), module, name.strip()


def test_what_the_benches_import_of_the_collection_exists():
    found = list(collection_imports())
    assert len(found) >= 4  # the benches are where this test looks
    missing = ['%s: from %s import %s' % (path, module, name) for path, module, name in found
               if not hasattr(importlib.import_module(module), name)]
    assert not missing
