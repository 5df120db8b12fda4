"""Test fixture: open a root's embedded QEMU driver directly, without the helper.

  direct_libvirt.py ROOT start NAME [--paused]   start a firmware-only TCG guest, then exit
  direct_libvirt.py ROOT hold                    keep the root open until killed

Guests outlive this process; a held root is what "another process has the root" means.
"""
import os
import sys
import threading
import time

sys.setdlopenflags(os.RTLD_NOW | os.RTLD_GLOBAL)
import libvirt  # noqa: E402

GUEST = """<domain type='qemu'><name>%s</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os>
<devices><video><model type='none'/></video></devices></domain>"""


def run_event_loop():
    while True:
        libvirt.virEventRunDefaultImpl()


def main():
    root, action = sys.argv[1], sys.argv[2]
    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=run_event_loop, daemon=True).start()
    conn = libvirt.open('qemu:///embed?root=%s' % root)
    if action == 'start':
        flags = libvirt.VIR_DOMAIN_START_PAUSED if '--paused' in sys.argv else 0
        dom = conn.createXML(GUEST % sys.argv[3], flags)
        print(dom.UUIDString())
    elif action == 'hold':
        print('holding', flush=True)
        while True:
            time.sleep(60)
    conn.close()


main()
