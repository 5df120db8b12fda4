"""Per-task latency of embedvirt.libvirt's domain_info and domain (state=running on a
running guest: a no-op) against community.libvirt's virt (list_vms, info, state=running)
on a libvirtd this script starts, and against ansible.builtin.ping as the floor of a task;
then the same with 0 against N running firmware-only guests (each side in turn, the other
side at 0 guests); and ping, ours and virt list_vms once more without pipelining.

How a task is timed: one ansible-playbook run per phase against localhost (connection
local) runs the tasks round-robin, rounds+1 times; a callback (callback_plugins/task_times.py)
takes each task from its start to its result. The first round is dropped (it starts the
root's helper and fills AnsiballZ's and the page cache), the figure is the median of the
others. Round-robin makes load from other work on the machine fall on every task alike;
ansible's own start-up is left out, as it is the same for everything.

Run as root after hacking/bootstrap.sh:
  .cache/venv/bin/python bench/tasks_vs_libvirtd.py [--rounds 15] [--guests 100] [--json]
It downloads the `ansible` wheel from PyPI once (for community.libvirt) and lxml (which virt
needs) into .cache/bench.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import common

ROOT = '/tmp/evb-tl'
TARGET = 'evb-target'
SYSTEM = 'qemu:///system'
PING = [('ping', 'ansible.builtin.ping', {})]
OURS = [('domain_info', 'embedvirt.libvirt.domain_info', {'root': ROOT}),
        ('domain (no-op)', 'embedvirt.libvirt.domain', {'root': ROOT, 'name': TARGET, 'state': 'running'})]
# Every running guest's CPU, memory, disk and NIC counters in one task (one getAllDomainStats).
STATS = [('domain_info stats', 'embedvirt.libvirt.domain_info', {'root': ROOT, 'stats': True, 'interfaces': False})]
THEIRS = [('virt list_vms', 'community.libvirt.virt', {'uri': SYSTEM, 'command': 'list_vms'}),
          ('virt info', 'community.libvirt.virt', {'uri': SYSTEM, 'command': 'info'}),
          ('virt running', 'community.libvirt.virt', {'uri': SYSTEM, 'name': TARGET, 'state': 'running'})]
# What each of ours is compared with.
PAIRS = [('domain_info', 'virt list_vms'), ('domain_info', 'virt info'),
         ('domain (no-op)', 'virt running')]
# Per guest: QEMU's resident memory (~40 MiB for a 32 MiB guest) and room to spare.
MIB_PER_GUEST = 80


def play(tasks, rounds, env, work):
    """Median seconds per task label; fails when a task changed something."""
    common.progress('playbook: %d rounds of %s' % (rounds + 1, ', '.join(t[0] for t in tasks)))
    playbook = [{'hosts': 'localhost', 'gather_facts': False,
                 'tasks': [{'name': label, module: args} for dummy in range(rounds + 1)
                           for label, module, args in tasks]}]
    path = os.path.join(work, 'play.yml')
    with open(path, 'w') as f:
        json.dump(playbook, f)  # YAML is a superset of JSON
    times = os.path.join(work, 'times.json')
    common.sh(os.path.join(common.VENV, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', path,
              stdout=subprocess.DEVNULL,
              env=dict(env, BENCH_TASK_TIMES=times, ANSIBLE_CALLBACKS_ENABLED='task_times',
                       ANSIBLE_CALLBACK_PLUGINS=os.path.join(common.CHECKOUT, 'bench', 'callback_plugins')))
    with open(times) as f:
        samples = json.load(f)
    medians = {}
    for label, runs in samples.items():
        if any(changed for dummy, changed in runs):
            raise RuntimeError('%s changed something; it is meant to be a no-op' % label)
        medians[label] = statistics.median(seconds for seconds, dummy in runs[1:])
    return medians


def memory_allows(guests):
    with open('/proc/meminfo') as f:
        available = next(int(line.split()[1]) for line in f if line.startswith('MemAvailable:')) // 1024
    # keep 4 GiB for the others on this machine
    return available - 4096 >= guests * MIB_PER_GUEST, available


def start_embedded(client, names):
    common.progress('starting %d guests in %s' % (len(names), ROOT))
    start = time.perf_counter()
    for name in names:
        client.domain_create(xml=common.FIRMWARE_GUEST.format(name=name))
    return time.perf_counter() - start


def start_system(conn, names):
    common.progress('starting %d guests on libvirtd' % len(names))
    start = time.perf_counter()
    for name in names:
        conn.createXML(common.FIRMWARE_GUEST.format(name=name), 0)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--guests', type=int, default=100)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    import libvirt
    libvirt.registerErrorHandler(lambda *a: None, None)  # libvirt's own stderr noise

    env = common.ansible_env()
    work = tempfile.mkdtemp(prefix='evb-')
    names = ['evb%03d' % i for i in range(args.guests)]
    enough, available = memory_allows(args.guests)  # one side at a time
    common.fresh_root(ROOT)
    client = common.helper_client(ROOT, idle_timeout=0)
    figures = {'guests': args.guests, 'rounds': args.rounds, 'mem_available_mib': available}
    try:
        common.progress('libvirtd')
        with common.Libvirtd():
            common.progress('the no-op target guest on both sides')
            client.domain_define(xml=common.FIRMWARE_GUEST.format(name=TARGET))
            client.domain_start(name=TARGET)
            conn = libvirt.open(SYSTEM)
            conn.defineXML(common.FIRMWARE_GUEST.format(name=TARGET)).create()
            zero = play(PING + OURS + THEIRS, args.rounds, env, work)
            # Without pipelining too: Python reads a script from stdin a byte per read(2), so
            # with pipelining a module's payload size weighs on its task time (see CONTRIBUTING).
            unpiped = play(PING + OURS + THEIRS[:1], args.rounds, dict(env, ANSIBLE_PIPELINING='False'), work)
            if not enough:
                raise RuntimeError('%d MiB available: too little for %d guests' % (available, args.guests))
            figures['start_embedded_s'] = start_embedded(client, names)
            figures['rss_embedded_mib'] = common.rss_mib('guest=evb.*%s/' % ROOT)
            many = play(PING + OURS + STATS, args.rounds, env, work)
            for name in names:
                client.domain_destroy(name=name)
            figures['start_system_s'] = start_system(conn, names)
            many_system = play(PING + THEIRS, args.rounds, env, work)
            many['ping (libvirtd phase)'] = many_system.pop('ping')
            many.update(many_system)
            conn.close()
    finally:
        client.stop()
        common.kill_root_guests(ROOT)
        shutil.rmtree(ROOT, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    n = args.guests
    print('Per-task latency, ms: median of %d rounds of one playbook running the tasks round-robin '
          '(localhost, connection local; task start to result)' % args.rounds)
    print('%-24s %10s %10s %10s %10s' % ('task', '0 guests', '%d guests' % n, '%d/0' % n, '/ ping'))
    for label in [t[0] for t in PING + OURS + STATS + THEIRS] + ['ping (libvirtd phase)']:
        before = zero.get(label, many[label])
        print('%-24s %10.1f %10.1f %9.2fx %9.2fx' % (label, before * 1000, many[label] * 1000,
                                                     many[label] / before, before / zero['ping']))
    print('(ping in the %d guests column: during the phase with %d embedded guests; the libvirtd '
          'phase has its own line)' % (n, n))
    ratios = []
    for ours, theirs in PAIRS:
        for guests, table in ((0, zero), (n, many)):
            ratios.append(('%s vs %s, %d guests' % (ours, theirs, guests), table[ours], table[theirs], 's',
                           table[theirs] / table[ours], 'theirs/ours'))
    for ours, dummy, dummy in OURS:
        ratios.append(('%s vs ping' % ours, zero[ours], zero['ping'], 's', zero[ours] / zero['ping'],
                       'ours/ping'))
    # What a playbook pays for every guest's figures: our one task, against virt info (one task,
    # state, memory and CPU time of all) and against a virt info task per guest.
    ratios.append(('domain_info stats vs virt info, %d guests' % n, many['domain_info stats'], many['virt info'], 's',
                   many['virt info'] / many['domain_info stats'], 'theirs/ours'))
    ratios.append(('domain_info stats vs %d x virt info, %d guests' % (n, n), many['domain_info stats'],
                   n * many['virt info'], 's', n * many['virt info'] / many['domain_info stats'], 'theirs/ours'))
    for ours, dummy, dummy in OURS:
        ratios.append(('%s vs ping, no pipelining' % ours, unpiped[ours], unpiped['ping'], 's',
                       unpiped[ours] / unpiped['ping'], 'ours/ping'))
    ratios.append(('domain_info vs virt list_vms, no pipelining', unpiped['domain_info'], unpiped['virt list_vms'],
                   's', unpiped['virt list_vms'] / unpiped['domain_info'], 'theirs/ours'))
    for ours, theirs in (('domain_info', 'virt info'), ('domain (no-op)', 'virt running')):
        ratios.append(('%s, %d vs 0 guests' % (ours, n), many[ours], zero[ours], 's', many[ours] / zero[ours],
                       '%d/0 guests' % n))
        ratios.append(('%s, %d vs 0 guests' % (theirs, n), many[theirs], zero[theirs], 's',
                       many[theirs] / zero[theirs], '%d/0 guests' % n))
    print('\n%-44s %8s %8s %9s' % ('seconds', 'ours', 'theirs', 'ratio'))
    for name, ours, theirs, unit, ratio, ratio_is in ratios:
        print('%-44s %8.3f %8.3f %8.2fx  %s' % (name, ours, theirs, ratio, ratio_is))
    print('\nstarting %d guests: embedded via helper %.1f s, libvirtd %.1f s; their QEMU RSS %.0f MiB; '
          'MemAvailable before %d MiB'
          % (n, figures['start_embedded_s'], figures['start_system_s'], figures['rss_embedded_mib'], available))
    common.emit_json(args.json, ratios, zero=zero, many=many, unpiped=unpiped, **figures)


if __name__ == '__main__':
    main()
