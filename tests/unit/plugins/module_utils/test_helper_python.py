# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Which Python starts a root's helper: probed by running it, never assumed."""

import subprocess
import sys

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils import _helper_python
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper_python import (
    HelperPythonError, has_bindings, helper_python)


@pytest.fixture(autouse=True)
def fresh_choice(monkeypatch):
    monkeypatch.setattr(_helper_python, '_probed', {})


@pytest.fixture(scope='module')
def venv_python(tmp_path_factory):
    """A real Python without the bindings: a venv without system site packages, as a user makes
    one for Ansible."""
    venv = tmp_path_factory.mktemp('venv')
    subprocess.run(['/usr/bin/python3', '-m', 'venv', '--without-pip', str(venv)], check=True)
    return str(venv / 'bin' / 'python3')


def test_the_host_python_with_the_bindings_is_found_from_a_venv(monkeypatch, venv_python):
    assert not has_bindings(venv_python)
    monkeypatch.setattr(sys, 'executable', venv_python)
    chosen = helper_python()
    assert chosen == '/usr/bin/python3'
    assert helper_python() is chosen
    # Each Python probed once for the process, whichever choice asked (the boot unit's too).
    assert _helper_python._probed == {venv_python: False, '/usr/bin/python3': True}
    assert helper_python(for_boot=True) == '/usr/bin/python3'
    assert _helper_python._probed == {venv_python: False, '/usr/bin/python3': True}


def test_the_task_python_is_kept_when_it_has_the_bindings(monkeypatch):
    monkeypatch.setattr(sys, 'executable', '/usr/bin/python3')
    monkeypatch.setattr(_helper_python, 'DISTRIBUTION_PYTHONS', ())
    assert helper_python() == '/usr/bin/python3'


def test_a_given_python_must_be_absolute_and_import_libvirt(venv_python):
    with pytest.raises(HelperPythonError, match="'python3' is not an absolute path"):
        helper_python('python3')
    with pytest.raises(HelperPythonError, match='%s cannot import libvirt' % venv_python) as e:
        helper_python(venv_python)
    assert 'python3-libvirt' in e.value.hint
    assert helper_python('/usr/bin/python3') == '/usr/bin/python3'


def test_no_python_with_the_bindings_names_what_was_tried_and_the_package(monkeypatch, venv_python):
    monkeypatch.setattr(sys, 'executable', venv_python)
    monkeypatch.setattr(_helper_python, 'DISTRIBUTION_PYTHONS', ('/bin/true', '/nonexistent/python3', venv_python))
    with pytest.raises(HelperPythonError) as e:
        helper_python()
    # /bin/true exits 0 whatever it is asked: a probe that only ran the program would take it.
    assert str(e.value) == ('no Python on this host can import libvirt, which the helper needs (tried %s, /bin/true)'
                            % venv_python)
    assert 'python3-libvirt' in e.value.hint and 'helper_python' in e.value.hint


def test_the_probe_runs_isolated_as_the_helper_does(monkeypatch, tmp_path, venv_python):
    # A libvirt module on PYTHONPATH is not what the helper (python -I) imports.
    (tmp_path / 'libvirt.py').write_text('def getVersion():\n    return 1\n')
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))
    subprocess.run([venv_python, '-c', 'import libvirt'], check=True)
    assert not has_bindings(venv_python)
    assert has_bindings('/usr/bin/python3')


def test_a_boot_unit_prefers_the_distribution_python_to_the_task_one(monkeypatch, tmp_path):
    # The task's Python has the bindings (a venv with system site packages) but may be gone at
    # the next boot; the task itself keeps using it.
    venv = tmp_path / 'with-site'
    subprocess.run(['/usr/bin/python3', '-m', 'venv', '--without-pip', '--system-site-packages', str(venv)],
                   check=True)
    task_python = str(venv / 'bin' / 'python3')
    monkeypatch.setattr(sys, 'executable', task_python)
    assert helper_python() == task_python
    assert helper_python(for_boot=True) == '/usr/bin/python3'
    monkeypatch.setattr(_helper_python, 'DISTRIBUTION_PYTHONS', ('/nonexistent/python3',))
    monkeypatch.setattr(_helper_python, '_probed', {})
    assert helper_python(for_boot=True) == task_python
