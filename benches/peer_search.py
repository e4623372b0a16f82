#!/usr/bin/env python3
"""Does finding a new TCP client's process stall the other clients?

A TCP client's process is found by searching /proc/*/fd for its socket
(src/server/identify.rs). This starts IDLE idle processes (`sleep`), a
fastmanager server, one stock client doing put+get round trips on a
registered queue (each timed), and meanwhile forks short-lived client
processes that each connect and create one proxy (a new process, so the
server's cache of recent pids misses and all of /proc is searched). It
reports the round trips' p50/p99/max during the churn and how long a new
proxy takes, for each binary given, with 0 and IDLE idle processes.

    python3 benches/peer_search.py --bin new=target/release/fastmanager \
        --bin old=/tmp/old-fm/target/release/fastmanager

Every process it starts is killed when it ends, also on failure.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

AUTHKEY = b'peer-search'

# The round-trip client: a stock BaseManager proxy, put+get on `bench`,
# each round trip timed; prints the latencies (ns) as JSON.
RT_CLIENT = r'''
import json, sys, time
from multiprocessing.managers import BaseManager
class M(BaseManager): pass
M.register('bench')
m = M(address=('127.0.0.1', int(sys.argv[1])), authkey=sys.argv[2].encode())
m.connect()
q = m.bench()
q.put(0); q.get()
print('ready', flush=True)
end = time.perf_counter() + float(sys.argv[3])
lat = []
while time.perf_counter() < end:
    t = time.perf_counter_ns()
    q.put(1); q.get()
    lat.append(time.perf_counter_ns() - t)
print(json.dumps(lat), flush=True)
'''

# The churn: forks a new process per proxy; each connects, creates a
# proxy of `bench` (its `create` and the proxy's first connection make the
# server search for it) and reports the time taken (ns) on a pipe.
CHURN = r'''
import json, os, sys, time
from multiprocessing.managers import BaseManager
class M(BaseManager): pass
M.register('bench')
port, key, seconds = int(sys.argv[1]), sys.argv[2].encode(), float(sys.argv[3])
times = []
end = time.perf_counter() + seconds
while time.perf_counter() < end:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        m = M(address=('127.0.0.1', port), authkey=key)
        m.connect()
        t = time.perf_counter_ns()
        q = m.bench()
        q.qsize()
        os.write(w, str(time.perf_counter_ns() - t).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 64)
    os.close(r)
    os.waitpid(pid, 0)
    if data:
        times.append(int(data))
print(json.dumps(times), flush=True)
'''

started = []  # Popen objects, each the leader of its own process group


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, start_new_session=True, **kw)
    started.append(p)
    return p


def kill_all():
    for p in started:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    started.clear()


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def start_idle(n):
    """n `sleep` processes in one process group (one killpg ends them)."""
    if n == 0:
        return None
    p = spawn(['bash', '-c', 'for ((i=0;i<%d;i++)); do sleep 600 & done; wait' % n],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        count = sum(1 for d in os.listdir('/proc') if d.isdigit())
        if count >= n:
            return p
        time.sleep(0.2)
    raise SystemExit('could not start %d idle processes' % n)


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float('nan')


def measure(binary, seconds, churners):
    port = free_port()
    server = spawn([binary, 'serve', '--address', '127.0.0.1:%d' % port,
                    '--authkey', AUTHKEY.decode(), '--register', 'bench=Queue'],
                   env=dict(os.environ, RUST_LOG='warn'), stdin=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(('127.0.0.1', port), 1).close()
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit('%s did not listen' % binary)
            time.sleep(0.02)
    args = [str(port), AUTHKEY.decode(), str(seconds)]
    rt = spawn([sys.executable, '-c', RT_CLIENT] + args, stdout=subprocess.PIPE, text=True)
    if rt.stdout.readline().strip() != 'ready':
        raise SystemExit('the round-trip client did not start')
    churn = [spawn([sys.executable, '-c', CHURN] + args, stdout=subprocess.PIPE, text=True)
             for _ in range(churners)]
    lat = json.loads(rt.stdout.read())
    created = []
    for c in churn:
        created += json.loads(c.stdout.read() or '[]')
    for p in [rt] + churn + [server]:
        p.kill()
        p.wait()
        started.remove(p)
    us = lambda ns: ns / 1000.0
    return {'round_trips': len(lat), 'rt_p50_us': us(pct(lat, 0.5)),
            'rt_p99_us': us(pct(lat, 0.99)), 'rt_max_us': us(max(lat)),
            'proxies': len(created), 'create_p50_ms': pct(created, 0.5) / 1e6,
            'create_p99_ms': pct(created, 0.99) / 1e6}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--bin', action='append', required=True, metavar='NAME=PATH')
    ap.add_argument('--idle', type=int, default=5000)
    ap.add_argument('--seconds', type=float, default=4.0)
    ap.add_argument('--churners', type=int, default=1)
    a = ap.parse_args()
    bins = [b.split('=', 1) for b in a.bin]
    rows = []
    try:
        for idle in (0, a.idle):
            group = start_idle(idle)
            procs = sum(1 for d in os.listdir('/proc') if d.isdigit())
            for name, path in bins:
                r = measure(path, a.seconds, a.churners)
                r.update(server=name, idle=idle, processes=procs)
                rows.append(r)
                print(json.dumps(r), flush=True)
            if group is not None:
                os.killpg(group.pid, signal.SIGKILL)
                group.wait()
                started.remove(group)
    finally:
        kill_all()
    print('\n| server | idle processes | round trips | rt p50 µs | rt p99 µs | rt max µs '
          '| new proxies | create p50 ms | create p99 ms |')
    print('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        print('| %(server)s | %(idle)d | %(round_trips)d | %(rt_p50_us).0f | %(rt_p99_us).0f '
              '| %(rt_max_us).0f | %(proxies)d | %(create_p50_ms).2f | %(create_p99_ms).2f |' % r)


if __name__ == '__main__':
    try:
        main()
    except BaseException:
        kill_all()
        raise
