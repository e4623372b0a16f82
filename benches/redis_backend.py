"""Round trips through Redis-backed gateways (issue 18), side by side.

    python3 benches/redis_backend.py [--seconds 3] [--clients 1,4,16] [--wait-replicas 1]
    python3 benches/redis_backend.py --rounds 5 [--baseline 'OLD_BINARY [FLAGS]'] [--clients 1,4,16]

Starts a local 6-node Redis Cluster (scripts/redis-cluster.sh, state in a
temporary directory), then for each N runs N stock client processes for
--seconds, each doing put+get pairs on one shared queue, against:

  gateway x1   fastmanager serve --backend redis://... (the named queue in Redis)
  gateway x2   two such gateways, the clients split between them
  redis-py     LPUSH + BRPOP on one list of the same cluster (redis-py's
               RedisCluster client)
  embedded     fastmanager serve without --backend (the queue in the server)

(and with --gateway-threads N, one gateway with --threads N; with
--wait-replicas N, one gateway with --backend-wait-replicas N) and prints
calls per second (each put and each get is one call, one round
trip). Then the wake-up latency: a client of gateway 2 blocked in get(),
a client of gateway 1 puts; the time from the put's call to the get's
return, median and 90th percentile of 50. Needs redis-server and redis-py (pip install redis). Not a test: the
figures depend on the machine; README quotes one run.

With --rounds R it instead alternates one gateway and redis-py (and, with
--baseline BINARY, a gateway run by an older build or with other flags) R times per N, so
that drift in a noisy machine hits all alike, and prints the medians and
the per-round ratios to redis-py (and each gateway's CPU per call).
"""
import argparse
import multiprocessing as mp
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / 'scripts' / 'redis-cluster.sh'
BIN = os.environ.get('FASTMANAGER_BIN') or str(REPO / 'target' / 'release' / 'fastmanager')
# REDIS_CLUSTER_PORT (scripts/redis-cluster.sh) moves the cluster's ports.
PORT = int(os.environ.get('REDIS_CLUSTER_PORT', '7101'))
SEEDS = 'redis://' + ','.join('127.0.0.1:%d' % (PORT + i) for i in range(3))
AUTHKEY = b'bench'


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_server(*extra, binary=BIN):
    port = free_port()
    proc = subprocess.Popen([binary, 'serve', '--address', '127.0.0.1:%d' % port,
                             '--authkey', AUTHKEY.decode(), '--register', 'tasks=Queue', *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(('127.0.0.1', port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    raise SystemExit('server did not start')


def manager_client(port, seconds, start, out):
    from multiprocessing.managers import BaseManager

    class M(BaseManager):
        pass
    M.register('tasks')
    m = M(('127.0.0.1', port), authkey=AUTHKEY)
    m.connect()
    q = m.tasks()
    q.put(0)
    q.get()
    start.wait()
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        q.put(n)
        q.get()
        n += 2
    out.put(n)


def redis_client(_port, seconds, start, out):
    from redis.cluster import RedisCluster
    r = RedisCluster(host='127.0.0.1', port=PORT)
    key = '{bench}:list'
    start.wait()
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        r.lpush(key, n)
        r.brpop(key, timeout=5)
        n += 2
    out.put(n)


def cpu_seconds(pid):
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def run(target, ports, clients, seconds, cpu_of=None):
    """Calls/s of `clients` processes for `seconds`; with `cpu_of` (a
    server's pid), also that server's CPU microseconds per call."""
    start, out = mp.Event(), mp.Queue()
    procs = [mp.Process(target=target, args=(ports[i % len(ports)], seconds, start, out))
             for i in range(clients)]
    for p in procs:
        p.start()
    time.sleep(0.5 + 0.05 * clients)
    cpu = cpu_of and cpu_seconds(cpu_of)
    start.set()
    total = sum(out.get(timeout=seconds + 60) for _ in procs)
    if cpu_of:
        cpu = cpu_seconds(cpu_of) - cpu
    for p in procs:
        p.join()
    if cpu_of:
        return total / seconds, cpu / max(total, 1) * 1e6
    return total / seconds


def wake_latency(port_a, port_b, rounds=50):
    import statistics
    import threading
    from multiprocessing.managers import BaseManager

    class M(BaseManager):
        pass
    M.register('tasks')
    ms = [M(('127.0.0.1', p), authkey=AUTHKEY) for p in (port_a, port_b)]
    for m in ms:
        m.connect()
    qa = ms[0].tasks()
    qb = ms[1].tasks()
    waits = []
    for _ in range(rounds):
        got = []
        t = threading.Thread(target=lambda: got.append((qb.get(), time.perf_counter())))
        t.start()
        time.sleep(0.05)
        sent = time.perf_counter()
        qa.put('x')
        t.join()
        waits.append(got[0][1] - sent)
    waits.sort()
    return statistics.median(waits), waits[int(len(waits) * 0.9)]


def alternate(args, ns, port, pid, baseline_port=None, baseline_pid=None):
    import statistics

    def summary(name, runs, rp):
        calls = [c for c, _ in runs]
        cpu = [u for _, u in runs]
        ratios = sorted(g / r for g, r in zip(calls, rp))
        return '%s %6.0f (%.0f-%.0f), %s/redis-py per round: median %.2fx (%.2fx-%.2fx); ' \
            'its CPU per call %.0f us (%.0f-%.0f)' % (
                name, statistics.median(calls), min(calls), max(calls), name,
                statistics.median(ratios), ratios[0], ratios[-1],
                statistics.median(cpu), min(cpu), max(cpu))

    print('alternating rounds (%d x %.0f s), calls/s: median (range)' % (args.rounds, args.seconds))
    for n in ns:
        gw, base, rp = [], [], []
        for _ in range(args.rounds):
            gw.append(run(manager_client, [port], n, args.seconds, cpu_of=pid))
            if baseline_port:
                base.append(run(manager_client, [baseline_port], n, args.seconds, cpu_of=baseline_pid))
            rp.append(run(redis_client, [0], n, args.seconds))
        print('N=%-3d redis-py %6.0f (%.0f-%.0f)' % (n, statistics.median(rp), min(rp), max(rp)), flush=True)
        print('      ' + summary('gateway x1', gw, rp), flush=True)
        if baseline_port:
            print('      ' + summary('baseline', base, rp), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=float, default=3.0)
    ap.add_argument('--clients', default='1,4,16')
    ap.add_argument('--gateway-threads', type=int,
                    help='also run one gateway with --threads N')
    ap.add_argument('--wait-replicas', type=int,
                    help='also run one gateway with --backend-wait-replicas N')
    ap.add_argument('--rounds', type=int,
                    help='instead: alternate one gateway and redis-py ROUNDS times per N '
                         '(drift in the machine then hits both alike) and print the medians')
    ap.add_argument('--baseline', metavar='BINARY',
                    help='with --rounds: also alternate a gateway run by this fastmanager '
                         'binary (a build of an earlier commit), with any flags after it '
                         '("target/release/fastmanager --busy-poll-us 0")')
    args = ap.parse_args()
    ns = [int(n) for n in args.clients.split(',')]
    env = dict(os.environ, REDIS_CLUSTER_DIR=tempfile.mkdtemp(prefix='fm-redis-bench-'))
    subprocess.run([str(SCRIPT), 'start'], env=env, check=True)
    servers = []
    try:
        gw = [start_server('--backend', SEEDS) for _ in range(2)]
        embedded = start_server()
        servers = [p for p, _ in gw] + [embedded[0]]
        if args.rounds:
            baseline = None
            if args.baseline:
                binary, *extra = shlex.split(args.baseline)
                baseline = start_server('--backend', SEEDS, *extra, binary=binary)
                servers.append(baseline[0])
            return alternate(args, ns, gw[0][1], gw[0][0].pid, baseline and baseline[1],
                             baseline and baseline[0].pid)
        systems = []
        if args.gateway_threads:
            t = start_server('--backend', SEEDS, '--threads', str(args.gateway_threads))
            servers.append(t[0])
            systems.append(('gw --threads %d' % args.gateway_threads, manager_client, [t[1]]))
        if args.wait_replicas:
            w = start_server('--backend', SEEDS, '--backend-wait-replicas', str(args.wait_replicas))
            servers.append(w[0])
            systems.append(('gw WAIT %d' % args.wait_replicas, manager_client, [w[1]]))
        systems += [
            ('gateway x1', manager_client, [gw[0][1]]),
            ('gateway x2', manager_client, [gw[0][1], gw[1][1]]),
            ('embedded', manager_client, [embedded[1]]),
        ]
        try:
            import redis  # noqa: F401
            systems.insert(-1, ('redis-py', redis_client, [0]))
        except ImportError:
            print('redis-py is not installed (pip install redis): its row is left out')
        print('calls/s (put+get pairs on one queue, %.0f s per cell)' % args.seconds)
        print('%-12s' % 'N' + ''.join('%12d' % n for n in ns))
        for name, target, ports in systems:
            cells = [run(target, ports, n, args.seconds) for n in ns]
            print('%-12s' % name + ''.join('%12.0f' % c for c in cells), flush=True)
        median, p90 = wake_latency(gw[0][1], gw[1][1])
        print('wake-up across gateways (get blocked on 2, put on 1): '
              'median %.2f ms, p90 %.2f ms' % (median * 1e3, p90 * 1e3))
    finally:
        for p in servers:
            p.terminate()
            p.wait(5)
        subprocess.run([str(SCRIPT), 'stop'], env=env)


if __name__ == '__main__':
    sys.exit(main())
