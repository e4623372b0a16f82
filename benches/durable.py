"""Round trips (put then get on one named queue) per second with N stock
client processes, against the server in memory and with --data-dir under
--fsync no, everysec and always, and Redis with `appendonly yes` under
`appendfsync everysec` and `always` (RPUSH of the item's pickle, BLPOP and
unpickle, as redis-py users queue tasks), side by side in one run
(README, "Durable data"). redis-server comes from apt (`apt-get install
redis-server`); without it the Redis columns are left out.

    python3 benches/durable.py [--seconds S] [--bin PATH]
"""

import argparse
import multiprocessing
import os
import pickle
import shutil
import socket
import subprocess
import tempfile
import time
from multiprocessing.managers import BaseManager

PORT = 50731


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


def redis_client(seconds, counts, i, start):
    import redis
    r = redis.Redis(host='127.0.0.1', port=PORT)
    start.wait()
    n, end = 0, time.time() + seconds
    while time.time() < end:
        r.rpush('q', pickle.dumps(('task', n)))
        pickle.loads(r.blpop('q')[1])
        n += 1
    counts[i] = n


def wait_listening(port):
    while True:
        try:
            socket.create_connection(('127.0.0.1', port), 0.2).close()
            return
        except OSError:
            time.sleep(0.01)


def run(binary, mode, n, seconds):
    data = tempfile.mkdtemp(prefix='fm-durable-bench-')
    target = client
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
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(PORT)
        counts = multiprocessing.Array('l', n)
        start = multiprocessing.Event()
        procs = [multiprocessing.Process(target=target, args=(seconds, counts, i, start)) for i in range(n)]
        for p in procs:
            p.start()
        time.sleep(0.3)
        start.set()
        for p in procs:
            p.join()
        return sum(counts) / seconds
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=float, default=2.0)
    ap.add_argument('--bin', default=os.path.join(os.path.dirname(__file__), '..', 'target', 'release', 'fastmanager'))
    args = ap.parse_args()
    modes = ['memory', 'no', 'everysec', 'always']
    if shutil.which('redis-server'):
        modes += ['redis-everysec', 'redis-always']
    print('%4s %10s' % ('N', 'memory') + ''.join(' %16s' % m for m in modes[1:]))
    for n in (1, 4, 16):
        rates = {mode: run(args.bin, mode, n, args.seconds) for mode in modes}
        base = rates['memory']
        print('%4d %10.0f' % (n, base) + ''.join(' %10.0f %4.2fx' % (rates[m], rates[m] / base) for m in modes[1:]),
              flush=True)


if __name__ == '__main__':
    main()
