"""One benchmark client process: a stock CPython program using a system the
way its users do (multiprocessing.managers proxies, or redis-py).

    python driver.py MODE --target mp|redis:PORT:AUTHKEY ...

The harness (run.py) starts many of these. Each connects and warms up,
prints ``READY``, waits for ``GO <seconds>`` on stdin (so that every client
of a measurement starts together, after all have paid their start-up), runs,
then prints one ``FMRESULT <json>`` line.

Modes:
  roundtrip  put+get on the shared queue ``bench`` until the time is up;
             reports ops and each op's latency (microseconds)
  pool       the same against one of several --target, once per
             ``GO INDEX SECONDS`` line, until stdin closes; with
             --private, on a queue of its own (``m.Queue()`` from a
             SyncManager; redis: a list named after the process)
  master     puts --count tasks on ``tasks``, then gets --count results
             from ``results``; reports the seconds taken
  worker     --count times: get a task, put it back as a result
  churn      creates, uses once and drops a --kind (dict or Queue) proxy
             (redis: a new connection, one command, DEL, close) until the
             time is up
  fill       puts --count small items on ``fill``, pipelined (only memory
             is measured)
  idle       holds --count connections that did the handshake and
             ``accept_connection`` (redis: a PING), until stdin closes

Runs on CPython 3.6+ (no walrus, no positional-only parameters).
"""
import argparse
import faulthandler
import json
import os
import resource
import signal
import sys
import time

RESULT_MARK = 'FMRESULT '


# --------------------------------------------------------------------------
# The systems, behind one small queue interface

class MPSystem:
    """A multiprocessing.managers server: CPython's, fastmanager or the floor."""

    def __init__(self, host, port, authkey):
        self.address = (host, port)
        self.authkey = authkey.encode('utf-8')
        # Proxies live until the process ends (see main()).
        self.keep = []

    def queue(self, name):
        from multiprocessing.managers import BaseManager

        class M(BaseManager):
            pass
        M.register(name)
        m = M(address=self.address, authkey=self.authkey)
        m.connect()
        proxy = getattr(m, name)()
        self.keep.append(proxy)
        return proxy

    def sync_manager(self):
        from multiprocessing.managers import SyncManager
        m = SyncManager(address=self.address, authkey=self.authkey)
        m.connect()
        return m

    def private_queue(self):
        """A queue only this process uses, as a SyncManager user makes
        one: no other client contends for it."""
        proxy = self.sync_manager().Queue()
        self.keep.append(proxy)
        return proxy

    def churn_one(self, manager, kind):
        if kind == 'dict':
            d = manager.dict()
            d['k'] = 1
        else:
            d = manager.Queue()
            d.put(1)
        # Dropping the last reference decrefs it on the server now.
        del d

    def fill(self, count, batch=1000):
        """Puts small ints, `batch` requests in flight on the proxy's own
        connection: a proxy only sends one at a time, but only memory is
        measured here and this makes a million items affordable."""
        q = self.queue('fill')
        q.qsize()                       # opens the proxy's connection
        conn, ident = q._tls.connection, q._id
        done = 0
        while done < count:
            n = min(batch, count - done)
            for i in range(done, done + n):
                conn.send((ident, 'put', (i,), {}))
            for _ in range(n):
                kind, value = conn.recv()
                if kind != '#RETURN':
                    raise RuntimeError('put failed: %r %r' % (kind, value))
            done += n

    def open_idle(self, i):
        """A connection as a proxy's method-call connection looks while its
        thread does nothing: handshake done, accept_connection answered."""
        from multiprocessing.connection import Client
        conn = Client(self.address, authkey=self.authkey)
        conn.send((None, 'accept_connection', ('idle-%d' % i,), {}))
        kind, value = conn.recv()
        if kind != '#RETURN':
            raise RuntimeError('accept_connection failed: %r %r'
                               % (kind, value))
        return conn


class RedisQueue:
    """LPUSH/BRPOP on one list: a queue as redis-py users write it."""

    def __init__(self, client, name):
        self.client, self.name = client, name

    def put(self, item):
        self.client.lpush(self.name, item)

    def get(self):
        return self.client.brpop(self.name, 0)[1]


class RedisSystem:
    def __init__(self, host, port, authkey):
        import redis
        self.redis = redis
        self.host, self.port = host, port

    def client(self):
        return self.redis.Redis(host=self.host, port=self.port)

    def queue(self, name):
        return RedisQueue(self.client(), name)

    def sync_manager(self):
        return None

    def private_queue(self):
        return RedisQueue(self.client(), 'bench-%d' % os.getpid())

    def churn_one(self, manager, kind):
        # What a Redis user does for a short-lived object: a key written
        # once and deleted; the connection stands in for the proxy's.
        r = self.client()
        key = 'churn'
        if kind == 'dict':
            r.hset(key, 'k', 1)
        else:
            r.lpush(key, 1)
        r.delete(key)
        r.close()

    def fill(self, count, batch=1000):
        r = self.client()
        done = 0
        while done < count:
            n = min(batch, count - done)
            p = r.pipeline(transaction=False)
            for i in range(done, done + n):
                p.lpush('fill', i)
            p.execute()
            done += n

    def open_idle(self, i):
        import socket
        s = socket.create_connection((self.host, self.port))
        s.sendall(b'PING\r\n')
        reply = s.recv(64)
        if not reply.startswith(b'+PONG'):
            raise RuntimeError('PING answered %r' % reply)
        return s


# --------------------------------------------------------------------------
# Modes

def wait_go():
    print('READY', flush=True)
    line = sys.stdin.readline().split()
    if not line or line[0] != 'GO':
        sys.exit('expected GO, got %r' % line)
    return float(line[1]) if len(line) > 1 else 0.0


def warm_up(q, item, n):
    for _ in range(n):
        q.put(item)
        q.get()


def roundtrip_loop(q, item, duration):
    clock = time.perf_counter
    lat = []
    record = lat.append
    now = clock()
    deadline = now + duration
    while now < deadline:
        q.put(item)
        q.get()
        t = clock()
        record(int((t - now) * 1e6))
        now = t
    return {'ops': len(lat), 'lat_us': lat}


def mode_roundtrip(system, args):
    q = system.queue('bench')
    item = b'x' * args.payload if args.payload else 1
    warm_up(q, item, args.warmup)
    return roundtrip_loop(q, item, wait_go())


def mode_pool(systems, args):
    """Round trips against any of several systems, on command: the
    harness starts 64 of these once, connected to every system, and
    measures each N and system with the first N of them."""
    queues = [s.private_queue() if args.private else s.queue('bench')
              for s in systems]
    for q in queues:
        warm_up(q, 1, args.warmup)
    print('READY', flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] != 'GO':
            break
        emit(roundtrip_loop(queues[int(words[1])], 1, float(words[2])))


def mode_master(system, args):
    tasks, results = system.queue('tasks'), system.queue('results')
    wait_go()
    t0 = time.perf_counter()
    for i in range(args.count):
        tasks.put(i)
    for _ in range(args.count):
        results.get()
    return {'tasks': args.count, 'seconds': time.perf_counter() - t0}


def mode_worker(system, args):
    tasks, results = system.queue('tasks'), system.queue('results')
    wait_go()
    for _ in range(args.count):
        results.put(tasks.get())
    return {'done': args.count}


def mode_churn(system, args):
    manager = system.sync_manager()
    system.churn_one(manager, args.kind)      # warm-up
    duration = wait_go()
    n = 0
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline:
        system.churn_one(manager, args.kind)
        n += 1
    return {'ops': n}


def mode_fill(system, args):
    wait_go()
    t0 = time.perf_counter()
    system.fill(args.count)
    return {'items': args.count, 'seconds': time.perf_counter() - t0}


def mode_idle(system, args):
    # Opened 16 at a time: CPython's server leaves Nagle on, so each
    # handshake stalls ~40 ms on delayed ACKs (one by one, 10,000 would take
    # minutes); 16 stays within its listen backlog.
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(16) as pool:
        held = list(pool.map(system.open_idle, range(args.count)))
    print('READY', flush=True)
    sys.stdin.read()                    # until the harness closes stdin
    return {'held': len(held)}


MODES = {
    'roundtrip': mode_roundtrip,
    'pool': mode_pool,
    'master': mode_master,
    'worker': mode_worker,
    'churn': mode_churn,
    'fill': mode_fill,
    'idle': mode_idle,
}


def make_system(target, host):
    kind, port, authkey = target.split(':', 2)
    return (MPSystem if kind == 'mp' else RedisSystem)(host, int(port),
                                                       authkey)


def emit(result):
    sys.stdout.write(RESULT_MARK + json.dumps(result) + '\n')
    sys.stdout.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('mode', choices=sorted(MODES))
    p.add_argument('--target', action='append', required=True,
                   metavar='mp|redis:PORT:AUTHKEY',
                   help='a server (repeatable: pool mode takes several, the '
                   'other modes use the first)')
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--payload', type=int, default=0,
                   help='roundtrip: item of this many bytes (0: a small int)')
    p.add_argument('--private', action='store_true',
                   help='pool: a queue of its own instead of the shared one')
    p.add_argument('--warmup', type=int, default=20)
    p.add_argument('--count', type=int, default=0)
    p.add_argument('--kind', choices=['dict', 'Queue'], default='dict')
    args = p.parse_args()
    # `kill -USR1 PID` prints where a hung client is (to its .err file).
    faulthandler.register(signal.SIGUSR1)
    # Idle mode holds thousands of sockets.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    systems = [make_system(t, args.host) for t in args.target]
    if args.mode == 'pool':
        mode_pool(systems, args)
    else:
        emit(MODES[args.mode](systems[0], args))
    # Leave without the proxies' exit-time decrefs: each opens one more
    # connection, and when 64 clients do so at once CPython's server
    # (listen backlog 16) stalls some of them for many seconds. Nothing is
    # measured then; the server is stopped right after.
    os._exit(0)


if __name__ == '__main__':
    main()
