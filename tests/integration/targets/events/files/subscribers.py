"""Subscribers of a root's helper, through the collection's own client, for the events target.

  subscribers.py COLLECTIONS stalled ROOT DIR   subscribe (a queue of 5; DIR/ready says it did) and read
                                                nothing until DIR/go exists, then read what the helper
                                                kept and how many it dropped (DIR/drained says it is
                                                there), then until ev-mark is undefined; what it read
                                                and what was said dropped, in DIR/stalled.json
  subscribers.py COLLECTIONS burst ROOT COUNT   define and undefine a small domain COUNT times
  subscribers.py COLLECTIONS mark ROOT -        define and undefine ev-mark
  subscribers.py COLLECTIONS many ROOT COUNT    COUNT subscriptions at once, one define and undefine;
                                                what each heard and the helper's count, as JSON
"""

import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, sys.argv[1])
# pylint: disable=wrong-import-position
from ansible_collections.embedvirt.libvirt.plugins.module_utils._client import HelperClient  # noqa: E402

TINY = ("<domain type='qemu'><name>%s</name><memory unit='MiB'>32</memory>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices/></domain>")
WAIT_SECONDS = 300


def events(messages):
    for message in messages:
        if 'event' in message:
            yield message['event']


def stalled(root, directory):
    client = HelperClient(root)
    client.ensure()
    # A small receive buffer: the helper's side fills after a few events, then its queue of 5.
    client.connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reply, messages = client.subscribe(queue=5)
    open(os.path.join(directory, 'ready'), 'w').close()
    deadline = time.time() + WAIT_SECONDS
    while not os.path.exists(os.path.join(directory, 'go')):
        if time.time() > deadline:
            sys.exit('no go within %d s' % WAIT_SECONDS)
        time.sleep(0.2)
    seen, dropped, mark = [], 0, None
    for event in events(messages):
        if event['type'] == 'events_dropped':
            dropped += event['dropped']
            open(os.path.join(directory, 'drained'), 'w').close()
            continue
        seen.append(event['sequence'])
        if event['domain'] == 'ev-mark' and event['type'] == 'undefined':
            mark = event['sequence']
            break
    with open(os.path.join(directory, 'stalled.json'), 'w') as f:
        json.dump(dict(since=reply['sequence'], mark=mark, read=len(seen), dropped=dropped,
                       in_order=seen == sorted(seen)), f)


def burst(root, count, name='ev-burst'):
    client = HelperClient(root)
    for dummy in range(count):
        client.domain_define(xml=TINY % name)
        client.domain_undefine(name=name)


def many(root, count):
    subscriptions = []
    for dummy in range(count):
        client = HelperClient(root)
        subscriptions.append(client.subscribe(events=['defined', 'undefined'], domains=['ev-many']))
    client = HelperClient(root)
    status = client.helper_status()
    heard = [None] * count

    def listen(number, messages):
        heard[number] = [(event['type'], event['sequence']) for dummy, event in zip(range(2), events(messages))]

    threads = [threading.Thread(target=listen, args=(number, messages), daemon=True)
               for number, (dummy, messages) in enumerate(subscriptions)]
    for thread in threads:
        thread.start()
    client.domain_define(xml=TINY % 'ev-many')
    client.domain_undefine(name='ev-many')
    for thread in threads:
        thread.join(WAIT_SECONDS)
    print(json.dumps(dict(subscribers=status['subscribers'], heard=sorted(set(map(json.dumps, heard))))))


def main():
    mode, root, arg = sys.argv[2:5]
    if mode == 'stalled':
        stalled(root, arg)
    elif mode == 'burst':
        burst(root, int(arg))
    elif mode == 'mark':
        burst(root, 1, 'ev-mark')
    else:
        many(root, int(arg))


if __name__ == '__main__':
    main()
