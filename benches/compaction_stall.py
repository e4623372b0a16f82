"""The longest stall a client sees while the server compacts a large log
(README, "Durable data"; issue 16): a data dir with N queued items on
queue `q` (benches/durable_fill.rs), a loader that puts and gets 64 KiB
items on queue `w` until the log passes twice the live data and the
compactor rewrites it, and a probe client timing put+get round trips on
queue `p` throughout. Prints the probe's round-trip times during the
compaction and outside it.

    python3 benches/compaction_stall.py [--items N] [--fsync always|everysec|no] [--bin PATH]

A measurement, not a test: nothing here asserts a time.
"""

import argparse
import datetime
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from multiprocessing.managers import BaseManager

from durable import wait_listening

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
PORT = 50733


class M(BaseManager):
    pass


for name in ('q', 'w', 'p'):
    M.register(name)


def connect():
    m = M(address=('127.0.0.1', PORT), authkey=b'bench')
    m.connect()
    return m


def probe(stop, out):
    p = connect().p()
    times = []
    while not stop.is_set():
        t0 = time.time()
        p.put(('probe', len(times)))
        p.get()
        times.append((t0, time.time() - t0))
    out.put(times)


def loader(stop):
    w = connect().w()
    blob = b'x' * (64 << 10)
    while not stop.is_set():
        w.put(blob)
        w.get()


def compactions(log):
    """(end time, ms, the log writer's switch ms) of each compaction the
    server logged."""
    out = []
    with open(log, errors='replace') as f:
        for line in f:
            m = re.match(r'(\S+)Z .*data dir log compacted.* switch_ms=(\d+) ms=(\d+)', line)
            if m:
                end = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
                out.append((end, int(m.group(3)), int(m.group(2))))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--items', type=int, default=1_000_000)
    ap.add_argument('--fsync', default='always')
    ap.add_argument('--bin', default=os.path.join(ROOT, 'target', 'release', 'fastmanager'))
    ap.add_argument('--timeout', type=float, default=300)
    args = ap.parse_args()
    subprocess.run(['cargo', 'build', '--release', '--example', 'durable_fill'], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = tempfile.mkdtemp(prefix='fm-compact-stall-')
    data, log = os.path.join(tmp, 'data'), os.path.join(tmp, 'server.log')
    subprocess.run([os.path.join(ROOT, 'target', 'release', 'examples', 'durable_fill'), data, str(args.items)],
                   check=True, stdout=subprocess.DEVNULL)
    cmd = [args.bin, 'serve', '--address', '127.0.0.1:%d' % PORT, '--authkey', 'bench', '--register', 'q=Queue',
           '--register', 'w=Queue', '--register', 'p=Queue', '--data-dir', data, '--fsync', args.fsync]
    with open(log, 'w') as f:
        server = subprocess.Popen(cmd, stderr=f)
    try:
        wait_listening(PORT)
        print('data dir: %d items, log %d bytes; --fsync %s' % (args.items, os.path.getsize(os.path.join(data, 'log')), args.fsync))
        stop, out = multiprocessing.Event(), multiprocessing.Queue()
        procs = [multiprocessing.Process(target=probe, args=(stop, out)),
                 multiprocessing.Process(target=loader, args=(stop,))]
        for p in procs:
            p.start()
        deadline = time.time() + args.timeout
        while not compactions(log) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        stop.set()
        times = out.get()
        for p in procs:
            p.join()
        done = compactions(log)
        if not done:
            print('no compaction within %.0f s' % args.timeout)
            return
        end, ms, switch_ms = done[0]
        start = end - ms / 1000
        during = [d for t, d in times if t + d >= start and t <= end]
        outside = [d for t, d in times if t + d < start or t > end]
        print('compaction of %d items: %d ms, of which the log writer switching files %d ms (server log)'
              % (args.items, ms, switch_ms))
        for label, ds in (('during', during), ('outside', outside)):
            if ds:
                q = statistics.quantiles(ds, n=100) if len(ds) > 1 else [ds[0]] * 99
                print('probe round trips %-7s: %6d, median %.2f ms, p99 %.2f ms, longest %.1f ms'
                      % (label, len(ds), statistics.median(ds) * 1e3, q[98] * 1e3, max(ds) * 1e3))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
