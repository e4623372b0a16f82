"""A fastmanager master hosting Python objects next to Rust-native ones
(see test_package_hosting.py). Clients are stock multiprocessing clients
in other processes (pkg_hosting_client.py).

Prints FMRESULT with: the order in which a slow hosted call and a burst
of queue round trips finished, whether `lambda: q` gives one shared
object, whether a fresh-object factory gives new ones, and whether a
dropped hosted object is released by Python."""
import gc
import json
import os
import queue
import subprocess
import sys
import time
import weakref

from fastmanager import BaseManager

import fmclient

LIVE = weakref.WeakSet()


class Slow(object):
    def __init__(self):
        LIVE.add(self)

    def nap(self, seconds):
        time.sleep(seconds)
        return 'rested %s' % seconds

    def add(self, a, b):
        return a + b


def live_slow_objects():
    gc.collect()
    return len(LIVE)


class Stats(object):
    def live(self):
        return live_slow_objects()


shared_queue = queue.Queue()
shared_queue.put('was there before start()')
stats = Stats()


class Master(BaseManager):
    pass


Master.register('get_q', callable=lambda: shared_queue)
Master.register('new_q', callable=lambda: queue.Queue())
Master.register('Slow', Slow)
Master.register('stats', callable=lambda: stats)


def main():
    key = os.urandom(8).hex().encode()
    m = Master(address=('127.0.0.1', 0), authkey=key)
    m.start()
    env = dict(os.environ, FM_HOST='127.0.0.1', FM_PORT=str(m.address[1]),
               FM_AUTHKEY=key.decode())
    client = os.path.join(os.path.dirname(__file__), 'pkg_hosting_client.py')
    work = sys.argv[1]

    def start(role):
        return subprocess.Popen([sys.executable, client, role, work],
                                env=env, stdout=subprocess.PIPE)

    napper = start('nap')
    # Wait until the slow call is running before the burst starts.
    fmclient.wait_for_file(os.path.join(work, 'napping'))
    burst = start('burst')
    out_burst = json.loads(burst.communicate(timeout=60)[0])
    out_nap = json.loads(napper.communicate(timeout=60)[0])

    q1, q2 = m.get_q(), m.get_q()
    n1, n2 = m.new_q(), m.new_q()
    before_drop = m.stats().live()
    s = m.Slow()
    with_one = m.stats().live()
    del s
    deadline = time.time() + 10
    while m.stats().live() != before_drop and time.time() < deadline:
        time.sleep(0.05)
    fmclient.emit({
        'burst_done_before_nap': out_burst['done_at'] < out_nap['done_at'],
        'nap_result': out_nap['result'],
        'burst_first_item': out_burst['first_item'],
        'lambda_q_same_object': q1._id == q2._id,
        'new_q_distinct': n1._id != n2._id,
        'hosted_live': [before_drop, with_one, m.stats().live()],
        'add': m.Slow().add(2, 3),
        'str_slow': str(m.Slow()).startswith('<__main__.Slow object at 0x'),
    })
    m.shutdown()


if __name__ == '__main__':
    main()
