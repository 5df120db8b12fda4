"""A fleet in one task against a loop of tasks: embedvirt.libvirt.instances against
embedvirt.libvirt.instance looped over the same guests, in the same playbook run.

1. Linked clones made, not booted (state destroyed, no network): 100 clones of one template.
   Ours: one instances task (parallel 4). Baseline: the instance task looped over 100 other
   names. Each is timed as its task (callback_plugins/task_times.py: Ansible's module transfer
   included); the goal is at least 5x.
2. Guests from the template until every agent answers (wait_for agent, TCG): 10 clones. Ours:
   one instances task (parallel 4), baseline: the looped instance task, each guest booted and
   waited for in turn. Both sets are destroyed before the next starts, so they never share the
   CPUs. On this 2-core machine under TCG a booting guest keeps a core busy much of the time:
   the parallel boots contend for the two cores, which bounds the second ratio.

The template is an instance from the cloud test image (tests/guest/build.sh cloud), defined and
never booted. Everything goes afterwards.

Run as root after hacking/bootstrap.sh:
  .cache/venv/bin/python bench/fleet_vs_loop.py [--clones 100] [--booted 10 (0: none)] [--json]
"""
import argparse
import os
import shutil
import tempfile

import common
from instance_vs_libvirtd import IMAGE, ensure_image, play

ROOT = '/tmp/evb-fl'
TEMPLATE = 'tmpl'


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--clones', type=int, default=100)
    parser.add_argument('--booted', type=int, default=10)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    sha256 = ensure_image()
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=common.COLLECTIONS,
               ANSIBLE_PYTHON_INTERPRETER=os.path.join(common.VENV, 'python'))
    work = tempfile.mkdtemp(prefix='evb-fl-', dir='/var/tmp')
    made = dict(root=ROOT, clone_from=TEMPLATE, accelerator='tcg', memory=256, network={'type': 'none'},
                state='destroyed')
    booted = dict(root=ROOT, clone_from=TEMPLATE, accelerator='tcg', memory=512, wait_for='agent', wait_timeout=900)

    def names(prefix, count):
        return ['%s%03d' % (prefix, number) for number in range(1, count + 1)]

    def loop_and_fleet(options, count):
        loop_task, fleet_task = 'loop', 'fleet'
        instance = dict((key, value) for key, value in options.items() if key != 'root')
        return [
            {'name': loop_task, 'embedvirt.libvirt.instance': dict(options, name='{{ item }}'),
             'loop': names('l', count)},
            {'name': fleet_task, 'embedvirt.libvirt.instances': dict(
                root=ROOT, parallel=4, defaults=instance, guests=names('f', count))},
        ]

    common.remove_root(ROOT)
    try:
        common.progress('template, %d clones looped, %d in one task' % (args.clones, args.clones))
        template = {'name': 'template', 'embedvirt.libvirt.instance': dict(
            root=ROOT, name=TEMPLATE, image=IMAGE, checksum='sha256:' + sha256, accelerator='tcg',
            network={'type': 'none'}, state='destroyed')}
        dummy, made_times = play([template] + loop_and_fleet(made, args.clones), env, work)
        common.remove_root(ROOT)
        boot_times = None
        if args.booted:
            common.progress('%d guests booted until their agents answer, looped, then in one task' % args.booted)
            dummy, boot_times = play([template] + loop_and_fleet(booted, args.booted)[:1] + [
                {'name': 'off', 'ansible.builtin.command': 'pkill -9 -f "guest=l[0-9]+,.*%s/"' % ROOT}]
                + loop_and_fleet(booted, args.booted)[1:], env, work)
    finally:
        common.remove_root(ROOT)
        shutil.rmtree(work, ignore_errors=True)

    rows = [('%d linked clones made: instances vs a loop of instance' % args.clones, made_times)]
    if boot_times:
        rows.append(('%d clones until their agents answer: instances vs a loop' % args.booted, boot_times))
    print('Guests from one template (the cloud test image), one run each:')
    print('%-58s %10s %10s %9s' % ('seconds', 'one task', 'a loop', 'ratio'))
    for what, times in rows:
        ratio = times['loop'] / times['fleet']
        print('%-58s %10.1f %10.1f %8.2fx  loop/task' % (what, times['fleet'], times['loop'], ratio))
    common.emit_json(args.json, [(what, times['fleet'], times['loop'], 's', times['loop'] / times['fleet'],
                                  'loop/task') for what, times in rows], clones=args.clones, booted=args.booted)


if __name__ == '__main__':
    main()
