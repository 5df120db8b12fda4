"""The guest_agent connection against community.libvirt's libvirt_qemu on the same guest
image, in one run on this machine: `ansible -m raw` and `-m command` latency and `copy`
throughput (libvirt_qemu on a libvirtd this script starts), and wall time for 1 against 4
guests in parallel through one helper.

Run as root after hacking/bootstrap.sh and tests/guest/build.sh:
  .cache/venv/bin/python bench/guest_agent_vs_libvirt_qemu.py [--runs 5] [--json]
It downloads the `ansible` wheel from PyPI once (for community.libvirt) into .cache/bench.
"""
import argparse
import os
import shutil
import subprocess
import tempfile
import time

import common
from common import sh

GUEST = os.path.join(common.CHECKOUT, '.cache', 'guest')
ROOT = '/tmp/evb-ga'

GUEST_XML = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><kernel>{guest}/vmlinuz</kernel>
<initrd>{guest}/initrd.img</initrd><cmdline>console=ttyS0 quiet</cmdline></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
<video><model type='none'/></video></devices></domain>"""


def overlay(path):
    if os.path.exists(path):
        os.unlink(path)
    sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', GUEST + '/disk.img', '-F', 'raw', path)


def system_guest(name):
    import libvirt
    import libvirt_qemu
    libvirt.registerErrorHandler(lambda *a: None, None)  # "not connected" while it boots
    conn = libvirt.open('qemu:///system')
    disk = os.path.join(common.SYSTEM_IMAGES, name + '.qcow2')
    overlay(disk)
    conn.createXML(GUEST_XML.format(name=name, guest=GUEST, disk=disk), 0)
    deadline = time.time() + 120
    while True:
        try:
            libvirt_qemu.qemuAgentCommand(conn.lookupByName(name), '{"execute":"guest-ping"}', 5, 0)
            return conn
        except libvirt.libvirtError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def embedded_guests(names):
    client = common.helper_client(ROOT, idle_timeout=0)
    for name in names:
        disk = os.path.join(ROOT, 'images', name + '.qcow2')
        overlay(disk)
        client.domain_create(xml=GUEST_XML.format(name=name, guest=GUEST, disk=disk))
    for name in names:
        client.guest_wait_agent(name=name, timeout=120)
    return client


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--copy-mib', type=int, default=10)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    if not os.path.exists(GUEST + '/disk.img'):
        sh(os.path.join(common.CHECKOUT, 'tests', 'guest', 'build.sh'), GUEST)
    work = tempfile.mkdtemp(prefix='evb-')
    inventory = os.path.join(work, 'hosts.ini')
    with open(inventory, 'w') as f:
        f.write('[ours]\n' + ''.join(
            'b%d ansible_connection=embedvirt.libvirt.guest_agent ansible_embedvirt_root=%s\n' % (i, ROOT)
            for i in range(1, 5)))
        f.write('[theirs]\nevb-sys ansible_connection=community.libvirt.libvirt_qemu '
                'ansible_libvirt_uri=qemu:///system\n')
        f.write('[all:vars]\nansible_python_interpreter=/usr/bin/python3\n')
    data = os.path.join(work, 'data.bin')
    sh('dd', 'if=/dev/urandom', 'of=' + data, 'bs=1M', 'count=%d' % args.copy_mib, 'status=none')
    env = common.ansible_env()
    ansible = os.path.join(common.VENV, 'ansible')
    common.fresh_root(ROOT, 'images')
    rows = []
    try:
        common.progress('libvirtd')
        with common.Libvirtd():
            common.progress('booting the guests')
            system_guest('evb-sys')
            embedded_guests(['b1', 'b2', 'b3', 'b4'])
            common.progress('timing')
            for label, module, margs in (('raw true', 'raw', 'true'),
                                         ('command true', 'ansible.builtin.command', 'true')):
                ours = common.timed([ansible, '-i', inventory, 'b1', '-m', module, '-a', margs], args.runs, env=env)
                theirs = common.timed([ansible, '-i', inventory, 'evb-sys', '-m', module, '-a', margs], args.runs,
                                      env=env)
                rows.append((label + ' (s)', ours, theirs))
            copy = 'src=%s dest=/tmp/data.bin force=true' % data
            # a new file each time: copy skips a transfer when the checksum matches
            for host in ('b1', 'evb-sys'):
                sh(ansible, '-i', inventory, host, '-m', 'ansible.builtin.file', '-a', 'path=/tmp/data.bin state=absent',
                   env=env, stdout=subprocess.DEVNULL)
            ours = common.timed([ansible, '-i', inventory, 'b1', '-m', 'ansible.builtin.copy', '-a', copy], 1, env=env)
            theirs = common.timed([ansible, '-i', inventory, 'evb-sys', '-m', 'ansible.builtin.copy', '-a', copy], 1,
                                  env=env)
            rows.append(('copy %d MiB (MiB/s)' % args.copy_mib, args.copy_mib / ours, args.copy_mib / theirs))
            one = common.timed([ansible, '-i', inventory, 'b1', '-m', 'ansible.builtin.command', '-a', 'true',
                                '-f', '4'], args.runs, env=env)
            four = common.timed([ansible, '-i', inventory, 'ours', '-m', 'ansible.builtin.command', '-a', 'true',
                                 '-f', '4'], args.runs, env=env)
    finally:
        common.remove_root(ROOT)
        shutil.rmtree(work, ignore_errors=True)
    print('guest_agent (embedded, via helper) against community.libvirt libvirt_qemu (libvirtd), '
          'median of %d runs, pipelining on' % args.runs)
    print('%-24s %14s %14s %10s' % ('', 'guest_agent', 'libvirt_qemu', 'ratio'))
    ratios = []
    for label, ours, theirs in rows:
        seconds = '(s)' in label
        better = theirs / ours if seconds else ours / theirs
        print('%-24s %14.3f %14.3f %9.2fx' % (label, ours, theirs, better))
        ratios.append(('guest_agent vs libvirt_qemu, ' + label.split(' (')[0], ours, theirs,
                       's' if seconds else 'MiB/s', better, 'theirs/ours' if seconds else 'ours/theirs'))
    print('command true on 1 guest: %.3f s, on 4 guests at once (forks 4): %.3f s, ratio %.2f'
          % (one, four, four / one))
    ratios.append(('guest_agent command true, 4 guests vs 1', four, one, 's', four / one, '4 guests/1'))
    common.emit_json(args.json, ratios, runs=args.runs, copy_mib=args.copy_mib)


if __name__ == '__main__':
    main()
