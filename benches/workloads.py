"""The workloads (a) to (f): each starts a fresh server of one system,
drives it with driver.py client processes, and returns its figures as
``{(workload, case, metric): value}``.

Every timed figure is measured between the ``GO`` sent to clients that
have already connected and warmed up, and the end of the run, so Python
start-up and imports are not counted. Server CPU is utime+stime from
/proc/PID/stat over that window; memory is VmRSS.
"""
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from systems import FLOORS, BenchError, Server, loadgen_bin

HERE = Path(__file__).resolve().parent
DRIVER = HERE / 'driver.py'
RESULT_MARK = 'FMRESULT '


# --------------------------------------------------------------------------
# Client processes

class Driver:
    """One driver.py process, spoken to over its stdin/stdout."""

    _seq = 0

    def __init__(self, servers, mode, args, workdir):
        Driver._seq += 1
        self.name = '%s-%s-%d' % ('+'.join(s.name for s in servers), mode,
                                  Driver._seq)
        self.err = Path(workdir) / (self.name + '.err')
        cmd = [sys.executable, str(DRIVER), mode] + \
            [a for s in servers for a in s.driver_args()] + \
            [str(a) for a in args]
        with open(self.err, 'wb') as err:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=err, env=dict(os.environ, PYTHONDONTWRITEBYTECODE='1'))
        self.buf = b''

    def readline(self, deadline):
        """The next stdout line, or BenchError at the deadline / on exit."""
        fd = self.proc.stdout.fileno()
        while b'\n' not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise BenchError('%s: no answer in time\n%s'
                                 % (self.name, self.stack()))
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.proc.wait(5)
                    raise BenchError('%s exited with %s\n%s'
                                     % (self.name, self.proc.returncode,
                                        self.stderr_tail()))
                self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return line.decode('utf-8', 'replace')

    def expect_ready(self, deadline):
        line = self.readline(deadline)
        if line != 'READY':
            raise BenchError('%s said %r, not READY' % (self.name, line))

    def send(self, text):
        self.proc.stdin.write(text.encode() + b'\n')
        self.proc.stdin.flush()

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def result(self, deadline):
        while True:
            line = self.readline(deadline)
            if line.startswith(RESULT_MARK):
                return json.loads(line[len(RESULT_MARK):])

    def stack(self):
        """Where the (hung) client is: its faulthandler dump on SIGUSR1."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.3)
        return self.stderr_tail()

    def stderr_tail(self, n=1500):
        try:
            return self.err.read_text(errors='replace')[-n:]
        except OSError:
            return ''

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.close_stdin()
        self.proc.stdout.close()


class Run:
    """Clients of one measurement: start them all, wait until every one is
    READY, say GO, time the window, collect the results."""

    def __init__(self, server, workdir, timeout):
        self.server, self.workdir, self.timeout = server, workdir, timeout
        self.drivers = []

    def add(self, mode, *args):
        d = Driver([self.server], mode, args, self.workdir)
        self.drivers.append(d)
        return d

    def go(self, duration=0.0):
        """Returns (results, server CPU seconds, wall seconds). With a
        duration the window is that long; without, it lasts until every
        client has finished."""
        deadline = time.time() + self.timeout
        for d in self.drivers:
            d.expect_ready(deadline)
        cpu0, t0 = self.server.cpu_seconds(), time.perf_counter()
        for d in self.drivers:
            d.send('GO %r' % duration)
        if duration:
            time.sleep(duration)
            cpu1, wall = self.server.cpu_seconds(), time.perf_counter() - t0
        results = [d.result(deadline + duration) for d in self.drivers]
        if not duration:
            cpu1, wall = self.server.cpu_seconds(), time.perf_counter() - t0
        if not self.server.alive():
            raise BenchError('%s died:\n%s' % (self.server.name,
                                               self.server.log_tail()))
        return results, cpu1 - cpu0, wall

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for d in self.drivers:
            d.kill()


def percentile(sorted_values, q):
    if not sorted_values:
        return float('nan')
    i = min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


# --------------------------------------------------------------------------
# The workloads. Each: (name, prefix, cfg, workdir) -> {key: value}

def roundtrip_figures(server, cfg, workdir, n, payload=0, case=None,
                      workload='roundtrip'):
    """N new clients doing put+get on one shared queue for cfg.duration."""
    with Run(server, workdir, cfg.timeout) as run:
        for _ in range(n):
            run.add('roundtrip', '--payload', payload)
        results, cpu, wall = run.go(cfg.duration)
    return roundtrip_result(server, results, cpu, wall, case or 'N=%d' % n,
                            workload, payload)


def roundtrip_result(server, results, cpu, wall, case, workload='roundtrip',
                     payload=0):
    ops = sum(r['ops'] for r in results)
    if not ops:
        raise BenchError('%s: no round trip completed' % server.name)
    lat = sorted(v for r in results for v in r['lat_us'])
    out = {
        (workload, case, 'ops_s'): ops / wall,
        (workload, case, 'p50_us'): percentile(lat, 0.50),
        (workload, case, 'p99_us'): percentile(lat, 0.99),
        (workload, case, 'cpu_ms_per_1k'): cpu * 1e3 / (ops / 1e3),
        # How many cores the server kept busy: a multi-threaded server
        # may use more than one, so CPU per op alone does not say it.
        (workload, case, 'cores'): cpu / wall,
    }
    if payload:
        # Each op moves the payload in (put) and out (get); MB/s counts
        # items through the queue: payload bytes x ops per second.
        out[(workload, case, 'mb_s')] = payload * ops / wall / 1e6
    return out


class Pool:
    """max(N) round-trip clients started once and connected to every
    system's server: spawning 64 Python processes per measurement would
    cost more than the measurements. The first N of them run each figure.
    private: each client on a queue of its own, not the shared one."""

    def __init__(self, servers, size, cfg, workdir, workload='roundtrip',
                 private=False):
        self.servers, self.cfg, self.workload = servers, cfg, workload
        args = ['--private'] if private else []
        self.drivers = [Driver(servers, 'pool', args, workdir)
                        for _ in range(size)]
        deadline = time.time() + cfg.timeout
        try:
            for d in self.drivers:
                d.expect_ready(deadline)
        except BenchError:
            self.close()
            raise

    def measure(self, index, n):
        server, duration = self.servers[index], self.cfg.duration
        drivers = self.drivers[:n]
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        for d in drivers:
            d.send('GO %d %r' % (index, duration))
        time.sleep(duration)
        cpu, wall = server.cpu_seconds() - cpu0, time.perf_counter() - t0
        deadline = time.time() + self.cfg.timeout
        results = [d.result(deadline) for d in drivers]
        return roundtrip_result(server, results, cpu, wall, 'N=%d' % n,
                                self.workload)

    def close(self):
        for d in self.drivers:
            d.kill()


def s_roundtrip(names, prefixes, cfg, workdir, record):
    """(a) on the one shared queue ``bench``."""
    pool_session(names, prefixes, cfg, workdir, record, cfg.clients,
                 'roundtrip', private=False)


def s_roundtrip_private(names, prefixes, cfg, workdir, record):
    """(a) with a queue of its own per client (``m.Queue()``)."""
    pool_session(names, prefixes, cfg, workdir, record, cfg.private_clients,
                 'roundtrip_private', private=True)


def pool_session(names, prefixes, cfg, workdir, record, clients, workload,
                 private):
    """Round trips interleaved within each N: every system in turn
    (rotated at each repeat), all servers up and all clients connected
    throughout. A failed measurement is recorded and the pool started
    afresh, with that system's server restarted."""
    servers = {}
    pool = None
    try:
        for name in names:
            servers[name] = Server(name, prefixes[name], workdir).start()
        for r in range(cfg.repeats):
            order = names[r % len(names):] + names[:r % len(names)]
            for n in clients:
                for name in order:
                    if pool is None:
                        pool = Pool([servers[x] for x in names],
                                    max(clients), cfg, workdir, workload,
                                    private)
                    try:
                        figs = pool.measure(names.index(name), n)
                    except BenchError as e:
                        record(name, r, None, e)
                        pool.close()
                        pool = None
                        servers[name].stop()
                        servers[name] = Server(name, prefixes[name],
                                               workdir).start()
                        continue
                    record(name, r, figs, None)
    finally:
        if pool is not None:
            pool.close()
        for s in servers.values():
            s.stop()


def w_master_worker(name, prefix, cfg, workdir):
    tasks, workers = cfg.tasks, cfg.workers
    share = [tasks // workers + (1 if i < tasks % workers else 0)
             for i in range(workers)]
    with Server(name, prefix, workdir).start() as server, \
            Run(server, workdir, cfg.timeout) as run:
        master = run.add('master', '--count', tasks)
        for k in share:
            run.add('worker', '--count', k)
        results, cpu, wall = run.go()
    seconds = results[run.drivers.index(master)]['seconds']
    case = 'W=%d' % workers
    return {('master_worker', case, 'tasks_s'): tasks / seconds,
            ('master_worker', case, 'cpu_ms_per_1k'): cpu * 1e3 /
            (tasks / 1e3)}


def w_payload(name, prefix, cfg, workdir):
    out = {}
    for size in cfg.payloads:
        # The floor answers a get with a payload of this size.
        with Server(name, prefix, workdir, payload_bytes=size).start() as s:
            figs = roundtrip_figures(s, cfg, workdir, 1, payload=size,
                                     case=human_bytes(size),
                                     workload='payload')
        out.update({k: v for k, v in figs.items()
                    if k[2] in ('mb_s', 'cpu_ms_per_1k')})
    return out


def w_churn(name, prefix, cfg, workdir):
    out = {}
    with Server(name, prefix, workdir).start() as server:
        for kind in ('dict', 'Queue'):
            with Run(server, workdir, cfg.timeout) as run:
                run.add('churn', '--kind', kind)
                results, cpu, wall = run.go(cfg.duration)
            ops = results[0]['ops']
            out[('churn', kind, 'proxies_s')] = ops / wall
    return out


def w_idle(name, prefix, cfg, workdir):
    """k idle connections held by one client process (handshake and
    accept_connection done, as a proxy's connection between calls): the
    server's RSS per connection, and round trips of N=4 clients beside."""
    out = {}
    for k in cfg.idle:
        with Server(name, prefix, workdir).start() as server:
            rss0 = server.rss_bytes()
            holder = Driver([server], 'idle', ['--count', k], workdir)
            try:
                holder.expect_ready(time.time() + cfg.timeout)
                time.sleep(0.2)
                rss1 = server.rss_bytes()
                figs = roundtrip_figures(server, cfg, workdir, 4)
            finally:
                holder.close_stdin()
                holder.kill()
        case = '%d idle' % k
        out[('idle', case, 'rss_per_conn_b')] = (rss1 - rss0) / k
        out[('idle', case, 'ops_s_N=4')] = figs[('roundtrip', 'N=4', 'ops_s')]
    return out


def w_fill(name, prefix, cfg, workdir):
    items, fillers = cfg.items, 2
    with Server(name, prefix, workdir).start() as server:
        # Connections first, so their cost is not counted as items'.
        with Run(server, workdir, cfg.timeout) as run:
            for i in range(fillers):
                run.add('fill', '--count', items // fillers)
            deadline = time.time() + cfg.timeout
            for d in run.drivers:
                d.expect_ready(deadline)
            rss0 = server.rss_bytes()
            for d in run.drivers:
                d.send('GO')
            for d in run.drivers:
                d.result(deadline)
            rss1 = server.rss_bytes()
    total = items // fillers * fillers
    return {('fill', '%d items' % total, 'bytes_per_item'):
            (rss1 - rss0) / total}


def w_loadgen(name, prefix, cfg, workdir):
    """Round trips driven by the Rust load generator (examples/loadgen.rs,
    put+get on the registered queue `bench`, one thread per connection),
    to see the servers without the Python clients' cost. Skipped unless
    that example is built. It prints one JSON line: ``ops_per_sec`` (single
    requests) and ``latency_us`` percentiles."""
    exe = loadgen_bin()
    # The floor answers every request with one fixed reply, `create`
    # included, so a real client cannot obtain a proxy from it.
    if name == 'redis' or name in FLOORS or not exe.exists():
        return {}
    out = {}
    with Server(name, prefix, workdir).start() as server:
        for n in cfg.loadgen_clients:
            cpu0, t0 = server.cpu_seconds(), time.perf_counter()
            r = subprocess.run(
                [str(exe), '--address', '127.0.0.1:%d' % server.port,
                 '--authkey', server.authkey, '--queue', 'bench',
                 '--connections', str(n), '--seconds', str(cfg.duration)],
                stdout=subprocess.PIPE, universal_newlines=True,
                # Its own run lasts `duration` after set-up: a hang (seen
                # once against CPython's server at N=64) fails fast.
                timeout=min(cfg.timeout, 60 + 2 * cfg.duration))
            # Its set-up (connections, proxies) falls in this window too,
            # so CPU per request and cores are a little high.
            cpu = server.cpu_seconds() - cpu0
            wall = time.perf_counter() - t0
            lines = [l for l in r.stdout.splitlines() if l.startswith('{')]
            if r.returncode != 0 or not lines:
                raise BenchError('loadgen failed (exit %d)' % r.returncode)
            res = json.loads(lines[-1])
            ops = res['ops']
            case = 'N=%d' % n
            out[('loadgen', case, 'ops_s')] = res['ops_per_sec']
            out[('loadgen', case, 'p50_us')] = res['latency_us']['p50']
            out[('loadgen', case, 'cpu_ms_per_1k')] = \
                cpu * 1e3 / (ops / 1e3) if ops else 0.0
            out[('loadgen', case, 'cores')] = cpu / wall
    return out


def human_bytes(n):
    for unit, size in (('MB', 1 << 20), ('KB', 1 << 10)):
        if n >= size and n % size == 0:
            return '%d %s' % (n // size, unit)
    if n >= 1000000 and n % 1000000 == 0:
        return '%d MB' % (n // 1000000)
    if n >= 1000 and n % 1000 == 0:
        return '%d KB' % (n // 1000)
    return '%d B' % n


# Workloads that run every system at once: (names, prefixes, cfg, workdir,
# record(name, repeat, figures, error)).
SESSIONS = {
    'roundtrip': s_roundtrip,
    'roundtrip_private': s_roundtrip_private,
}

# Workloads measured one system at a time, a fresh server each:
# (name, prefix, cfg, workdir) -> figures.
WORKLOADS = {
    'master_worker': w_master_worker,
    'payload': w_payload,
    'churn': w_churn,
    'idle': w_idle,
    'fill': w_fill,
    'loadgen': w_loadgen,
}

ORDER = ('roundtrip', 'roundtrip_private', 'master_worker', 'payload',
         'churn', 'idle', 'fill', 'loadgen')
# What `--workloads all` runs: (a) on private queues only when asked for
# (--rt-private).
DEFAULT = tuple(w for w in ORDER if w != 'roundtrip_private')
