"""The guest_agent connection's file transfers against the guest agent's own rate, on one guest
in one run.

Raw rate: a loop of guest-file-write calls (guest-file-read for reading) sent one by one
through the helper's plain `agent` operation, between one open and one close, for each chunk
size of WRITE_CHUNKS_KIB (up to what qemu-ga takes: a message of about 256 KiB of base64 is
dropped, 176 KiB of data already sometimes) and READ_CHUNKS_KIB; the best of each is the raw
rate. Ours:
put_file and fetch_file of the connection plugin (as Ansible calls them), which also verify
the file by its sha256 inside the guest. Rounds alternate raw and ours, and the medians are
compared: put_file with the best raw write rate (the goal: at least 70 %), fetch_file with the
best raw read rate (reading runs about 4x faster than writing; the guest's sha256sum that
verifies a fetched file takes about a fifth of fetch_file's time).

The guest is the small test image (tests/guest/build.sh) under TCG: qemu-ga parses every
character of a message it gets (about 2 ms per call and 0.3 ms per KiB of data written,
measured), so the rate is bounded by the guest's CPU, not by the host.

Run as root after hacking/bootstrap.sh:
  .cache/venv/bin/python bench/put_file_vs_agent.py [--mib 32] [--rounds 3] [--json]
"""
import argparse
import base64
import os
import statistics
import tempfile
import time

import common
from guest_agent_vs_libvirt_qemu import GUEST, GUEST_XML, overlay
from common import sh

ROOT = '/tmp/evb-pf'
NAME = 'pf'
WRITE_CHUNKS_KIB = (64, 96, 128)
READ_CHUNKS_KIB = (96, 512, 1024, 4096)


def raw_write(client, data, chunk):
    """MiB/s of guest-file-write calls of chunk bytes, data written whole."""
    pieces = [base64.b64encode(data[offset:offset + chunk]).decode('ascii') for offset in range(0, len(data), chunk)]
    handle = client.agent(name=NAME, command='guest-file-open', arguments={'path': '/tmp/raw.bin', 'mode': 'wb'})
    start = time.perf_counter()
    for piece in pieces:
        client.agent(name=NAME, command='guest-file-write', arguments={'handle': handle, 'buf-b64': piece})
    seconds = time.perf_counter() - start
    client.agent(name=NAME, command='guest-file-close', arguments={'handle': handle})
    return len(data) / seconds / 2 ** 20


def raw_read(client, size, chunk):
    """MiB/s of guest-file-read calls of chunk bytes over the file /tmp/raw.bin."""
    handle = client.agent(name=NAME, command='guest-file-open', arguments={'path': '/tmp/raw.bin', 'mode': 'rb'})
    start = time.perf_counter()
    done = 0
    while done < size:
        reply = client.agent(name=NAME, command='guest-file-read', arguments={'handle': handle, 'count': chunk})
        done += reply['count']
        if reply['eof']:
            break
    seconds = time.perf_counter() - start
    client.agent(name=NAME, command='guest-file-close', arguments={'handle': handle})
    return done / seconds / 2 ** 20


def connection():
    """The guest_agent connection plugin to the guest, connected, as Ansible makes it."""
    from ansible.plugins.loader import connection_loader
    from ansible.playbook.play_context import PlayContext
    conn = connection_loader.get('embedvirt.libvirt.guest_agent', PlayContext(), None)
    conn.set_options(var_options={'ansible_embedvirt_root': ROOT, 'inventory_hostname': NAME})
    conn._connect()
    return conn


def timed_rate(size, call, *args):
    start = time.perf_counter()
    call(*args)
    return size / (time.perf_counter() - start) / 2 ** 20


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--mib', type=int, default=32)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    # Ansible's collection loader first: the helper's client then comes from the same collection.
    from ansible.plugins.loader import init_plugin_loader
    init_plugin_loader([common.COLLECTIONS])
    if not os.path.exists(GUEST + '/disk.img'):
        sh(os.path.join(common.CHECKOUT, 'tests', 'guest', 'build.sh'), GUEST)
    size = args.mib << 20
    data = os.urandom(size)
    work = tempfile.mkdtemp(prefix='evb-pf-')
    source, fetched = os.path.join(work, 'data.bin'), os.path.join(work, 'fetched.bin')
    with open(source, 'wb') as f:
        f.write(data)
    common.remove_root(ROOT)
    common.fresh_root(ROOT, 'images')
    client = common.helper_client(ROOT, idle_timeout=0)
    rates = {}
    try:
        disk = os.path.join(ROOT, 'images', NAME + '.qcow2')
        overlay(disk)
        client.domain_create(xml=GUEST_XML.format(name=NAME, guest=GUEST, disk=disk))
        common.progress('booting the guest')
        client.guest_wait_agent(name=NAME, timeout=300)
        conn = connection()
        for number in range(args.rounds):
            common.progress('round %d of %d' % (number + 1, args.rounds))
            for kib in WRITE_CHUNKS_KIB:
                rates.setdefault('raw write %d KiB' % kib, []).append(raw_write(client, data, kib << 10))
            for kib in READ_CHUNKS_KIB:
                rates.setdefault('raw read %d KiB' % kib, []).append(raw_read(client, size, kib << 10))
            # /tmp in the guest is a tmpfs, as for the raw calls
            rates.setdefault('put_file', []).append(timed_rate(size, conn.put_file, source, '/tmp/put.bin'))
            rates.setdefault('fetch_file', []).append(timed_rate(size, conn.fetch_file, '/tmp/put.bin', fetched))
        conn.close()
    finally:
        common.remove_root(ROOT)
        sh('rm', '-rf', work)
    medians = dict((label, statistics.median(values)) for label, values in rates.items())
    print('file transfer to and from one guest (TCG), %d MiB, median of %d rounds, MiB/s' % (args.mib, args.rounds))
    for label, values in rates.items():
        print('%-20s %8.2f   (%s)' % (label, medians[label], ', '.join('%.2f' % v for v in values)))
    ratios = []
    for ours, raw in (('put_file', 'raw write'), ('fetch_file', 'raw read')):
        best = max((label for label in medians if label.startswith(raw)), key=medians.get)
        ratio = medians[ours] / medians[best]
        print('%s against the best %s (%s): %.0f %%' % (ours, raw, best, ratio * 100))
        ratios.append(('%s %d MiB vs %s' % (ours, args.mib, best), medians[ours], medians[best], 'MiB/s', ratio,
                       'ours/raw'))
    common.emit_json(args.json, ratios, mib=args.mib, rounds=args.rounds,
                     medians=dict((label, round(value, 3)) for label, value in medians.items()))


if __name__ == '__main__':
    main()
