"""Objects created through a gateway (issue 18: SyncManager.Queue(),
.dict(), .Lock(), ...): each a new object in Redis, working like the
embedded server's, freed when its last proxy goes or its gateway dies
(compat-tests/redis_support.py).
"""
import os
import queue
import signal
import time

import pytest

from redis_support import (AUTHKEY, LEASE, Gateway, gateways, gw,  # noqa: F401 (fixtures)
                           only_rust, redis_cli, sync_manager)

pytestmark = only_rust


def test_create_of_an_unserved_syncmanager_type_is_a_clear_error(gw):
    from multiprocessing.managers import RemoteError
    with pytest.raises(RemoteError) as e:
        sync_manager(gw[0]).Array('i', [1, 2])
    assert 'redis backend' in str(e.value)
    assert 'does not serve create("Array")' in str(e.value)


def created_ids():
    """The ids of every created object (src/backend/redis/created.rs)."""
    return set(redis_cli('zrange', 'fm:objects', '0', '-1').split())


def keys_of(oid):
    """Which of the object's keys exist (`-c` follows the slot's node)."""
    names = ['data', 'refs', 'held', 'version']
    return [n for n in names
            if redis_cli('exists', 'fm:{%s}:%s' % (oid, n)).strip() == '1']


def wait_freed(oids, timeout):
    t = time.monotonic()
    while any(keys_of(o) for o in oids) or created_ids() & set(oids):
        assert time.monotonic() - t < timeout, [(o, keys_of(o)) for o in oids]
        time.sleep(0.1)
    return time.monotonic() - t


def test_created_objects_live_in_redis_until_their_last_proxy_goes(gw):
    import gc
    a, b = gw
    before = created_ids()
    m = sync_manager(a)
    q, jq, small = m.Queue(), m.JoinableQueue(), m.Queue(1)
    d, ns, v = m.dict({'a': 1}, b=2), m.Namespace(x=1), m.Value('i', 5)
    made = created_ids() - before
    assert len(made) == 6, made
    q.put('x')
    assert q.get() == 'x' and q.empty()
    small.put(1)
    with pytest.raises(queue.Full):
        small.put_nowait(2)
    jq.put('job')
    assert jq.get() == 'job'
    jq.task_done()
    jq.join()
    assert d['a'] == 1 and d['b'] == 2 and len(d) == 2
    d['c'] = 3
    assert ns.x == 1 and v.value == 5
    v.value = 6
    assert v.get() == 6
    # Each is its own object in Redis, held by gateway A only.
    for oid in made:
        assert 'refs' in keys_of(oid), oid
        assert len(redis_cli('hkeys', 'fm:{%s}:refs' % oid).split()) == 1
    assert 'data' in keys_of(next(o for o in made if 'data' in keys_of(o)))
    # A proxy passed through gateway B's queue reaches a client of B and
    # works: its token names gateway A, where it takes its reference.
    # (An unpickled proxy authenticates with the process's authkey, as
    # in a worker started by the manager's owner.)
    import multiprocessing
    me, key = multiprocessing.current_process(), None
    key, me.authkey = me.authkey, AUTHKEY.encode()
    try:
        a.manager().tasks().put(q)
        q_via_b = b.manager().tasks().get()
    finally:
        me.authkey = key
    q_via_b.put('from a proxy got on B')
    assert q.get(timeout=5) == 'from a proxy got on B'
    # One proxy left: the object stays.
    del q
    gc.collect()
    time.sleep(0.5)
    assert made <= created_ids()
    q_via_b.put('still there')
    del q_via_b, jq, small, d, ns, v
    gc.collect()
    waited = wait_freed(made, 10)
    print('created objects freed %.2f s after their last proxy' % waited)


def test_created_locks_events_and_lists_work_and_are_freed(gw):
    import gc
    a, b = gw
    before = created_ids()
    m = sync_manager(a)
    lock, rlock, sem, ev, lst = m.Lock(), m.RLock(), m.Semaphore(), m.Event(), m.list()
    made = created_ids() - before
    assert len(made) == 5, made
    assert lock.acquire() and not lock.acquire(timeout=0.2)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    assert rlock.acquire() and rlock.acquire()
    rlock.release()
    rlock.release()
    assert sem.acquire(timeout=1) and not sem.acquire(timeout=0.2)
    sem.release()
    assert not ev.is_set() and not ev.wait(0.1)
    ev.set()
    assert ev.wait(1) is True
    lst.append(1)
    lst.extend([2, 3])
    lst.insert(0, 0)
    assert len(lst) == 4 and lst[0] == 0 and lst.pop() == 3 and lst.index(2) == 2
    del lock, rlock, sem, ev, lst
    gc.collect()
    waited = wait_freed(made, 10)
    print('created sync objects and a list freed %.2f s after their last proxy' % waited)


def semaphore_outcomes(m):
    """What SyncManager `m`'s semaphores do with start values given and
    refused: the acquires' results and the exceptions' lines."""
    import re
    out = []
    s = m.Semaphore(3)
    out.append([s.acquire(False) for _ in range(4)])
    s.release()
    out.append(s.acquire(False))
    out.append(m.Semaphore(0).acquire(timeout=0.1))
    kw = m.Semaphore(value=2)
    out.append([kw.acquire(False) for _ in range(3)])
    one = m.Semaphore()
    out.append([one.acquire(False) for _ in range(2)])
    b = m.BoundedSemaphore(2)
    out.append([b.acquire(False) for _ in range(3)])
    b.release()
    b.release()
    try:
        b.release()
        out.append('released past its bound')
    except ValueError as e:
        out.append(('ValueError', str(e)))
    for make in (m.Semaphore, m.BoundedSemaphore):
        try:
            make(-1)
            out.append('made')
        except Exception as e:
            # A create that fails is a RemoteError carrying the server's
            # traceback, on CPython's server: its last exception line.
            out.append((type(e).__name__,
                        re.findall(r'^(\w+Error: .*)$', str(e), re.M)[-1:]))
    return out


def test_created_semaphores_take_their_start_value_as_on_cpythons_server(gw):
    from multiprocessing.managers import SyncManager
    reference = SyncManager(authkey=b'reference')
    reference.start()
    try:
        expected = semaphore_outcomes(reference)
    finally:
        reference.shutdown()
    assert expected[0] == [True, True, True, False]
    assert expected[-1] == ('RemoteError', ['ValueError: semaphore initial value must be >= 0'])
    assert semaphore_outcomes(sync_manager(gw[0])) == expected


def test_created_object_of_a_killed_gateway_is_freed_after_its_lease(gw, tmp_path):
    c = Gateway(str(tmp_path / 'c.log'))
    try:
        before = created_ids()
        m = sync_manager(c)
        d, q = m.dict(k='v'), m.Queue()
        q.put('item')
        made = created_ids() - before
        assert len(made) == 2 and all(keys_of(o) for o in made)
        os.kill(c.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        c.proc.wait()
        # Gateway A's and B's sweeps free them once C's lease is over.
        waited = wait_freed(made, LEASE + 10)
        assert time.monotonic() - killed >= LEASE - 1.5
        print('created objects of a killed gateway freed %.2f s after the kill' % waited)
    finally:
        c.stop()

