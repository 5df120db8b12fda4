"""From nothing to a guest that answers Ansible: one embedvirt.libvirt.instance task on a
fresh embedded root against the same steps written with community.libvirt's virt_install on
a libvirtd this script starts; the same cloud image (tests/guest/build.sh cloud), TCG, 1 vCPU,
1024 MiB, the same cloud-init data (hostname, an SSH key) and the same end: the playbook stops
when ansible.builtin.wait_for_connection reaches the guest over SSH through a port QEMU's user
networking forwards (community.libvirt has no guest agent connection).

Each side is one ansible-playbook run, timed as a whole (wall time, Ansible's start-up
included); a callback (callback_plugins/task_times.py) also times its tasks, so the boot
(wait_for_connection, from the domain's start until Ansible runs in the guest) and the making
(everything before it) are reported apart. Rounds alternate which side goes first; figures are
medians. Before each round nothing is there: no root (ours: the instance task makes it, copies
the image into it and verifies its checksum), no image copy, disk, seed or domain (theirs:
get_url with the checksum, qemu-img, cloud-localds, virt_install). After each round everything
goes: the guests, the root and its helper, the domain, its files and any storage pool libvirtd
made meanwhile. libvirtd itself runs for the whole bench: its start is reported, not counted.

Their network: libvirtd here has no virtual network (nor dnsmasq), and a peer wanting a port
forward without one does what ours does inside: QEMU's slirp with hostfwd on the QEMU command
line (virt_install's qemu_commandline, `--network none`). Their seed is cloud-localds' ISO
(label cidata) on a read-only virtio disk, as in the peers' guides; virt_install's own
cloud_init in community.libvirt 2.0.0 cannot carry a hostname (its user_data and meta_data are
dicts that it writes as `user-data.<key>=` options, which virt-install reads as file names).

Run as root after hacking/bootstrap.sh:
  .cache/venv/bin/python bench/instance_vs_libvirtd.py [--rounds 5] [--json]
It builds the cloud image if missing, installs Debian's virtinst and cloud-image-utils if
missing, and downloads the `ansible` wheel from PyPI once (for community.libvirt).
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

import common
from common import sh

ROOT = '/tmp/evb-in'
NAME = 'evb-in'
# Debian's cloud-init default user, which the image's cloud.cfg keeps.
USER = 'debian'
GUEST_DIR = os.path.join(common.CHECKOUT, '.cache', 'guest')
IMAGE = os.path.join(GUEST_DIR, 'cloud.qcow2')
BASE = os.path.join(common.SYSTEM_IMAGES, NAME + '-base.qcow2')
DISK = os.path.join(common.SYSTEM_IMAGES, NAME + '.qcow2')
SEED = os.path.join(common.SYSTEM_IMAGES, NAME + '-cidata.iso')
MEMORY = 1024
VCPUS = 1
TOOLS = (('virt-install', 'virtinst'), ('cloud-localds', 'cloud-image-utils'))
WAIT = 'wait for connection'


def ensure_tools():
    missing = [package for binary, package in TOOLS if shutil.which(binary) is None]
    if missing:
        common.progress('installing %s' % ', '.join(missing))
        sh('apt-get', 'update', '-q', stdout=subprocess.DEVNULL)
        sh('apt-get', 'install', '-y', '-q', '--no-install-recommends', *missing, stdout=subprocess.DEVNULL,
           env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'))


def ensure_image():
    """The cloud test image and its sha256."""
    sh(os.path.join(common.CHECKOUT, 'tests', 'guest', 'build.sh'), 'cloud', GUEST_DIR, stdout=subprocess.DEVNULL)
    with open(IMAGE + '.sha256') as f:
        return f.read().strip()


def check_port_free(port):
    with socket.socket() as s:
        try:
            s.bind(('127.0.0.1', port))
        except OSError as e:
            raise RuntimeError('port %d is taken (%s): give free ones with --ports' % (port, e)) from e


def guest_tasks(port, key_file):
    """What both sides end with: the guest as a host over SSH, and the wait until Ansible runs in it."""
    return [
        {'name': 'guest as a host', 'ansible.builtin.add_host': {
            'name': 'guest', 'ansible_connection': 'ssh', 'ansible_host': '127.0.0.1', 'ansible_port': port,
            'ansible_user': USER,
            'ansible_ssh_private_key_file': key_file, 'ansible_python_interpreter': '/usr/bin/python3',
            'ansible_ssh_common_args': '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'}},
        {'name': WAIT, 'ansible.builtin.wait_for_connection': {'timeout': 900}, 'delegate_to': 'guest'},
    ]


def ours_tasks(sha256, port, key, key_file):
    instance = {'name': 'instance', 'embedvirt.libvirt.instance': {
        'root': ROOT, 'name': NAME, 'image': IMAGE, 'checksum': 'sha256:' + sha256, 'accelerator': 'tcg',
        'memory': MEMORY, 'vcpus': VCPUS, 'cloud_init': {'hostname': NAME, 'ssh_authorized_keys': [key]},
        'network': {'type': 'user', 'port_forwards': [{'host': port, 'guest': 22}]}, 'wait_for': 'none'}}
    return [instance] + guest_tasks(port, key_file)


def theirs_tasks(sha256, port, key, key_file, work):
    # The same data as ours' seed (its shortcuts go into a #cloud-config and the meta-data).
    seed_files = [('user-data', '#cloud-config\nhostname: %s\nssh_authorized_keys:\n- %s\n' % (NAME, key)),
                  ('meta-data', 'instance-id: %s\nlocal-hostname: %s\n' % (NAME, NAME))]
    return [
        {'name': 'image', 'ansible.builtin.get_url': {
            'url': 'file://' + IMAGE, 'dest': BASE, 'checksum': 'sha256:' + sha256, 'mode': '0644'}},
        {'name': 'disk', 'ansible.builtin.command': {
            'argv': ['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', BASE, DISK],
            'creates': DISK}},
        {'name': 'seed data', 'ansible.builtin.copy': {
            'dest': os.path.join(work, '{{ item.0 }}'), 'content': '{{ item.1 }}', 'mode': '0600'},
         'loop': seed_files},
        {'name': 'seed', 'ansible.builtin.command': {
            'argv': ['cloud-localds', SEED, os.path.join(work, 'user-data'), os.path.join(work, 'meta-data')],
            'creates': SEED}},
        {'name': 'guest', 'community.libvirt.virt_install': {
            'name': NAME, 'memory': MEMORY, 'vcpus': VCPUS, 'virt_type': 'qemu', 'machine': 'q35',
            'osinfo': {'name': 'debian11'}, 'import': True,
            'disks': [{'path': DISK, 'format': 'qcow2', 'bus': 'virtio'},
                      {'path': SEED, 'format': 'raw', 'bus': 'virtio', 'readonly': True}],
            'networks': [],
            # ours' card: the same slirp forward, model and slot; args= because virt-install's
            # option parser takes a value starting with '-' for an option of its own
            'qemu_commandline': 'args=-netdev user,id=net0,hostfwd=tcp:127.0.0.1:%d-:22 '
                                '-device virtio-net-pci,netdev=net0,addr=0x1c' % port}},
    ] + guest_tasks(port, key_file)


def play(tasks, env, work):
    """Wall seconds of one ansible-playbook run of tasks, and {task name: seconds}."""
    path = os.path.join(work, 'play.yml')
    with open(path, 'w') as f:
        json.dump([{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}], f)  # YAML is a superset of JSON
    times = os.path.join(work, 'times.json')
    control = tempfile.mkdtemp(prefix='cp-', dir=work)  # no SSH master left from an earlier guest on the port
    start = time.perf_counter()
    done = subprocess.run(
        [os.path.join(common.VENV, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', path],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
        env=dict(env, BENCH_TASK_TIMES=times, ANSIBLE_CALLBACKS_ENABLED='task_times',
                 ANSIBLE_SSH_CONTROL_PATH_DIR=control,
                 ANSIBLE_CALLBACK_PLUGINS=os.path.join(common.CHECKOUT, 'bench', 'callback_plugins')))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError('the playbook failed:\n' + '\n'.join(done.stdout.splitlines()[-30:]))
    with open(times) as f:
        return wall, {name: sum(seconds for seconds, dummy in runs) for name, runs in json.load(f).items()}


def check_guest(port, key_file):
    """The guest that answered is the one booted from the seed: its key let us in and it has its hostname."""
    name = subprocess.run(['ssh', '-i', key_file, '-p', str(port), '-o', 'StrictHostKeyChecking=no',
                           '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR',
                           USER + '@127.0.0.1', 'hostname'],
                          capture_output=True, text=True, timeout=60, check=False).stdout.strip()
    if name != NAME:
        raise RuntimeError('the guest on port %d says its hostname is %r, not %r' % (port, name, NAME))


def clean_theirs(conn, pools_before):
    """The domain, its files and the storage pools libvirtd made meanwhile (virt-install makes
    one for the directory of a disk it is given); their XML first, for the report."""
    import libvirt
    xml = None
    try:
        dom = conn.lookupByName(NAME)
        xml = dom.XMLDesc(0)
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    except libvirt.libvirtError:
        pass  # not made (a failed round)
    for pool in conn.listAllStoragePools(0):
        if pool.name() not in pools_before:
            if pool.isActive():
                pool.destroy()
            pool.undefine()
    for path in (BASE, DISK, SEED, '/var/log/libvirt/qemu/%s.log' % NAME):
        if os.path.exists(path):
            os.unlink(path)
    return xml


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--ports', type=int, nargs=2, default=[28422, 28423], help="ours' and theirs' forward")
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    import libvirt
    libvirt.registerErrorHandler(lambda *a: None, None)  # libvirt's own stderr noise

    ensure_tools()
    sha256 = ensure_image()
    env = common.ansible_env()
    work = tempfile.mkdtemp(prefix='evb-in-')
    key_file = os.path.join(work, 'id')
    sh('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key_file)
    with open(key_file + '.pub') as f:
        key = f.read().strip()
    sides = {'ours': ours_tasks(sha256, args.ports[0], key, key_file),
             'theirs': theirs_tasks(sha256, args.ports[1], key, key_file, work)}
    samples = {side: [] for side in sides}  # (wall, making, boot) per round
    task_samples = {side: [] for side in sides}  # {task: seconds} per round
    their_xml = None
    common.remove_root(ROOT)
    try:
        common.progress('libvirtd')
        start = time.perf_counter()
        with common.Libvirtd():
            conn = libvirt.open('qemu:///system')
            libvirtd_start = time.perf_counter() - start
            pools_before = {pool.name() for pool in conn.listAllStoragePools(0)}
            clean_theirs(conn, pools_before)
            try:
                for i in range(args.rounds):
                    for side in (('ours', 'theirs') if i % 2 == 0 else ('theirs', 'ours')):
                        check_port_free(args.ports[side == 'theirs'])
                        common.progress('round %d/%d: %s' % (i + 1, args.rounds, side))
                        try:
                            wall, tasks = play(sides[side], env, work)
                            check_guest(args.ports[side == 'theirs'], key_file)
                        finally:
                            if side == 'ours':
                                common.remove_root(ROOT)
                            else:
                                their_xml = clean_theirs(conn, pools_before) or their_xml
                        samples[side].append((wall, wall - tasks[WAIT], tasks[WAIT]))
                        task_samples[side].append(tasks)
                        common.progress('%s: %.1f s (boot %.1f s)' % (side, wall, tasks[WAIT]))
            finally:
                conn.close()
    finally:
        common.remove_root(ROOT)
        shutil.rmtree(work, ignore_errors=True)

    medians = {side: [statistics.median(column) for column in zip(*rows)] for side, rows in samples.items()}
    parts = ('from nothing to a guest answering Ansible', 'making and starting (all before the wait)',
             'boot (wait_for_connection over SSH)')
    print('One ansible-playbook run each way, seconds, median of %d rounds (TCG, %d vCPU, %d MiB, the same '
          'cloud image and seed data):' % (args.rounds, VCPUS, MEMORY))
    print('%-44s %8s %8s %9s' % ('', 'ours', 'theirs', 'ratio'))
    ratios = []
    for column, part in enumerate(parts):
        ours, theirs = medians['ours'][column], medians['theirs'][column]
        ratios.append(('instance vs virt_install: %s' % part, ours, theirs, 's', theirs / ours, 'theirs/ours'))
        print('%-44s %8.1f %8.1f %8.2fx  theirs/ours' % (part, ours, theirs, theirs / ours))
    print('\nrounds (wall, making, boot):')
    for side, rows in samples.items():
        print('  %-6s %s' % (side, '  '.join('%.1f/%.1f/%.1f' % row for row in rows)))
    print('\ntasks, median seconds (the rest of a run is ansible-playbook itself):')
    for side, rounds in task_samples.items():
        medians = ['%s %.1f' % (task, statistics.median(r[task] for r in rounds)) for task in rounds[0]]
        print('  %-6s %s' % (side, ', '.join(medians)))
    print('(ours: the instance task makes the root, copies the image into it and verifies it; theirs: get_url '
          'from file:// with the checksum; libvirtd was started beforehand in %.2f s, not counted)' % libvirtd_start)
    if their_xml:
        print('\ntheir domain, as virt_install defined it:\n' + their_xml)
    common.emit_json(args.json, ratios, rounds=args.rounds, samples=samples, libvirtd_start_s=libvirtd_start)


if __name__ == '__main__':
    main()
