"""Broken and greedy clients, and what a malicious pickle can (not) do:
one case per run (argv[1]), then a normal client's round trip.

    python hostile_clients.py CASE [ARG]
"""
import os
import pickle
import queue
import signal
import socket
import struct
import sys
import threading
import time

import fmclient
import rawwire
from rawwire import connect, recv_frame, send_frame


def named_ident(name='get_task'):
    kind, value = rawwire.control('create', name)
    assert kind == '#RETURN', (kind, value)
    return value[0]


def slow_handshake():
    """Answers the challenge one byte a second: closed by the handshake
    timeout (the test starts the server with --handshake-timeout 2)."""
    s = connect()
    rawwire.recv_frame(s)
    t0 = time.time()
    try:
        for b in struct.pack('!i', 40) + b'{sha256}' + b'x' * 32:
            s.sendall(bytes([b]))
            s.settimeout(1.0)
            try:
                if s.recv(100) == b'':
                    break
            except socket.timeout:
                pass
            if time.time() - t0 > 30:
                return {'closed': False}
    except (BrokenPipeError, ConnectionResetError):
        pass
    return {'closed': True, 'after': round(time.time() - t0)}


def slow_request():
    """An authenticated client sends its request one byte a second while
    another client keeps doing round trips; then its request completes."""
    ident = named_ident()
    s = rawwire.serving()
    data = rawwire.frame(pickle.dumps((ident, 'qsize', (), {}), 4))
    slowest = [0.0]
    stop = threading.Event()

    def others():
        q = fmclient.connect().get_result()
        while not stop.is_set():
            t = time.time()
            q.put(1)
            q.get(timeout=30)
            slowest[0] = max(slowest[0], time.time() - t)

    t = threading.Thread(target=others)
    t.start()
    for b in data[:6]:
        s.sendall(bytes([b]))
        time.sleep(1.0)
    s.sendall(data[6:])
    reply = rawwire.reply_kind(recv_frame(s))
    stop.set()
    t.join()
    return {'reply': reply[0], 'slowest_round_trip': slowest[0]}


def parked_thousands(n):
    """n connections parked in get(timeout=3) on an empty queue while a
    normal client does round trips; every parked call then times out."""
    n = int(n)
    # One socket each: raise the soft open-file limit (often 1024) to fit.
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 256:
        soft = n + 256 if hard == resource.RLIM_INFINITY else min(hard, n + 256)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        n = min(n, soft - 256)
    ident = named_ident()
    conns = []
    for i in range(n):
        s = rawwire.serving('parked-%d' % i)
        send_frame(s, pickle.dumps((ident, 'get', (True, 3.0), {}), 4))
        conns.append(s)
    q = fmclient.connect().get_result()
    slowest = 0.0
    for i in range(50):
        t = time.time()
        q.put(i)
        assert q.get(timeout=30) == i
        slowest = max(slowest, time.time() - t)
    kinds = {}
    for s in conns:
        s.settimeout(60)
        kind, text = rawwire.reply_kind(recv_frame(s))
        key = kind + ' ' + text.split()[-1] if text else kind
        kinds[key] = kinds.get(key, 0) + 1
        s.close()
    return {'slowest_round_trip': slowest, 'replies': kinds, 'parked': n}


def never_reads():
    """Pipelines requests and never reads a reply: the server stops
    reading it once 8 MiB of replies wait, and disconnects it after the
    send timeout (the test sets --send-timeout 2)."""
    m = fmclient.connect_sync()
    # Big replies fill the buffers quickly: l[0] is a 1 MiB item.
    lst = m.list([b'z' * (1 << 20)])
    s = rawwire.serving()
    s.settimeout(0.5)
    request = rawwire.frame(pickle.dumps((lst._id, '__getitem__', (0,), {}), 4))
    t0 = time.time()
    blocked_at = None
    while time.time() - t0 < 60:
        try:
            s.send(request)
        except socket.timeout:
            blocked_at = blocked_at or time.time()
        except (BrokenPipeError, ConnectionResetError):
            return {'disconnected': True, 'blocked': blocked_at is not None}
        # Once the sender blocks, the server has stopped reading us.
        if blocked_at:
            time.sleep(0.2)
    return {'disconnected': False}


def dead_getter():
    """A client blocked in get() is killed; an item is then put. CPython's
    server hands the item to the dead client's thread, and it is lost;
    fastmanager keeps it for the next getter."""
    ident = named_ident()
    pid = os.fork()
    if pid == 0:
        s = rawwire.serving('doomed')
        send_frame(s, pickle.dumps((ident, 'get', (), {}), 4))
        time.sleep(60)
        os._exit(0)
    time.sleep(1.0)  # the child is parked in get()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    time.sleep(0.5)
    q = fmclient.connect().get_task()
    q.put('precious')
    try:
        got = q.get(timeout=3)
    except queue.Empty:
        got = None
    return {'next_getter_got': got}


def max_connections(limit):
    """Opens `limit` connections, then one more, which the server closes
    without a challenge; closing them frees the slots again."""
    limit = int(limit)
    held = [connect() for _ in range(limit)]
    for s in held:
        recv_frame(s)  # each got its challenge
    extra = connect()
    try:
        extra.settimeout(5)
        first = extra.recv(100)
        refused = first == b''
    except (ConnectionResetError, socket.timeout):
        refused = True
    for s in held:
        s.close()
    time.sleep(0.5)
    return {'extra_refused': refused}


def memory_caps():
    """The test starts the server with --max-object-bytes 2000000 and
    --max-total-bytes 5000000."""
    m = fmclient.connect_sync()
    tasks = fmclient.connect().get_task()
    out = {}
    blob = b'b' * 100000
    stored = 0
    try:
        for _ in range(100):
            tasks.put(blob)
            stored += 1
    except MemoryError as e:
        out['object_error'] = str(e)
    out['stored'] = stored
    out['qsize_after_refusal'] = tasks.qsize()
    tasks.get(timeout=5)
    tasks.put(blob)  # room again
    out['put_after_get'] = True
    # The total: fill other objects until the server refuses.
    total = stored * 100000
    lists = []
    try:
        for _ in range(100):
            lst = m.list()
            lists.append(lst)
            for _ in range(10):
                lst.append(blob)
                total += 100000
    except MemoryError as e:
        out['total_error'] = str(e)
    out['total_stored'] = total
    # Draining is never refused.
    tasks.get(timeout=5)
    # Expansions on the server are counted before they happen.
    small = m.list([1, 2, 3])
    for name, f in [('range', lambda: small.extend(range(10 ** 7))),
                    ('imul', lambda: small.__imul__(10 ** 6)),
                    ('str', lambda: m.list('x' * 3000000))]:
        try:
            f()
            out[name] = 'stored'
        except MemoryError:
            out[name] = 'MemoryError'
    out['small_len'] = len(small)
    return out


def leaf(x):
    """The first leaf, without looking at (or printing) the rest."""
    while isinstance(x, list):
        x = x[0]
    return x


def billion_laughs():
    """A list of lists sharing one child, 30 levels: 2**30 leaves once
    expanded, a few hundred bytes pickled. str(), repr(), _getvalue() and
    debug_info must answer without expanding it."""
    bomb = ['lol']
    for _ in range(30):
        bomb = [bomb, bomb]
    m = fmclient.connect_sync()
    out = {}
    lst = m.list()
    lst.append(bomb)
    d = m.dict()
    d['k'] = bomb
    for name, f in [('str', lambda: lst._callmethod('__str__')),
                    ('repr', lambda: d._callmethod('__repr__')),
                    ('getvalue', lambda: leaf(lst._getvalue()[0])),
                    ('debug_info', lambda: m._debug_info()),
                    ('contains', lambda: bomb in lst),
                    ('index', lambda: lst.index(bomb))]:
        t = time.time()
        try:
            r = f()
            out[name] = ['ok', repr(r)[:60]]
        except Exception as e:
            out[name] = [fmclient.exc_name(e), str(e)[:200]]
        out[name].append(round(time.time() - t, 1))
    return out


class Marker(object):
    """Unpickling this creates the file: what a pickle can make a Python
    server do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def reduce_marker(path):
    ident = named_ident()
    tasks = fmclient.connect().get_task()
    tasks.put(Marker(path))
    m = fmclient.connect_sync()
    lst = m.list()
    lst.append(Marker(path))
    d = m.dict()
    d['k'] = Marker(path)
    out = {'after_put': os.path.exists(path)}
    # Read back on a raw connection: the reply carries the pickle, which
    # this client does not load.
    s = rawwire.serving()
    reply = rawwire.call(s, ident, 'get', (True, 5))
    out['reply_names_open'] = b'open' in reply
    for name, f in [('str_list', lambda: str(lst)), ('str_dict', lambda: str(d)),
                    ('contains', lambda: 1 in lst)]:
        try:
            f()
        except Exception:
            pass
    out['after_all'] = os.path.exists(path)
    return out


CASES = {f.__name__: f for f in [
    slow_handshake, slow_request, parked_thousands, never_reads, dead_getter,
    max_connections, memory_caps, billion_laughs, reduce_marker]}


def main():
    case = sys.argv[1]
    observed = CASES[case](*sys.argv[2:])
    fmclient.emit({'case': case, 'observed': observed,
                   'round_trip': fmclient.round_trip()})


if __name__ == '__main__':
    main()
