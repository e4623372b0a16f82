"""One benchmark client process: a stock CPython program using a system the
way its users do (multiprocessing.managers proxies, or redis-py).

    python driver.py MODE --system mp|redis --port PORT [--authkey KEY] ...

The harness (run.py) starts many of these. Each connects and warms up,
prints ``READY``, waits for ``GO <seconds>`` on stdin (so that every client
of a measurement starts together, after all have paid their start-up), runs,
then prints one ``FMRESULT <json>`` line.

Modes:
  roundtrip  put+get on the shared queue ``bench`` until the time is up;
             reports ops and each op's latency (microseconds)
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
import json
import resource
import sys
import time

RESULT_MARK = 'FMRESULT '


# --------------------------------------------------------------------------
# The systems, behind one small queue interface

class MPSystem:
    """A multiprocessing.managers server: CPython's, fastmanager or the floor."""

    def __init__(self, args):
        self.address = (args.host, args.port)
        self.authkey = args.authkey.encode('utf-8')

    def queue(self, name):
        from multiprocessing.managers import BaseManager

        class M(BaseManager):
            pass
        M.register(name)
        m = M(address=self.address, authkey=self.authkey)
        m.connect()
        return getattr(m, name)()

    def sync_manager(self):
        from multiprocessing.managers import SyncManager
        m = SyncManager(address=self.address, authkey=self.authkey)
        m.connect()
        return m

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
    def __init__(self, args):
        import redis
        self.redis = redis
        self.host, self.port = args.host, args.port

    def client(self):
        return self.redis.Redis(host=self.host, port=self.port)

    def queue(self, name):
        return RedisQueue(self.client(), name)

    def sync_manager(self):
        return None

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


def mode_roundtrip(system, args):
    q = system.queue('bench')
    item = b'x' * args.payload if args.payload else 1
    for _ in range(args.warmup):
        q.put(item)
        q.get()
    duration = wait_go()
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
    held = [system.open_idle(i) for i in range(args.count)]
    print('READY', flush=True)
    sys.stdin.read()                    # until the harness closes stdin
    return {'held': len(held)}


MODES = {
    'roundtrip': mode_roundtrip,
    'master': mode_master,
    'worker': mode_worker,
    'churn': mode_churn,
    'fill': mode_fill,
    'idle': mode_idle,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('mode', choices=sorted(MODES))
    p.add_argument('--system', choices=['mp', 'redis'], required=True)
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--authkey', default='')
    p.add_argument('--payload', type=int, default=0,
                   help='roundtrip: item of this many bytes (0: a small int)')
    p.add_argument('--warmup', type=int, default=20)
    p.add_argument('--count', type=int, default=0)
    p.add_argument('--kind', choices=['dict', 'Queue'], default='dict')
    args = p.parse_args()
    # Idle mode holds thousands of sockets.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    system = (MPSystem if args.system == 'mp' else RedisSystem)(args)
    result = MODES[args.mode](system, args)
    sys.stdout.write(RESULT_MARK + json.dumps(result) + '\n')
    sys.stdout.flush()


if __name__ == '__main__':
    main()
