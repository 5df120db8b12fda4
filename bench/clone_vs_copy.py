"""Linked clones against full copies: 20 guests from one template, their time and disk space.

Ours: one embedvirt.libvirt.instance task with clone_from, looped over the clones' names, state
destroyed (defined and off: the clones are made, not booted). Each clone gets a qcow2 overlay on
the template's disk, a cloud-init seed of its own and its definition. Timed as that task (the
callback callback_plugins/task_times.py: all 20 iterations, Ansible's module transfer included);
its bytes are the blocks the clones' files take on disk (overlays and seeds).

Baseline: the same 20 disks as full copies, `qemu-img convert -O qcow2` of the template's disk
(its whole chain, as a copy that stands alone must hold), timed alone: no seed, no definition,
no Ansible, so its seconds are a lower bound for cloning by copying. Its bytes are the copies'
blocks on disk.

The template is an instance from the cloud test image (tests/guest/build.sh cloud), defined and
never booted: a booted one has a larger overlay of its own, which the clones share as they share
the base image; the copies would each hold it again. The whole bench is one run (the ratio is of
figures measured together), and everything goes afterwards.

Run as root after hacking/bootstrap.sh:
  .cache/venv/bin/python bench/clone_vs_copy.py [--clones 20] [--json]
"""
import argparse
import os
import shutil
import subprocess
import tempfile
import time

import common
from common import sh
from instance_vs_libvirtd import IMAGE, ensure_image, play

ROOT = '/tmp/evb-cl'
TEMPLATE = 'tmpl'
CLONE_TASK = 'clones'


def allocated(paths):
    """Bytes the files take on disk (their allocated blocks, not their apparent sizes)."""
    return sum(os.stat(path).st_blocks * 512 for path in paths)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--clones', type=int, default=20)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    names = ['c%02d' % i for i in range(1, args.clones + 1)]
    sha256 = ensure_image()
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=common.COLLECTIONS,
               ANSIBLE_PYTHON_INTERPRETER=os.path.join(common.VENV, 'python'))
    work = tempfile.mkdtemp(prefix='evb-cl-', dir='/var/tmp')
    images = os.path.join(ROOT, 'images')
    common.remove_root(ROOT)
    try:
        common.progress('template and %d clones' % args.clones)
        common_args = {'root': ROOT, 'accelerator': 'tcg', 'memory': 512, 'network': {'type': 'none'},
                       'state': 'destroyed'}
        tasks = [
            {'name': 'template', 'embedvirt.libvirt.instance': dict(
                common_args, name=TEMPLATE, image=IMAGE, checksum='sha256:' + sha256)},
            {'name': CLONE_TASK, 'embedvirt.libvirt.instance': dict(
                common_args, name='{{ item }}', clone_from=TEMPLATE), 'loop': names},
        ]
        wall, times = play(tasks, env, work)
        ours_s = times[CLONE_TASK]
        clone_files = [os.path.join(images, name + suffix) for name in names for suffix in ('.qcow2', '-cidata.img')]
        ours_bytes = allocated(clone_files)
        backing = subprocess.run(['qemu-img', 'info', '--output=json', '-U', os.path.join(images, names[0] + '.qcow2')],
                                 capture_output=True, text=True, check=True).stdout
        if '"backing-filename": "%s.qcow2"' % TEMPLATE not in backing:
            raise RuntimeError('%s is not an overlay on the template:\n%s' % (names[0], backing))
        template_bytes = allocated([os.path.join(images, TEMPLATE + '.qcow2')] + [
            os.path.join(images, 'base', f) for f in os.listdir(os.path.join(images, 'base'))])

        common.progress('%d full copies' % args.clones)
        copies = [os.path.join(work, name + '.qcow2') for name in names]
        start = time.perf_counter()
        for copy in copies:
            sh('qemu-img', 'convert', '-O', 'qcow2', os.path.join(images, TEMPLATE + '.qcow2'), copy)
        theirs_s = time.perf_counter() - start
        theirs_bytes = allocated(copies)
    finally:
        common.remove_root(ROOT)
        shutil.rmtree(work, ignore_errors=True)

    mib = 1024.0 ** 2
    print('%d guests from one template (the cloud test image, %.0f MiB on disk with its overlay), made, not '
          'booted; one run:' % (args.clones, template_bytes / mib))
    print('%-44s %12s %14s %9s' % ('', 'linked', 'full copies', 'ratio'))
    print('%-44s %12.2f %14.2f %8.2fx  copies/linked' % ('seconds for all', ours_s, theirs_s, theirs_s / ours_s))
    print('%-44s %12.1f %14.1f %8.0fx  copies/linked' % ('MiB on disk for all', ours_bytes / mib, theirs_bytes / mib,
                                                         theirs_bytes / ours_bytes))
    print('(linked: the instance task with clone_from, %d iterations, %.2f s each, overlay, seed and definition; '
          'the playbook with the template took %.1f s. Full copies: qemu-img convert alone, %.2f s each)'
          % (args.clones, ours_s / args.clones, wall, theirs_s / args.clones))
    common.emit_json(args.json, [
        ('%d linked clones vs full copies: seconds' % args.clones, ours_s, theirs_s, 's', theirs_s / ours_s,
         'copies/linked'),
        ('%d linked clones vs full copies: disk' % args.clones, ours_bytes / mib, theirs_bytes / mib, 'MiB',
         theirs_bytes / ours_bytes, 'copies/linked'),
    ], clones=args.clones, playbook_s=wall, template_mib=template_bytes / mib)


if __name__ == '__main__':
    main()
