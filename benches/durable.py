"""Round trips (put then get on one named queue) per second with N stock
client processes, against the server in memory and with --data-dir under
--fsync no, everysec and always, and Redis with `appendonly yes` under
`appendfsync everysec` and `always` (RPUSH of the item's pickle, BLPOP and
unpickle, as redis-py users queue tasks), side by side in one run
(README, "Durable data"). redis-server comes from apt (`apt-get install
redis-server`); without it the Redis columns are left out.

    python3 benches/durable.py [--seconds S] [--bin PATH] [--clients 1,4,16]
                               [--modes memory,always,redis-always]

Under `always` it also prints the server's requests per sync (each put
and each get is logged; the server counts its syncs), the size of its
group commits, and the mean time of the server's syncs (`sync_us` in its
closing log line; under `everysec` too).
"""

import argparse
import os
import pickle
import re
import shutil
import subprocess
import tempfile
import time

from roundtrips import drive, manager_client, wait_listening

PORT = 50731


def redis_client(port, seconds, counts, i, start):
    import redis
    r = redis.Redis(host='127.0.0.1', port=port)
    start.wait()
    n, end = 0, time.time() + seconds
    while time.time() < end:
        r.rpush('q', pickle.dumps(('task', n)))
        pickle.loads(r.blpop('q')[1])
        n += 1
    counts[i] = n


def run(binary, mode, n, seconds):
    """Round trips/s, the syncs the server counted and their mean time in
    microseconds (None for Redis and the in-memory server)."""
    data = tempfile.mkdtemp(prefix='fm-durable-bench-')
    target = manager_client
    if mode.startswith('redis-'):
        # A fresh append-only file in the temp dir, no RDB snapshots.
        cmd = ['redis-server', '--port', str(PORT), '--bind', '127.0.0.1', '--dir', data, '--save', '',
               '--appendonly', 'yes', '--appendfsync', mode[len('redis-'):]]
        target = redis_client
    else:
        cmd = [binary, 'serve', '--address', '127.0.0.1:%d' % PORT, '--authkey', 'bench',
               '--register', 'q=Queue']
    if mode not in ('memory',) and not mode.startswith('redis-'):
        cmd += ['--data-dir', data, '--fsync', mode]
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_listening(PORT)
        rate = drive(target, PORT, n, seconds)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data, ignore_errors=True)
    log.seek(0)
    # The log writer's closing line: `data dir log synced and closed
    # syncs=N sync_us=M` (binaries before sync_us: without it).
    text = log.read()
    found = re.search(rb'synced and closed syncs=(\d+)(?: sync_us=(\d+))?', text)
    if mode in ('no', 'everysec', 'always') and not found:
        print('(no sync count in the server log: %r)' % text[-500:])
    if not found:
        return rate, None, None
    return rate, int(found.group(1)), int(found.group(2)) if found.group(2) else None


def fdatasync_ms(samples=200):
    """The disk's sync latency where the data dirs are made: the median
    of appending 200 bytes and fdatasync()ing, as the log writer does."""
    d = tempfile.mkdtemp(prefix='fm-fsync-probe-')
    try:
        fd = os.open(os.path.join(d, 'probe'), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        lat = []
        for _ in range(samples):
            os.write(fd, b'x' * 200)
            t = time.perf_counter()
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t)
        os.close(fd)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    lat.sort()
    return lat[len(lat) // 2] * 1e3, lat[len(lat) // 10] * 1e3, lat[len(lat) * 9 // 10] * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=float, default=2.0)
    ap.add_argument('--bin', default=os.path.join(os.path.dirname(__file__), '..', 'target', 'release', 'fastmanager'))
    ap.add_argument('--clients', default='1,4,16', help='the N to run, comma-separated')
    ap.add_argument('--modes', help='the columns to run, comma-separated (default: all; `memory` always runs first)')
    args = ap.parse_args()
    modes = ['memory', 'no', 'everysec', 'always']
    if shutil.which('redis-server'):
        modes += ['redis-everysec', 'redis-always']
    if args.modes:
        modes = ['memory'] + [m for m in args.modes.split(',') if m != 'memory']
    print('%4s %10s' % ('N', 'memory') + ''.join(' %16s' % m for m in modes[1:]) + '  requests/sync (always)')
    for n in [int(c) for c in args.clients.split(',')]:
        results = {mode: run(args.bin, mode, n, args.seconds) for mode in modes}
        rates = {m: r[0] for m, r in results.items()}
        base = rates['memory']
        line = '%4d %10.0f' % (n, base) + ''.join(' %10.0f %4.2fx' % (rates[m], rates[m] / base) for m in modes[1:])
        rate, syncs, sync_us = results.get('always', (0, None, None))
        if syncs:
            # A round trip is two logged requests (the put and the get).
            line += '  %.1f (%d syncs/s)' % (2 * rate * args.seconds / syncs, syncs / args.seconds)
        means = ['%s %d us' % (m, results[m][2]) for m in ('always', 'everysec') if m in results and results[m][2] is not None]
        if means:
            line += '  mean sync: ' + ', '.join(means)
        print(line, flush=True)
    # Under `always` each put and each get waits for a sync, and a stock
    # client has one request out at a time: N clients make at most N
    # requests per sync, so at most N / (2 * sync time) round trips/s.
    median, p10, p90 = fdatasync_ms()
    print('fdatasync here: median %.2f ms (p10 %.2f, p90 %.2f); `always` ceiling at the median: %s round trips/s' % (
        median, p10, p90, ', '.join('N=%d %.0f' % (n, n / (2 * median / 1e3)) for n in (1, 4, 16))))


if __name__ == '__main__':
    main()
