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
of the medians. Beside throughput it gives the server process's CPU time
per round trip (user + system, from /proc), which what else runs on the
machine disturbs far less than it disturbs throughput.

    python3 benches/metrics_cost.py [--clients 16] [--rounds 5] [--seconds 4]
                                    [--baseline-bin PATH]
"""

import argparse
import os
import statistics
import subprocess
import threading
import time
import urllib.request

from roundtrips import drive, manager_client, wait_listening

PORT = 50741
METRICS_PORT = 50742
HERE = os.path.dirname(os.path.abspath(__file__))


def scrape(binary, every, stop):
    while not stop.wait(every):
        urllib.request.urlopen('http://127.0.0.1:%d/metrics' % METRICS_PORT, timeout=5).read()
        subprocess.run([binary, 'stat', '--address', '127.0.0.1:%d' % PORT, '--authkey', 'bench', '--json'],
                       stdout=subprocess.DEVNULL, check=True)


def cpu_seconds(pid):
    """User + system CPU time of process `pid` so far."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def run(binary, mode, n, seconds, scrape_every, stat_binary):
    """Round trips per second, and the server's CPU µs per round trip."""
    cmd = [binary, 'serve', '--address', '127.0.0.1:%d' % PORT, '--authkey', 'bench', '--register', 'q=Queue']
    if mode == 'metrics':
        cmd += ['--metrics-address', '127.0.0.1:%d' % METRICS_PORT]
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    try:
        wait_listening(PORT)
        cpu_before = cpu_seconds(server.pid)
        scraper = None
        if mode == 'metrics':
            scraper = threading.Thread(target=scrape, args=(stat_binary, scrape_every, stop))
        rate = drive(manager_client, PORT, n, seconds, started=scraper.start if scraper else None)
        stop.set()
        if scraper:
            scraper.join()
        cpu = cpu_seconds(server.pid) - cpu_before
        return rate, cpu * 1e6 / max(1, rate * seconds)
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
    cpu = {m: [] for m, _ in modes}
    for r in range(args.rounds):
        for mode, binary in modes:
            rate, us = run(binary, mode, args.clients, args.seconds, args.scrape, args.bin)
            rates[mode].append(rate)
            cpu[mode].append(us)
        print('round %d: %s' % (r + 1, '  '.join('%s %.0f/s %.2fus' % (m, rates[m][-1], cpu[m][-1]) for m, _ in modes)),
              flush=True)
    print('\nN = %d stock clients, %d rounds of %.0f s, scrape every %.1f s' % (
        args.clients, args.rounds, args.seconds, args.scrape))
    print('%8s %10s %10s %10s %14s %8s %8s' % ('mode', 'median/s', 'min', 'max', 'cpu us/trip', 'min', 'max'))
    for mode, _ in modes:
        v, c = rates[mode], cpu[mode]
        print('%8s %10.0f %10.0f %10.0f %14.2f %8.2f %8.2f' % (
            mode, statistics.median(v), min(v), max(v), statistics.median(c), min(c), max(c)))
    med = {m: (statistics.median(rates[m]), statistics.median(cpu[m])) for m, _ in modes}
    pairs = [('metrics', 'off')] + ([('off', 'before'), ('metrics', 'before')] if args.baseline_bin else [])
    for a, b in pairs:
        print('%s / %s: throughput %.3f, server cpu per round trip %.3f' % (
            a, b, med[a][0] / med[b][0], med[a][1] / med[b][1]))


if __name__ == '__main__':
    main()
