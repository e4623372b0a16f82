"""What the side-by-side benchmarks share: N client processes doing put
then get on one queue for a while, started together, and the count of
round trips they made (benches/durable.py, benches/metrics_cost.py)."""

import multiprocessing
import socket
import time
from multiprocessing.managers import BaseManager


class M(BaseManager):
    pass


M.register('q')


def manager_client(port, seconds, counts, i, start):
    """A stock manager client of the queue named `q` (`--register q=Queue`)."""
    m = M(address=('127.0.0.1', port), authkey=b'bench')
    m.connect()
    q = m.q()
    start.wait()
    n, end = 0, time.time() + seconds
    while time.time() < end:
        q.put(('task', n))
        q.get()
        n += 1
    counts[i] = n


def wait_listening(port):
    while True:
        try:
            socket.create_connection(('127.0.0.1', port), 0.2).close()
            return
        except OSError:
            time.sleep(0.01)


def drive(target, port, n, seconds, started=None):
    """Runs `n` processes of `target(port, seconds, counts, i, start)`, lets
    them go together (after `started()`, if given, once they are
    connected), and returns their round trips per second."""
    counts = multiprocessing.Array('l', n)
    start = multiprocessing.Event()
    procs = [multiprocessing.Process(target=target, args=(port, seconds, counts, i, start)) for i in range(n)]
    for p in procs:
        p.start()
    time.sleep(0.3)
    if started:
        started()
    start.set()
    for p in procs:
        p.join()
    return sum(counts) / seconds
