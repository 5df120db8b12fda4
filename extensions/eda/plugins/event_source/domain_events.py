# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""embedvirt.libvirt.domain_events: domain events of embedded libvirt roots, for ansible-rulebook.

Each root's helper streams its guests' events (libvirt's callbacks in the helper's event
loop) to this source, on this machine or on a hypervisor over SSH, as the guest_agent
connection reaches one. Each event is a dict:

  type      defined, undefined, started, paused, resumed, stopped, shutdown, pmsuspended,
            crashed, reboot, agent_connected, agent_disconnected, watchdog, io_error,
            block_job, balloon_change, device_added, device_removed; and from this source
            helper_restarted (after a reconnection: events may be missing) and
            events_dropped (dropped: how many this source did not read in time)
  root, domain, uuid, time (seconds since the epoch), sequence (the helper's counter),
  hypervisor (null on this machine), and what the type adds: reason (lifecycle events:
  stopped has shutdown, destroyed, crashed, failed - QEMU ended unasked - ...), device,
  path, action, disk, job, status, actual_kib.

Arguments:
  roots            list of roots (or root: one), each a path or a dict with path and any of
                   hypervisor, ssh_args, python and helper_python: that root's own values of
                   the arguments below
  hypervisor       SSH host of the roots that name none (this machine when left out)
  ssh_args         extra ssh arguments, a string or a list
  python           the hypervisor's Python for the relay (python3)
  helper_python    the Python that runs the root's helper there, if not the default
  events           event types to pass on (all when left out)
  domains          domain names to pass on (all when left out)
  queue            events the helper keeps for this source while it does not read (1000)
  reconnect_delay  seconds between attempts to reach a helper that went away (5)

A subscription keeps the root's helper running (no idle exit), and a helper that stopped is
started again by the next attempt: following a root keeps its drivers open.

Examples:
  - name: Guests whose QEMU ended unasked come back
    hosts: all
    sources:
      - embedvirt.libvirt.domain_events:
          roots: [/srv/vms]
          events: [stopped]
    rules:
      - name: Start it again
        condition: event.reason in ["failed", "crashed"]
        action:
          run_playbook:
            name: restart.yml
  - name: Every guest of three hypervisors
    hosts: all
    sources:
      - embedvirt.libvirt.domain_events:
          ssh_args: -i ~/.ssh/vms
          roots:
            - {path: /srv/vms, hypervisor: admin@vmhost1}
            - {path: /srv/vms, hypervisor: admin@vmhost2}
            - {path: /srv/lab, hypervisor: admin@vmhost3, helper_python: /opt/py/bin/python3}
    rules:
      - name: Say which guests stopped where
        condition: event.type == "stopped"
        action:
          debug:
            msg: "{{ event.domain }} on {{ event.hypervisor }}: {{ event.reason }}"
"""

import asyncio
import logging
import os
import sys
import threading
import time

# The collection's own client: this file is <collections>/ansible_collections/embedvirt/libvirt/
# extensions/eda/plugins/event_source/domain_events.py, run by path (ansible-rulebook's runpy).
COLLECTIONS = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), *(['..'] * 7)))
if COLLECTIONS not in sys.path:
    sys.path.append(COLLECTIONS)

# pylint: disable=wrong-import-position
from ansible_collections.embedvirt.libvirt.plugins.module_utils._client_error import HelperClientError  # noqa: E402
from ansible_collections.embedvirt.libvirt.plugins.module_utils._root import RootError  # noqa: E402
from ansible_collections.embedvirt.libvirt.plugins.plugin_utils._hypervisor import helper_client  # noqa: E402

log = logging.getLogger(__name__)

RECONNECT_DELAY = 5
# A subscription that cannot be made as asked: trying again would not help.
FATAL_KINDS = ('value', 'protocol', 'root')
# What each root may set for itself (the source's arguments of the same names otherwise).
PER_ROOT = ('hypervisor', 'ssh_args', 'python', 'helper_python')


def settings(args):
    """The source's arguments, checked: ValueError names what is wrong. Each root becomes a
    dict with path and every key of PER_ROOT."""
    roots = args.get('roots') or ([args['root']] if args.get('root') else [])
    if not roots or not isinstance(roots, list):
        raise ValueError('embedvirt.libvirt.domain_events needs roots: a list of roots (or root: one), each a path '
                         'or a dict with path and any of %s' % ', '.join(PER_ROOT))
    roots = [root_settings(root, args) for root in roots]
    for key in ('events', 'domains'):
        value = args.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            raise ValueError('embedvirt.libvirt.domain_events: %s must be a list of names' % key)
    delay = args.get('reconnect_delay', RECONNECT_DELAY)
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay <= 0:
        raise ValueError('embedvirt.libvirt.domain_events: reconnect_delay must be a number of seconds above 0')
    return dict(roots=roots, events=args.get('events'), domains=args.get('domains'), queue=args.get('queue'),
                reconnect_delay=delay)


def root_settings(root, args):
    """One entry of roots as a dict: path, and PER_ROOT from the entry or else from args."""
    entry = root if isinstance(root, dict) else {'path': root}
    unknown = sorted(set(entry) - set(PER_ROOT) - {'path'})
    if unknown or not isinstance(entry.get('path'), str) or not entry['path']:
        raise ValueError('embedvirt.libvirt.domain_events: each of roots is a path or a dict with path and any of %s'
                         '; not %.80r' % (', '.join(PER_ROOT), root))
    return dict(path=entry['path'], **dict((key, entry.get(key, args.get(key))) for key in PER_ROOT))


def follow(target, config, emit, fail):
    """Pass on the events of one root (an entry of settings' roots) for ever, subscribing again
    after the helper went away."""
    root, hypervisor = target['path'], target['hypervisor']
    subscribed_before = False
    while True:
        client = None
        try:
            client = helper_client(root, hypervisor, target['ssh_args'], target['python'], target['helper_python'])
            dummy, messages = client.subscribe(config['events'], config['domains'], config['queue'])
            if subscribed_before:
                emit(dict(type='helper_restarted', root=root, hypervisor=hypervisor, time=time.time()))
            subscribed_before = True
            for message in messages:
                if 'event' in message:
                    emit(dict(message['event'], hypervisor=hypervisor))
        except (HelperClientError, RootError, ValueError) as e:
            if not isinstance(e, HelperClientError) or e.kind in FATAL_KINDS:
                fail(e)
                return
            warn(target, e, config)
        except Exception as e:  # pylint: disable=broad-except
            # Whatever else ends a subscription (a broken pipe, an SSH session gone) is tried again.
            warn(target, e, config)
        finally:
            if client is not None:
                client.close()
        time.sleep(config['reconnect_delay'])


def described(target):
    """A root of settings' roots, in words: its path, and where it is."""
    return target['path'] + (' on %s' % target['hypervisor'] if target['hypervisor'] else '')


def warn(target, error, config):
    log.warning('embedvirt.libvirt.domain_events: root %s: %s; trying again in %s s', described(target), error,
                config['reconnect_delay'])


async def main(queue, args):
    """ansible-rulebook's entry point: put each event of the roots on queue."""
    config = settings(args)
    loop = asyncio.get_running_loop()
    failed = loop.create_future()

    def emit(event):
        # ansible-rulebook's queue is bounded: a follower waits for room, and meanwhile its
        # helper keeps (then drops and counts) what comes.
        asyncio.run_coroutine_threadsafe(queue.put(event), loop).result()

    def fail(error):
        loop.call_soon_threadsafe(lambda: failed.done() or failed.set_exception(error))

    for target in config['roots']:
        # Daemon threads: each blocks on its helper's socket, and ends with the process.
        threading.Thread(target=follow, args=(target, config, emit, fail), daemon=True,
                         name='domain_events %s' % described(target)).start()
    await failed


if __name__ == '__main__':
    # python domain_events.py ROOT...: print the events of the roots on this machine.
    class PrintQueue:
        @staticmethod
        async def put(event):
            print(event, flush=True)

    asyncio.run(main(PrintQueue(), {'roots': sys.argv[1:]}))
