"""How fast a master uses its own shared queue after ``start()``: put+get
round trips per second through ``manager.get_task()`` in the master
process, with ``multiprocessing.managers.BaseManager`` (the server is a
forked Python process) and with ``fastmanager.BaseManager`` (the Rust
server runs in a thread of the master). A measurement, not a test:
pytest does not run it.

    python3 compat-tests/package/master_local_speed.py [--seconds 3] [--runs 3]

Each measurement runs in a fresh interpreter (this script again, with
``--only``), so that one server's threads or children never share a
process with the other's. Prints the best of ``--runs`` for each and the
ratio.
"""
import argparse
import queue
import subprocess
import sys
import time


def measure(which, seconds):
    """Round trips per second of ``get_task().put(x); .get()``."""
    if which == 'fastmanager':
        from fastmanager import BaseManager
    else:
        from multiprocessing.managers import BaseManager

    tasks = queue.Queue()

    class QueueManager(BaseManager):
        pass

    QueueManager.register('get_task', callable=lambda: tasks)
    m = QueueManager(address=('127.0.0.1', 0), authkey=b'speed')
    m.start()
    try:
        task = m.get_task()
        for i in range(200):            # warm up: connection, caches
            task.put(i)
            task.get()
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            for i in range(100):
                task.put(i)
                task.get()
            count += 100
            now = time.perf_counter()
            if now >= deadline:
                return count / (now - start)
    finally:
        m.shutdown()


def run_one(which, seconds):
    out = subprocess.run(
        [sys.executable, __file__, '--only', which, '--seconds', str(seconds)],
        stdout=subprocess.PIPE, universal_newlines=True, check=True,
        timeout=seconds + 60).stdout
    return float(out.split()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--seconds', type=float, default=3.0,
                   help='length of one measurement (default 3)')
    p.add_argument('--runs', type=int, default=3,
                   help='measurements of each, the best is kept (default 3)')
    p.add_argument('--only', choices=('stdlib', 'fastmanager'),
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.only:
        print('%.1f' % measure(args.only, args.seconds))
        return
    best = {}
    for which in ('stdlib', 'fastmanager'):
        best[which] = max(run_one(which, args.seconds)
                          for _ in range(args.runs))
    print('Python %d.%d.%d, master put+get round trips per second after '
          'start(), best of %d x %.0f s:' % (sys.version_info[:3] +
                                             (args.runs, args.seconds)))
    print('  multiprocessing.managers: %10.0f' % best['stdlib'])
    print('  fastmanager:              %10.0f' % best['fastmanager'])
    print('  ratio:                    %10.1fx'
          % (best['fastmanager'] / best['stdlib']))


if __name__ == '__main__':
    main()
