"""Round trips (put then get on one named queue) per second with N stock
client processes, against the server in memory and with --data-dir under
--fsync no, everysec and always (README, "Durable data"). Redis is not
in this run yet.

    python3 benches/durable.py [--seconds S] [--bin PATH]
"""

import argparse
import multiprocessing
import os
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


def wait_listening(port):
    while True:
        try:
            socket.create_connection(('127.0.0.1', port), 0.2).close()
            return
        except OSError:
            time.sleep(0.01)


def run(binary, mode, n, seconds):
    data = tempfile.mkdtemp(prefix='fm-durable-bench-')
    cmd = [binary, 'serve', '--address', '127.0.0.1:%d' % PORT, '--authkey', 'bench',
           '--register', 'q=Queue']
    if mode != 'memory':
        cmd += ['--data-dir', data, '--fsync', mode]
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        wait_listening(PORT)
        counts = multiprocessing.Array('l', n)
        start = multiprocessing.Event()
        procs = [multiprocessing.Process(target=client, args=(seconds, counts, i, start)) for i in range(n)]
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
    print('%4s %10s %10s %10s %10s' % ('N', 'memory', 'no', 'everysec', 'always'))
    for n in (1, 4, 16):
        rates = {mode: run(args.bin, mode, n, args.seconds) for mode in ('memory', 'no', 'everysec', 'always')}
        base = rates['memory']
        print('%4d %10.0f %4.0f %.2fx %4.0f %.2fx %4.0f %.2fx' % (
            n, base, rates['no'], rates['no'] / base, rates['everysec'], rates['everysec'] / base,
            rates['always'], rates['always'] / base), flush=True)


if __name__ == '__main__':
    main()
