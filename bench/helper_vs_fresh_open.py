"""Cost of one domain_info call through the root's helper against the naive way, opening
the embedded driver in a fresh process per call, with 0 and 30 running firmware-only guests.

Both sides are measured the way a module runs: a new Python process per call. Ratios are
naive / helper, measured in this one run on this machine. Run as root after
hacking/bootstrap.sh:  .cache/venv/bin/python bench/helper_vs_fresh_open.py [--calls 20] [--json]
"""
import argparse
import subprocess
import sys

import common

PYTHON = '/usr/bin/python3'
ROOT = '/tmp/evb-root'

# One domain_info through the helper: what the module does after AnsiballZ has started.
THROUGH_HELPER = """
import sys
sys.path.insert(0, %r)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._client import HelperClient
client = HelperClient(%r)
client.domain_list()
client.versions()
""" % (common.COLLECTIONS, ROOT)

# What every direct user of an embedded driver does first: an event loop, then the open.
# A fresh process prepares the root for its QEMU as the helper does (its account, /dev/kvm):
# libvirt probes QEMU again whenever what it sees of /dev/kvm changes between two opens.
EMBED_PRELUDE = """
import os, sys, threading
sys.path.insert(0, %r)
from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.confine import Confinement
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import EmbedRoot
Confinement(EmbedRoot(%r)).before_open()
sys.setdlopenflags(os.RTLD_NOW | os.RTLD_GLOBAL)
import libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
libvirt.virEventRegisterDefaultImpl()
def loop():
    while True:
        libvirt.virEventRunDefaultImpl()
threading.Thread(target=loop, daemon=True).start()
""" % (common.COLLECTIONS, ROOT)

# The same answer the naive way: register the event loop, open the drivers, ask, exit.
FRESH_OPEN = EMBED_PRELUDE + """
secret = libvirt.open('secret:///embed?root=%s')
conn = libvirt.open('qemu:///embed?root=%s')
for dom in conn.listAllDomains(0):
    dom.state(); dom.UUIDString(); dom.ID(); dom.isPersistent()
conn.getVersion(); conn.getLibVersion()
conn.close(); secret.close()
""" % (ROOT, ROOT)

START_GUESTS = EMBED_PRELUDE + """
conn = libvirt.open('qemu:///embed?root=%s')
for i in range(int(sys.argv[1]), int(sys.argv[2])):
    conn.createXML(%r.format(name='bench%%d' %% i), 0)
""" % (ROOT, common.FIRMWARE_GUEST)


def run(code, *args):
    # libvirt logs warnings (tainted guests) to stderr: not part of the measurement.
    subprocess.run([PYTHON, '-c', code] + list(args), check=True, stderr=subprocess.DEVNULL)


def timed(code, calls):
    return common.timed([PYTHON, '-c', code], calls, stderr=subprocess.DEVNULL)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--calls', type=int, default=20)
    parser.add_argument('--guests', type=int, nargs='+', default=[0, 30])
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()

    common.fresh_root(ROOT)
    client = common.helper_client(ROOT)
    floor = timed('pass', args.calls)
    rows = []
    running = 0
    try:
        for guests in args.guests:
            common.progress('%d guests' % guests)
            client.stop()
            if guests > running:
                run(START_GUESTS, str(running), str(guests))
                running = guests
            run(FRESH_OPEN)  # warm the page cache, not the driver
            fresh = timed(FRESH_OPEN, args.calls)
            run(THROUGH_HELPER)  # starts the helper once, like the first task of a play
            helper = timed(THROUGH_HELPER, args.calls)
            rows.append((guests, fresh, helper))
    finally:
        client.stop()
        common.kill_root_guests(ROOT)
    print('domain_info cost, median of %d calls, each a new Python process (bare start: %.1f ms)'
          % (args.calls, floor * 1000))
    print('%8s %18s %18s %14s %22s' % ('guests', 'fresh open (ms)', 'via helper (ms)', 'ratio', 'ratio above bare start'))
    for guests, fresh, helper in rows:
        print('%8d %18.1f %18.1f %13.2fx %21.2fx' % (guests, fresh * 1000, helper * 1000, fresh / helper,
                                                     (fresh - floor) / max(helper - floor, 1e-6)))
    common.emit_json(args.json, [('domain_info via helper vs fresh open, %d guests' % guests, helper, fresh, 's',
                                  fresh / helper, 'fresh/helper') for guests, fresh, helper in rows],
                     bare_start=floor, rows=[dict(zip(('guests', 'fresh', 'helper'), row)) for row in rows])


if __name__ == '__main__':
    sys.exit(main())
