"""All the benchmarks in one run, one after the other, and one table of their ratios.

Run as root after hacking/bootstrap.sh (and tests/guest/build.sh, or the guest-agent bench
builds the guest image first):
  .cache/venv/bin/python bench/run.py [--quick]
On a machine shared with others who run guests, serialise heavy work:
  flock /tmp/embedvirt-heavy.lock .cache/venv/bin/python bench/run.py [--quick]

Each bench runs with --json; its human-readable report is kept in .cache/bench/<bench>.txt,
its progress goes to stderr. --quick runs fewer rounds, 20 guests instead of 100, 5 clones
instead of 20, fleets of 20 and 3, and files of 8 MiB once instead of 32 MiB three times: for
trying the benches, not for figures to publish.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import common

# name, and its arguments with --quick
BENCHES = [
    ('tasks_vs_libvirtd', ['--rounds', '5', '--guests', '20']),
    ('helper_vs_fresh_open', ['--calls', '5']),
    ('guest_agent_vs_libvirt_qemu', ['--runs', '2']),
    ('instance_vs_libvirtd', ['--rounds', '1']),
    ('clone_vs_copy', ['--clones', '5']),
    ('fleet_vs_loop', ['--clones', '20', '--booted', '3']),
    ('put_file_vs_agent', ['--mib', '8', '--rounds', '1']),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--quick', action='store_true')
    args = parser.parse_args()
    start = time.perf_counter()
    rows = []
    failed = []
    for name, quick in BENCHES:
        common.progress('bench %s' % name)
        bench_start = time.perf_counter()
        script = os.path.join(common.CHECKOUT, 'bench', name + '.py')
        done = subprocess.run([sys.executable, script, '--json'] + (quick if args.quick else []),
                              stdout=subprocess.PIPE, text=True, check=False)  # a failed bench is reported below
        with open(os.path.join(common.CACHE, name + '.txt'), 'w') as f:
            f.write(done.stdout)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            failed.append(name)
            continue
        rows.extend(json.loads(lines[-1])['ratios'])
        common.progress('bench %s: %.0f s' % (name, time.perf_counter() - bench_start))

    width = max(len(row['name']) for row in rows) if rows else 4
    print('%-*s %9s %16s %-5s %8s  %s' % (width, 'name', 'ours', 'theirs/baseline', 'unit', 'ratio', 'ratio is'))
    for row in rows:
        print('%-*s %9.3f %16.3f %-5s %7.2fx  %s'
              % (width, row['name'], row['ours'], row['theirs'], row['unit'], row['ratio'], row['ratio_is']))
    print('all benches: %.0f s%s' % (time.perf_counter() - start,
                                     '; FAILED: ' + ', '.join(failed) if failed else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
