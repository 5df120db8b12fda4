"""What the benchmarks share: paths, embedded roots, firmware-only guests, a private
libvirtd, community.libvirt from the `ansible` wheel on PyPI, timing, and --json output."""
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(CHECKOUT, '.cache', 'bench')
VENV = os.path.join(CHECKOUT, '.cache', 'venv', 'bin')
COLLECTIONS = os.path.join(CHECKOUT, '.cache', 'collections')
# libvirtd's QEMU as root: as its default account (libvirt-qemu), with /dev/kvm 0600 every
# start takes ~40 s (the capability re-probe); without stdio_handler=file it asks for virtlogd.
QEMU_CONF = 'user = "root"\ngroup = "root"\nstdio_handler = "file"\n'
SYSTEM_IMAGES = '/var/lib/libvirt/images'

# A guest that costs little: no disk, TCG, SeaBIOS finds nothing to boot and idles.
FIRMWARE_GUEST = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os>
<devices><video><model type='none'/></video></devices></domain>"""


STARTED = time.time()


def progress(message):
    """A step of a long run, on stderr so that stdout stays the result."""
    print('[%4.0f s] %s' % (time.time() - STARTED, message), file=sys.stderr, flush=True)


def sh(*argv, **kwargs):
    return subprocess.run(list(argv), check=True, **kwargs)


def timed(argv, runs, **kwargs):
    """Median wall time of running argv `runs` times."""
    samples = []
    for dummy in range(runs):
        start = time.perf_counter()
        sh(*argv, stdout=subprocess.DEVNULL, **kwargs)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def fresh_root(root, *subdirs):
    """An empty embedded root as the collection makes one (its qemu.conf defaults: as root, QEMU
    runs as the root's own account); leftovers of an earlier run go."""
    kill_root_guests(root)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root, 0o700)
    sys.path.insert(0, COLLECTIONS)
    from ansible_collections.embedvirt.libvirt.plugins.module_utils._qemu_conf import write_default
    from ansible_collections.embedvirt.libvirt.plugins.module_utils._root_dir import EmbedRoot
    with EmbedRoot(root).open() as root_dir:
        write_default(root_dir)
        for d in subdirs:
            os.close(root_dir.subdir(d, create=True))


def kill_root_guests(root):
    # Only QEMU processes whose arguments name this root (monitor, key and log paths).
    subprocess.run(['pkill', '-9', '-f', 'guest=.*%s/' % root], check=False)


def remove_root(root):
    """A bench's root gone: its guests powered off through libvirt, its helper stopped, what is
    left killed, its files removed. Through libvirt first: it counts the guests that use a file
    outside the root (the test guest's kernel) and gives the file back to its owner after the
    last; a guest only killed leaves it lent to its root's QEMU account, and the next root's
    guests cannot start ("Setting different DAC user or group")."""
    if os.path.isdir(root):
        client = helper_client(root, create=False)
        from ansible_collections.embedvirt.libvirt.plugins.module_utils._client_error import HelperClientError
        from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import ACTIVE_STATES
        for domain in client.domain_list(states=list(ACTIVE_STATES)):
            try:
                client.domain_destroy(name=domain['name'])
            except HelperClientError as e:  # gone meanwhile: the kill below is for what is left
                progress('%s: %s' % (domain['name'], e))
        client.stop()
    kill_root_guests(root)
    shutil.rmtree(root, ignore_errors=True)


def helper_client(root, **kwargs):
    sys.path.insert(0, COLLECTIONS)
    from ansible_collections.embedvirt.libvirt.plugins.module_utils._client import HelperClient
    return HelperClient(root, **kwargs)


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


def ansible_env(**extra):
    """Environment for ansible with both collections; lxml (which community.libvirt.virt
    needs on the managed host) comes from .cache/bench/pylib so the venv stays as built."""
    pylib = os.path.join(CACHE, 'pylib')
    if not os.path.isdir(os.path.join(pylib, 'lxml')):
        sh(os.path.join(VENV, 'pip'), 'install', '-q', '--target', pylib, 'lxml')
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=community_libvirt() + ':' + COLLECTIONS,
                PYTHONPATH=pylib, ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_PIPELINING='True',
                ANSIBLE_PYTHON_INTERPRETER=os.path.join(VENV, 'python'), **extra)


class Libvirtd:
    """libvirtd started here (no systemd) with the bench's qemu.conf; on exit the guests the
    benches start on it (names beginning with `evb`) are destroyed and libvirtd stops."""
    PIDFILE = '/run/libvirt/evb-libvirtd.pid'

    def __enter__(self):
        for d in ('/etc/libvirt', '/var/log/libvirt', '/var/lib/libvirt', '/var/cache/libvirt', '/run/libvirt',
                  SYSTEM_IMAGES):
            os.makedirs(d, exist_ok=True)
        self.conf_backup = None
        if os.path.exists('/etc/libvirt/qemu.conf'):
            with open('/etc/libvirt/qemu.conf') as f:
                self.conf_backup = f.read()
        # Same QEMU settings as the embedded roots, so both sides run guests alike.
        with open('/etc/libvirt/qemu.conf', 'w') as f:
            f.write(QEMU_CONF)
        sh('/usr/sbin/libvirtd', '-d', '-p', self.PIDFILE)
        for dummy in range(100):
            if os.path.exists('/run/libvirt/libvirt-sock'):
                break
            time.sleep(0.1)
        return self

    def __exit__(self, *exc):
        try:
            import libvirt
            libvirt.registerErrorHandler(lambda *a: None, None)
            conn = libvirt.open('qemu:///system')
            for dom in conn.listAllDomains(0):
                if dom.name().startswith('evb'):
                    try:
                        persistent = dom.isPersistent()  # a transient one is gone once destroyed
                        if dom.isActive():
                            dom.destroy()
                        if persistent:
                            dom.undefine()
                    except libvirt.libvirtError:
                        pass  # gone meanwhile; the next one still has to go
            conn.close()
        finally:
            with open(self.PIDFILE) as f:
                pid = int(f.read())
            os.kill(pid, 15)
            for dummy in range(100):  # the next libvirtd needs its sockets and pidfile back
                if not os.path.exists('/proc/%d' % pid):
                    break
                time.sleep(0.1)
            if self.conf_backup is not None:
                with open('/etc/libvirt/qemu.conf', 'w') as f:
                    f.write(self.conf_backup)
            else:
                os.unlink('/etc/libvirt/qemu.conf')


def rss_mib(pattern):
    """Resident memory of the processes whose command line matches pattern, in MiB."""
    # pgrep exits 1 when nothing matches: that is 0 MiB, not an error.
    pids = subprocess.run(['pgrep', '-f', pattern], capture_output=True, text=True, check=False).stdout.split()
    total = 0
    for pid in pids:
        try:
            with open('/proc/%s/status' % pid) as f:
                total += next(int(line.split()[1]) for line in f if line.startswith('VmRSS:'))
        except (OSError, StopIteration):
            pass  # gone meanwhile, or a kernel thread
    return total / 1024


def emit_json(enabled, ratios, **figures):
    """With --json, the figures as one JSON object on the last line. ratios: rows of
    (name, ours, theirs_or_baseline, unit, ratio, what_the_ratio_is) for bench/run.py."""
    if enabled:
        keys = ('name', 'ours', 'theirs', 'unit', 'ratio', 'ratio_is')
        print(json.dumps(dict(figures, ratios=[dict(zip(keys, row)) for row in ratios])))
