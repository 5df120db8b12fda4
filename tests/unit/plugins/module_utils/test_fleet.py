# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""_fleet: the order in which a fleet's guests can go, and each guest's options checked as instance checks them."""

import types

import pytest

from ansible_collections.embedvirt.libvirt.plugins.module_utils._fleet import FleetManager, GuestFailed


def guest(name, image=None, clone_from=None):
    return dict(name=name, image=image, clone_from=clone_from)


def test_one_guest_per_image_goes_first_then_the_others_then_the_clones():
    guests = [guest('c1', clone_from='t'), guest('a', 'x.qcow2'), guest('b', 'x.qcow2'), guest('t', 'y.qcow2'),
              guest('old')]
    waves = FleetManager.waves(guests)
    assert [[g['name'] for g in wave] for wave in waves] == [['a', 't'], ['b', 'old'], ['c1']]
    assert FleetManager.waves([guest('old')]) == [[guest('old')]]


class Failing(Exception):
    pass


def fleet(guests, defaults=None):
    params = dict(root='/r', helper_idle_timeout=None, helper_python=None, _helper_version=None, _helper_code=None,
                  guests=guests, defaults=defaults or {}, parallel=4, exclusive=False, stop_on_failure=False)

    def fail(msg, **result):
        raise Failing(msg, result)
    return FleetManager(types.SimpleNamespace(params=params, fail=fail, check_mode=False))


def test_each_guest_gets_the_defaults_under_its_own_options_and_the_tasks_root():
    guests = fleet(['a', {'name': 'b', 'memory': 64}], {'image': 'x.qcow2', 'memory': 512}).guest_params()
    assert [(g['name'], g['image'], g['memory'], g['root'], g['state']) for g in guests] == [
        ('a', 'x.qcow2', 512, '/r', 'running'), ('b', 'x.qcow2', 64, '/r', 'running')]


@pytest.mark.parametrize('guests, says', [
    ([{'name': 'a', 'memory': 'lots'}], "a: argument 'memory' is of type"),
    ([{'memory': 1}], 'missing required arguments: name'),
    ([{'name': 'a', 'image': 'x', 'clone_from': 't'}], 'mutually exclusive: clone_from|image'),
    (['a', 'a'], 'a: listed twice'),
    ([3], '#1: 3 is neither a name nor a dict of options'),
])
def test_a_guest_with_options_instance_would_refuse_fails_the_task_before_anything(guests, says):
    with pytest.raises(Failing) as failed:
        fleet(guests).guest_params()
    assert says in failed.value.args[0] and failed.value.args[1] == {'error_kind': 'value'}


def test_a_guests_failure_carries_its_message_and_kind():
    failure = GuestFailed('memory is 0', {'error_kind': 'memory'})
    assert failure.result == {'msg': 'memory is 0', 'error_kind': 'memory'}
