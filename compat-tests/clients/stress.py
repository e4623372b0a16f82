"""The stress test's client roles (test_stress.py drives them).

    stress.py ROLE DIR ARGS...

The coordinator creates the shared synchronization objects (a Lock, a
dict of counters, a Condition, an Event and a private queue) and writes
their tokens to DIR/tokens.json; every other role rebuilds proxies from
them (each rebuilt proxy increfs, and the coordinator lives until the end,
so nothing is freed early). The driver and the coordinator talk through
files in DIR: the driver writes ``parked``, ``go`` and ``done``; the
coordinator writes ``ready``. Every role reports what it got, so the
driver can count every item exactly once.
"""
import json
import os
import queue
import sys
import threading
import time
from multiprocessing.managers import SyncManager, Token

import fmclient

STOP = 'STOP'
# No role should need more than this; a hang fails the client, not pytest.
PATIENCE = 60.0


def path(d, name):
    return os.path.join(d, name)


def attach(d):
    """(SyncManager, {name: proxy}) from the coordinator's tokens."""
    m = fmclient.connect_sync()
    tokens = json.loads(fmclient.wait_for_file(path(d, 'tokens.json')))
    objs = {}
    for name, (typeid, ident) in tokens.items():
        proxytype = SyncManager._registry[typeid][-1]
        objs[name] = proxytype(Token(typeid, fmclient.address(), ident),
                               'pickle', manager=m,
                               authkey=fmclient.authkey())
    return m, objs


def locked_add(objs, key, n=1):
    lock, d = objs['lock'], objs['d']
    if not lock.acquire(timeout=PATIENCE):
        raise RuntimeError('lock not acquired in %.0fs' % PATIENCE)
    try:
        d[key] = d[key] + n
    finally:
        lock.release()


def arrive(objs):
    """Count in, then wait at the gate the coordinator opens."""
    locked_add(objs, 'ready')
    if not objs['gate'].wait(PATIENCE):
        raise RuntimeError('the gate never opened')


def poll(pred, what):
    deadline = time.time() + PATIENCE
    while not pred():
        if time.time() > deadline:
            raise RuntimeError('timed out waiting for ' + what)
        time.sleep(0.002)


def drain(q):
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


def coord(d, nworkers, nprod, ncons, nvitems):
    nworkers, nprod, ncons, nvitems = map(int, (nworkers, nprod, ncons,
                                                 nvitems))
    m = fmclient.connect_sync()
    objs = {'lock': m.Lock(), 'cond': m.Condition(), 'gate': m.Event(),
            'vq': m.Queue(),
            'd': m.dict({'ready': 0, 'count': 0, 'producers_done': 0,
                        'slot': None})}
    fmclient.write_file(path(d, 'tokens.json'), json.dumps(
        {k: [p._token.typeid, p._token.id] for k, p in objs.items()}))
    vq, dct = objs['vq'], objs['d']
    # Park a live getter of the private queue behind the victims (its own
    # connection: proxies connect once per thread): items must skip the
    # dead ones and come here.
    fmclient.wait_for_file(path(d, 'parked'), PATIENCE)
    vgot, went, put_done, empties = [], [], [], []

    def take():
        # Waits as long as the workers take to start, then gives up 10 s
        # after the items were put, well before the client timeout: items
        # lost to the dead getters show as lost, not as a hang.
        while len(vgot) < nvitems:
            start = time.time()
            try:
                vgot.append(vq.get(timeout=1.0))
            except queue.Empty:
                empties.append(start)
                if went and time.time() > went[0] + 10:
                    return
    taker = threading.Thread(target=take)
    taker.start()
    poll(lambda: dct['ready'] == nworkers, 'the workers')
    fmclient.write_file(path(d, 'ready'), '')
    # The driver kills the victims, then says go: items follow at once.
    poll(lambda: os.path.exists(path(d, 'go')), 'go')
    objs['gate'].set()
    went.append(time.time())
    for i in range(nvitems):
        vq.put(('v', i))
    put_done.append(time.time())
    poll(lambda: dct['producers_done'] == nprod, 'the producers')
    shared = fmclient.connect().get_task()
    for _ in range(ncons):
        shared.put(None)
    fmclient.wait_for_file(path(d, 'done'), PATIENCE)
    taker.join(PATIENCE)
    # A get of the taker that timed out although every item had been put
    # 0.2 s or more before its deadline: a missed wakeup (items only come
    # late, on a later get, so it is no loss but a bug all the same).
    stale = [s for s in empties if put_done and s + 0.8 > put_done[0]]
    fmclient.emit({'count': dct['count'], 'ready': dct['ready'],
                   'slot': dct['slot'], 'vq_got': vgot,
                   'vq_stale_empties': len(stale),
                   'vq_left': drain(vq), 'shared_left': drain(shared)})


def victim(d, k, which, timeout):
    """Parks in get() on an empty queue until the driver kills it."""
    if which == 'shared':
        q = fmclient.connect().get_task()
    else:
        q = attach(d)[1]['vq']
    q.qsize()  # connected: the get below is one request away
    fmclient.write_file(path(d, 'victim-%s.parked' % k), '')
    timeout = float(timeout)
    while True:
        # A timed get that expires parks again (CPython's server must see
        # every parked get expire before items flow: see test_stress.py).
        try:
            item = q.get(timeout=timeout) if timeout else q.get()
            break
        except queue.Empty:
            pass
    # Only reached if it took an item before it was killed: a test error.
    fmclient.emit({'victim_got': item})


def producer(d, k, n):
    _, objs = attach(d)
    q = fmclient.connect().get_task()
    arrive(objs)
    for i in range(int(n)):
        q.put(('s', int(k), i))
    locked_add(objs, 'producers_done')
    fmclient.emit({'put': int(n)})


def consumer(d, k):
    _, objs = attach(d)
    q = fmclient.connect().get_task()
    arrive(objs)
    got, empties, i = [], 0, 0
    deadline = time.time() + PATIENCE
    while time.time() < deadline:
        i += 1
        try:
            # Short waits that often expire, long ones that park, and
            # non-blocking tries, mixed.
            if i % 7 == 0:
                item = q.get_nowait()
            else:
                item = q.get(timeout=0.005 if i % 3 else 5.0)
        except queue.Empty:
            empties += 1
            continue
        if item is None:
            break
        got.append(item)
    else:
        raise RuntimeError('no sentinel within %.0fs' % PATIENCE)
    fmclient.emit({'got': got, 'empties': empties})


def private(d, k, n):
    """A private bounded queue: a putter thread (its own connection) that
    often blocks on a full queue, and this thread getting in order."""
    m, objs = attach(d)
    q, n = m.Queue(8), int(n)
    arrive(objs)
    errors = []

    def put_all():
        try:
            for i in range(n):
                q.put(('p', int(k), i), timeout=PATIENCE)
        except Exception as e:  # reported, not lost in the thread
            errors.append(repr(e))
    t = threading.Thread(target=put_all)
    t.start()
    got = [tuple(q.get(timeout=PATIENCE)) for _ in range(n)]
    t.join(PATIENCE)
    try:
        q.get_nowait()
        extra = True
    except queue.Empty:
        extra = False
    fmclient.emit({'in_order': got == [('p', int(k), i) for i in range(n)],
                   'got': len(got), 'extra': extra, 'errors': errors})


def counter(d, k, n):
    _, objs = attach(d)
    arrive(objs)
    for _ in range(int(n)):
        locked_add(objs, 'count')
    fmclient.emit({'added': int(n)})


def handoff_put(d, n, ngetters):
    """Hands tokens one at a time through d['slot'] under the Condition."""
    _, objs = attach(d)
    cond, dct = objs['cond'], objs['d']
    arrive(objs)
    for v in list(range(int(n))) + [STOP] * int(ngetters):
        with cond:
            deadline = time.time() + PATIENCE
            while dct['slot'] is not None:
                if time.time() > deadline:
                    raise RuntimeError('the slot stayed full')
                cond.wait(1.0)
            dct['slot'] = v
            cond.notify_all()
    fmclient.emit({'handed': int(n)})


def handoff_get(d, k):
    _, objs = attach(d)
    cond, dct = objs['cond'], objs['d']
    arrive(objs)
    got = []
    while True:
        with cond:
            deadline = time.time() + PATIENCE
            while dct['slot'] is None:
                if time.time() > deadline:
                    raise RuntimeError('the slot stayed empty')
                cond.wait(1.0)
            v = dct['slot']
            dct['slot'] = None
            cond.notify_all()
        if v == STOP:
            break
        got.append(v)
    fmclient.emit({'got': got})


ROLES = {'coord': coord, 'victim': victim, 'producer': producer,
         'consumer': consumer, 'private': private, 'counter': counter,
         'handoff_put': handoff_put, 'handoff_get': handoff_get}

if __name__ == '__main__':
    ROLES[sys.argv[1]](*sys.argv[2:])
