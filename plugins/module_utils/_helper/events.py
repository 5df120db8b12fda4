# -*- coding: utf-8 -*-
# Copyright: embedvirt.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a private module: it is not part of this collection's public API and may change
# without notice in any release.

"""The helper's domain events: libvirt's callbacks on the root's QEMU connection, turned into
_protocol's event messages and handed to each subscriber's bounded queue.

libvirt calls the callbacks in the event loop thread, which also keeps the drivers alive, so a
callback only appends to queues: a subscriber that does not read loses events (counted, and
said in an 'events_dropped' message) and never slows the loop, the helper or a task.
"""

import collections
import contextlib
import logging
import threading
import time

from ansible_collections.embedvirt.libvirt.plugins.module_utils._helper.errors import HelperError
from ansible_collections.embedvirt.libvirt.plugins.module_utils._protocol import EVENTS_QUEUE

log = logging.getLogger('embedvirt.helper')

# libvirt's lifecycle events (virDomainEventType) and their details, by number.
LIFECYCLE = {
    0: ('defined', ('added', 'updated', 'renamed', 'from_snapshot')),
    1: ('undefined', ('removed', 'renamed')),
    2: ('started', ('booted', 'migrated', 'restored', 'from_snapshot', 'wakeup')),
    3: ('paused', ('paused', 'migrated', 'io_error', 'watchdog', 'restored', 'from_snapshot', 'api_error',
                   'postcopy', 'postcopy_failed')),
    4: ('resumed', ('unpaused', 'migrated', 'from_snapshot', 'postcopy', 'postcopy_failed')),
    # failed: QEMU ended without being asked (killed, or it crashed).
    5: ('stopped', ('shutdown', 'destroyed', 'crashed', 'migrated', 'saved', 'failed', 'from_snapshot')),
    6: ('shutdown', ('finished', 'guest', 'host')),
    7: ('pmsuspended', ('memory', 'disk')),
    8: ('crashed', ('panicked', 'crashloaded')),
}
AGENT_STATES = {1: 'agent_connected', 2: 'agent_disconnected'}
AGENT_REASONS = ('unknown', 'domain_started', 'channel')
WATCHDOG_ACTIONS = ('none', 'pause', 'reset', 'poweroff', 'shutdown', 'debug', 'inject_nmi')
IO_ERROR_ACTIONS = ('none', 'pause', 'report')
BLOCK_JOB_TYPES = ('unknown', 'pull', 'copy', 'commit', 'active_commit', 'backup')
BLOCK_JOB_STATES = ('completed', 'failed', 'canceled', 'ready')
# Every event type a subscription may ask for.
EVENT_TYPES = tuple(name for name, _details in LIFECYCLE.values()) + (
    'reboot', 'agent_connected', 'agent_disconnected', 'watchdog', 'io_error', 'block_job', 'balloon_change',
    'device_added', 'device_removed')
# What a subscriber's queue may hold at most (some 650 bytes an event: 6.5 MB), and how many
# subscriptions a helper keeps (each holds a thread): those who may connect own the root, but
# a loop of theirs must not exhaust the helper.
QUEUE_MAX = 10000
SUBSCRIBERS_MAX = 256
# A wait inside the helper needs only to hear that something happened.
WATCH_QUEUE = 16


def named(names, number):
    return names[number] if 0 <= number < len(names) else 'unknown'


class Subscriber:
    """One subscription: its filters and its bounded queue of messages."""

    def __init__(self, root, events, domains, size):
        self.root = root
        self.events = frozenset(events) if events else None
        self.domains = frozenset(domains) if domains else None
        self.size = size
        self.queue = collections.deque()
        self.dropped = 0
        self.last_dropped = 0  # the sequence number of the last event dropped
        self.ready = threading.Condition()

    def wants(self, event):
        return ((self.events is None or event['type'] in self.events)
                and (self.domains is None or event['domain'] in self.domains))

    def put(self, event):
        """Queue event, or count it as dropped when the queue is full; never waits."""
        with self.ready:
            if self.dropped and len(self.queue) < self.size:
                self.queue.append(self.dropped_message())
            if len(self.queue) < self.size:
                self.queue.append({'event': event})
            else:
                self.dropped += 1
                self.last_dropped = event['sequence']
            self.ready.notify()

    def dropped_message(self):
        """What says how many events were lost since the last message (call with ready held)."""
        message = {'event': {'type': 'events_dropped', 'dropped': self.dropped, 'root': self.root,
                             'time': time.time(), 'sequence': self.last_dropped}}
        self.dropped = 0
        return message

    def wait(self, timeout):
        """Whether an event came within timeout seconds (for waits inside the helper)."""
        return self.get(timeout) is not None

    def get(self, timeout):
        """The next message, or None after timeout seconds without one; once the queue is
        empty, what was dropped meanwhile is said before anything else."""
        with self.ready:
            if not self.queue and not self.dropped:
                self.ready.wait(timeout)
            if self.queue:
                return self.queue.popleft()
            return self.dropped_message() if self.dropped else None


class Events:
    """The root's domain events, registered once the drivers are open, and their subscribers."""

    def __init__(self, drivers):
        self.drivers = drivers
        self.lock = threading.Lock()
        self.subscribers = set()
        # The helper's own waits (see watch): not subscribers, which keep a helper up.
        self.watchers = set()
        self.sequence = 0
        self.local = threading.local()

    def register(self):
        """Ask libvirt for every kind of event this helper passes on (after drivers.open())."""
        libvirt, conn = self.drivers.libvirt, self.drivers.qemu
        handlers = (
            ('VIR_DOMAIN_EVENT_ID_LIFECYCLE', self.on_lifecycle),
            ('VIR_DOMAIN_EVENT_ID_REBOOT', self.on_reboot),
            ('VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE', self.on_agent),
            ('VIR_DOMAIN_EVENT_ID_WATCHDOG', self.on_watchdog),
            ('VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON', self.on_io_error),
            ('VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2', self.on_block_job),
            ('VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE', self.on_balloon),
            ('VIR_DOMAIN_EVENT_ID_DEVICE_ADDED', self.on_device_added),
            ('VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED', self.on_device_removed),
        )
        for name, handler in handlers:
            # For the helper's life: libvirt's callback ids are never needed to deregister.
            conn.domainEventRegisterAny(None, getattr(libvirt, name), handler, None)

    # --- subscriptions ------------------------------------------------------------------
    def events_subscribe(self, events=None, domains=None, queue=EVENTS_QUEUE):
        """Make this connection a subscription (the server streams it after the reply)."""
        for key, value in (('events', events), ('domains', domains)):
            if value is not None and not (isinstance(value, list) and all(isinstance(name, str) for name in value)):
                raise HelperError('value', '%s is %.80r: give a list of names' % (key, value),
                                  'leave %s out for all' % key)
        unknown = sorted(set(events or ()) - set(EVENT_TYPES))
        if unknown:
            raise HelperError('value', 'events: %s: no such event type' % ', '.join(unknown),
                              'use among %s' % ', '.join(EVENT_TYPES))
        if not isinstance(queue, int) or isinstance(queue, bool) or not 1 <= queue <= QUEUE_MAX:
            raise HelperError('value', 'queue is %r: give a number of events from 1 to %d' % (queue, QUEUE_MAX),
                              'leave queue out for %d' % EVENTS_QUEUE)
        subscriber = Subscriber(self.drivers.root.path, events, domains, queue)
        with self.lock:
            if len(self.subscribers) >= SUBSCRIBERS_MAX:
                raise HelperError('value', 'the helper of %s already has %d subscriptions, its most'
                                  % (self.drivers.root.path, SUBSCRIBERS_MAX),
                                  'end subscriptions that are no longer read (stop their rulebooks or scripts)')
            self.subscribers.add(subscriber)
            sequence = self.sequence
        self.local.subscriber = subscriber
        return {'subscribed': True, 'root': self.drivers.root.path, 'sequence': sequence,
                'events': sorted(events) if events else list(EVENT_TYPES), 'queue': queue}

    def claim(self):
        """The subscription this thread's last request made, once (None if it made none)."""
        subscriber, self.local.subscriber = getattr(self.local, 'subscriber', None), None
        return subscriber

    def unsubscribe(self, subscriber):
        with self.lock:
            self.subscribers.discard(subscriber)

    @contextlib.contextmanager
    def watch(self, domain, types):
        """A Subscriber to domain's events of types, for a wait in the helper: made before what
        causes them, so that none is missed, and gone after."""
        watcher = Subscriber(self.drivers.root.path, types, [domain], WATCH_QUEUE)
        with self.lock:
            self.watchers.add(watcher)
        try:
            yield watcher
        finally:
            with self.lock:
                self.watchers.discard(watcher)

    def count(self):
        with self.lock:
            return len(self.subscribers)

    # --- libvirt's callbacks (the event loop thread) -------------------------------------
    def publish(self, dom, kind, **detail):
        try:
            name, uuid = dom.name(), dom.UUIDString()
        except self.drivers.libvirt.libvirtError:
            return
        with self.lock:
            self.sequence += 1
            event = dict(detail, type=kind, root=self.drivers.root.path, domain=name, uuid=uuid, time=time.time(),
                         sequence=self.sequence)
            subscribers = list(self.subscribers) + list(self.watchers)
        for subscriber in subscribers:
            if subscriber.wants(event):
                subscriber.put(event)

    def on_lifecycle(self, _conn, dom, event, detail, _opaque):
        kind, details = LIFECYCLE.get(event, ('unknown', ()))
        reason = named(details, detail)
        self.publish(dom, kind, reason=reason)

    def on_reboot(self, _conn, dom, _opaque):
        self.publish(dom, 'reboot')

    def on_agent(self, _conn, dom, state, reason, _opaque):
        self.publish(dom, AGENT_STATES.get(state, 'agent_unknown'), reason=named(AGENT_REASONS, reason))

    def on_watchdog(self, _conn, dom, action, _opaque):
        self.publish(dom, 'watchdog', action=named(WATCHDOG_ACTIONS, action))

    def on_io_error(self, _conn, dom, path, device, action, reason, _opaque):
        self.publish(dom, 'io_error', path=path, device=device, action=named(IO_ERROR_ACTIONS, action), reason=reason)

    def on_block_job(self, _conn, dom, disk, job, status, _opaque):
        self.publish(dom, 'block_job', disk=disk, job=named(BLOCK_JOB_TYPES, job),
                     status=named(BLOCK_JOB_STATES, status))

    def on_balloon(self, _conn, dom, actual, _opaque):
        self.publish(dom, 'balloon_change', actual_kib=actual)

    def on_device_added(self, _conn, dom, device, _opaque):
        self.publish(dom, 'device_added', device=device)

    def on_device_removed(self, _conn, dom, device, _opaque):
        self.publish(dom, 'device_removed', device=device)
