"""The guest_agent connection against community.libvirt's libvirt_qemu on the same guest
image, in one run on this machine: `ansible -m raw` and `-m command` latency and `copy`
throughput (libvirt_qemu on a libvirtd this script starts), and wall time for 1 against 4
guests in parallel through one helper.

Run as root after hacking/bootstrap.sh and tests/guest/build.sh:
  .cache/venv/bin/python bench/guest_agent_vs_libvirt_qemu.py [--runs 5]
It downloads the `ansible` wheel from PyPI once (for community.libvirt) into .cache/bench.
"""
import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(CHECKOUT, '.cache', 'bench')
GUEST = os.path.join(CHECKOUT, '.cache', 'guest')
VENV = os.path.join(CHECKOUT, '.cache', 'venv', 'bin')
ROOT = '/tmp/evb-ga'
SYSTEM_IMAGES = '/var/lib/libvirt/images'
QEMU_CONF = 'user = "root"\ngroup = "root"\nstdio_handler = "file"\n'

GUEST_XML = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><kernel>{guest}/vmlinuz</kernel>
<initrd>{guest}/initrd.img</initrd><cmdline>console=ttyS0 quiet</cmdline></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
<video><model type='none'/></video></devices></domain>"""


def sh(*argv, **kwargs):
    return subprocess.run(list(argv), check=True, **kwargs)


def community_libvirt():
    """A collections path holding community.libvirt, from the ansible wheel on PyPI."""
    target = os.path.join(CACHE, 'collections')
    if not os.path.isdir(os.path.join(target, 'ansible_collections', 'community', 'libvirt')):
        os.makedirs(CACHE, exist_ok=True)
        wheels = glob.glob(os.path.join(CACHE, 'ansible-12*.whl'))
        if not wheels:
            sh(os.path.join(VENV, 'pip'), 'download', '--no-deps', '-q', '-d', CACHE, 'ansible>=12,<13')
            wheels = glob.glob(os.path.join(CACHE, 'ansible-12*.whl'))
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extractall(target, [n for n in wheel.namelist()
                                      if n.startswith('ansible_collections/community/libvirt/')])
    return target


def overlay(path):
    if os.path.exists(path):
        os.unlink(path)
    sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', GUEST + '/disk.img', '-F', 'raw', path)


class Libvirtd:
    """libvirtd and virtlogd started here (no systemd), stopped when done."""

    def __enter__(self):
        for d in ('/etc/libvirt', '/var/log/libvirt', '/var/lib/libvirt', '/var/cache/libvirt', '/run/libvirt', SYSTEM_IMAGES):
            os.makedirs(d, exist_ok=True)
        self.conf_backup = None
        if os.path.exists('/etc/libvirt/qemu.conf'):
            with open('/etc/libvirt/qemu.conf') as f:
                self.conf_backup = f.read()
        # Same QEMU settings as the embedded root, so both sides run guests alike.
        with open('/etc/libvirt/qemu.conf', 'w') as f:
            f.write(QEMU_CONF)
        self.pidfile = '/run/libvirt/bench-libvirtd.pid'
        sh('/usr/sbin/virtlogd', '-d')
        sh('/usr/sbin/libvirtd', '-d', '-p', self.pidfile)
        for dummy in range(100):
            if os.path.exists('/run/libvirt/libvirt-sock'):
                break
            time.sleep(0.1)
        return self

    def __exit__(self, *exc):
        subprocess.run(['pkill', '-F', self.pidfile], check=False)
        subprocess.run(['pkill', '-x', 'virtlogd'], check=False)
        if self.conf_backup is not None:
            with open('/etc/libvirt/qemu.conf', 'w') as f:
                f.write(self.conf_backup)
        else:
            os.unlink('/etc/libvirt/qemu.conf')


def system_guest(name):
    import libvirt
    import libvirt_qemu
    libvirt.registerErrorHandler(lambda *a: None, None)  # "not connected" while it boots
    conn = libvirt.open('qemu:///system')
    disk = os.path.join(SYSTEM_IMAGES, name + '.qcow2')
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
    sys.path.insert(0, os.path.join(CHECKOUT, '.cache', 'collections'))
    from ansible_collections.embedvirt.libvirt.plugins.module_utils.client import HelperClient
    client = HelperClient(ROOT, idle_timeout=0)
    for name in names:
        disk = os.path.join(ROOT, 'images', name + '.qcow2')
        overlay(disk)
        client.call('domain_create', xml=GUEST_XML.format(name=name, guest=GUEST, disk=disk))
    for name in names:
        client.call('guest_wait_agent', name=name, timeout=120, call_timeout=180)
    return client


def timed(argv, env, runs):
    samples = []
    for dummy in range(runs):
        start = time.perf_counter()
        sh(*argv, env=env, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--copy-mib', type=int, default=10)
    args = parser.parse_args()
    if not os.path.exists(GUEST + '/disk.img'):
        sh(os.path.join(CHECKOUT, 'tests', 'guest', 'build.sh'), GUEST)
    collections = community_libvirt() + ':' + os.path.join(CHECKOUT, '.cache', 'collections')
    work = tempfile.mkdtemp(prefix='evb-')
    inventory = os.path.join(work, 'hosts.ini')
    with open(inventory, 'w') as f:
        f.write('[ours]\n' + ''.join(
            'b%d ansible_connection=embedvirt.libvirt.guest_agent ansible_embedvirt_root=%s\n' % (i, ROOT)
            for i in range(1, 5)))
        f.write('[theirs]\nbsys ansible_connection=community.libvirt.libvirt_qemu '
                'ansible_libvirt_uri=qemu:///system\n')
        f.write('[all:vars]\nansible_python_interpreter=/usr/bin/python3\n')
    data = os.path.join(work, 'data.bin')
    sh('dd', 'if=/dev/urandom', 'of=' + data, 'bs=1M', 'count=%d' % args.copy_mib, 'status=none')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_HOST_KEY_CHECKING='False',
               ANSIBLE_PIPELINING='True')
    ansible = os.path.join(VENV, 'ansible')
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(ROOT + '/etc')
    os.makedirs(ROOT + '/images')
    with open(ROOT + '/etc/qemu.conf', 'w') as f:
        f.write(QEMU_CONF)
    client = None
    rows = []
    try:
        with Libvirtd():
            system_guest('bsys')
            client = embedded_guests(['b1', 'b2', 'b3', 'b4'])
            for label, module, margs in (('raw true', 'raw', 'true'),
                                         ('command true', 'ansible.builtin.command', 'true')):
                ours = timed([ansible, '-i', inventory, 'b1', '-m', module, '-a', margs], env, args.runs)
                theirs = timed([ansible, '-i', inventory, 'bsys', '-m', module, '-a', margs], env, args.runs)
                rows.append((label + ' (s)', ours, theirs))
            copy = 'src=%s dest=/tmp/data.bin force=true' % data
            # a new file each time: copy skips a transfer when the checksum matches
            for host in ('b1', 'bsys'):
                sh(ansible, '-i', inventory, host, '-m', 'ansible.builtin.file', '-a', 'path=/tmp/data.bin state=absent',
                   env=env, stdout=subprocess.DEVNULL)
            ours = timed([ansible, '-i', inventory, 'b1', '-m', 'ansible.builtin.copy', '-a', copy], env, 1)
            theirs = timed([ansible, '-i', inventory, 'bsys', '-m', 'ansible.builtin.copy', '-a', copy], env, 1)
            rows.append(('copy %d MiB (MiB/s)' % args.copy_mib, args.copy_mib / ours, args.copy_mib / theirs))
            one = timed([ansible, '-i', inventory, 'b1', '-m', 'ansible.builtin.command', '-a', 'true', '-f', '4'],
                        env, args.runs)
            four = timed([ansible, '-i', inventory, 'ours', '-m', 'ansible.builtin.command', '-a', 'true', '-f', '4'],
                         env, args.runs)
    finally:
        subprocess.run(['pkill', '-9', '-f', '[g]uest=b'], check=False)
        if client is not None:
            client.stop()
        shutil.rmtree(work, ignore_errors=True)
    print('guest_agent (embedded, via helper) against community.libvirt libvirt_qemu (libvirtd), '
          'median of %d runs, pipelining on' % args.runs)
    print('%-24s %14s %14s %10s' % ('', 'guest_agent', 'libvirt_qemu', 'ratio'))
    for label, ours, theirs in rows:
        better = theirs / ours if '(s)' in label else ours / theirs
        print('%-24s %14.3f %14.3f %9.2fx' % (label, ours, theirs, better))
    print('command true on 1 guest: %.3f s, on 4 guests at once (forks 4): %.3f s, ratio %.2f'
          % (one, four, four / one))


if __name__ == '__main__':
    main()
