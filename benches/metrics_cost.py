"""What counting costs (issue 17): round trips (put then get on one named
queue) per second with N stock client processes, side by side in one run:

- ``before``: a server built without the counters (``--baseline-bin``,
  e.g. the commit before them built into another target dir), if given;
- ``off``: this server as it runs by default (the counters are always
  on; no metrics endpoint);
- ``metrics``: this server with ``--metrics-address`` and a scraper
  reading ``/metrics`` every ``--scrape`` seconds, and ``fastmanager stat``
  asked as often.

Modes alternate round by round, so drift on a noisy machine spreads over
all of them; the table gives each mode's median and range, and the ratios
of the medians.

    python3 benches/metrics_cost.py [--clients 16] [--rounds 5] [--seconds 4]
                                    [--baseline-bin PATH]
"""

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import threading
import time
import urllib.request
from multiprocessing.managers import BaseManager

PORT = 50741
METRICS_PORT = 50742
HERE = os.path.dirname(os.path.abspath(__file__))


class M(BaseManager):
    pass


M.register('q')


def client(seconds, counts, i, start):
    m = M(address=('127.0.0.1', PORT), authkey=b'bench')
    m.connect()
    q = m.q()
    start.wait()
    n, end = 0, time.time() + seconds
    while time.time() < end:
        q.put(('task', n))
        q.get()
        n += 1
    counts[i] = n


def scrape(binary, every, stop):
    while not stop.wait(every):
        urllib.request.urlopen('http://127.0.0.1:%d/metrics' % METRICS_PORT, timeout=5).read()
        subprocess.run([binary, 'stat', '--address', '127.0.0.1:%d' % PORT, '--authkey', 'bench', '--json'],
                       stdout=subprocess.DEVNULL, check=True)


def run(binary, mode, n, seconds, scrape_every, stat_binary):
    cmd = [binary, 'serve', '--address', '127.0.0.1:%d' % PORT, '--authkey', 'bench', '--register', 'q=Queue']
    if mode == 'metrics':
        cmd += ['--metrics-address', '127.0.0.1:%d' % METRICS_PORT]
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    try:
        while True:
            try:
                socket.create_connection(('127.0.0.1', PORT), 0.2).close()
                break
            except OSError:
                time.sleep(0.01)
        counts = multiprocessing.Array('l', n)
        start = multiprocessing.Event()
        procs = [multiprocessing.Process(target=client, args=(seconds, counts, i, start)) for i in range(n)]
        for p in procs:
            p.start()
        time.sleep(0.3)
        scraper = None
        if mode == 'metrics':
            scraper = threading.Thread(target=scrape, args=(stat_binary, scrape_every, stop))
            scraper.start()
        start.set()
        for p in procs:
            p.join()
        stop.set()
        if scraper:
            scraper.join()
        return sum(counts) / seconds
    finally:
        server.terminate()
        server.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--clients', type=int, default=16)
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--seconds', type=float, default=4.0)
    ap.add_argument('--scrape', type=float, default=1.0, help='seconds between scrapes in the metrics mode')
    ap.add_argument('--bin', default=os.path.join(HERE, '..', 'target', 'release', 'fastmanager'))
    ap.add_argument('--baseline-bin', help='a server built without the counters')
    args = ap.parse_args()
    modes = [('off', args.bin), ('metrics', args.bin)]
    if args.baseline_bin:
        modes.insert(0, ('before', args.baseline_bin))
    rates = {m: [] for m, _ in modes}
    for r in range(args.rounds):
        for mode, binary in modes:
            rates[mode].append(run(binary, mode, args.clients, args.seconds, args.scrape, args.bin))
        print('round %d: %s' % (r + 1, '  '.join('%s %.0f' % (m, rates[m][-1]) for m, _ in modes)), flush=True)
    print('\nN = %d stock clients, %d rounds of %.0f s, scrape every %.1f s' % (
        args.clients, args.rounds, args.seconds, args.scrape))
    print('%8s %10s %10s %10s' % ('mode', 'median/s', 'min', 'max'))
    for mode, _ in modes:
        v = rates[mode]
        print('%8s %10.0f %10.0f %10.0f' % (mode, statistics.median(v), min(v), max(v)))
    off = statistics.median(rates['off'])
    print('metrics / off: %.3f' % (statistics.median(rates['metrics']) / off))
    if args.baseline_bin:
        print('off / before: %.3f' % (off / statistics.median(rates['before'])))
        print('metrics / before: %.3f' % (statistics.median(rates['metrics']) / statistics.median(rates['before'])))


if __name__ == '__main__':
    main()
