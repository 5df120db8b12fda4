# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The host role's list of Debian packages is the one list: README shows it, bootstrap.sh runs the role."""

import os
import re

import yaml

CHECKOUT = os.path.join(os.path.dirname(__file__), '..', '..', '..')


def read(relative):
    with open(os.path.join(CHECKOUT, relative)) as f:
        return f.read()


def test_readme_shows_the_host_role_s_debian_packages():
    role = yaml.safe_load(read('roles/host/vars/Debian.yml'))['host_packages']
    shown = re.search(r'^apt-get install (.*)$', read('README.md'), re.M).group(1).split()
    assert shown == role


def test_bootstrap_installs_no_package_of_the_host_role_itself():
    role = set(yaml.safe_load(read('roles/host/vars/Debian.yml'))['host_packages'])
    listed = re.search(r'^packages=\((.*?)^\)', read('hacking/bootstrap.sh'), re.M | re.S).group(1)
    words = set(re.sub(r'#[^\n]*', '', listed).split())
    assert not words & role and 'embedvirt.libvirt.host' in read('hacking/bootstrap.sh')
