"""The Redis backend's Lock, RLock, Semaphore, BoundedSemaphore, Event and
list (issue 18), through two gateways over one real Redis Cluster, with
stock CPython clients: the semantics of `threading`'s objects across
gateways, what a killed client and a killed gateway leave behind, and list
calls compared with a local Python list.

The cluster (the session's) and the gateway harness are
compat-tests/redis_support.py's.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import HERE, client_env
from redis_support import (AUTHKEY, LEASE, Gateway, only_rust, redis_cli,
                           two_gateways)

pytestmark = only_rust

CLIENT = HERE / 'clients' / 'redis_backend_sync.py'
REGISTER = ['lock=Lock', 'rlock=RLock', 'sem=Semaphore(2)',
            'bsem=BoundedSemaphore(1)', 'event=Event', 'items=list']
KEYS = ['fm:{k:lock}:lock', 'fm:{k:rlock}:lock', 'fm:{s:sem}:sem',
        'fm:{s:sem}:held', 'fm:{s:bsem}:sem', 'fm:{s:bsem}:held',
        'fm:{e:event}:event', 'fm:{l:items}:items', 'fm:{l:items}:version']


def manager(gateway):
    from multiprocessing.managers import (AcquirerProxy, BaseManager,
                                          EventProxy, ListProxy)

    class M(BaseManager):
        pass
    for name in ('lock', 'rlock', 'sem', 'bsem'):
        M.register(name, proxytype=AcquirerProxy)
    M.register('event', proxytype=EventProxy)
    M.register('items', proxytype=ListProxy)
    m = M(('127.0.0.1', gateway.port), authkey=AUTHKEY.encode())
    m.connect()
    return m


@pytest.fixture(scope='module')
def gateways(redis_cluster, tmp_path_factory):
    with two_gateways(tmp_path_factory.mktemp('sync-gateways'), REGISTER) as pair:
        yield pair


@pytest.fixture
def gw(gateways):
    """The two gateways' managers, with every object fresh."""
    for key in KEYS:
        redis_cli('del', key)
    return tuple(manager(g) for g in gateways)


def spawn(role, gateway, name, *args):
    return subprocess.Popen(
        [sys.executable, str(CLIENT), role, '127.0.0.1:%d' % gateway.port,
         AUTHKEY, name, *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=client_env())


def in_thread(f):
    """Runs f() in a thread; the list its result lands in, and the thread."""
    out = []
    t = threading.Thread(target=lambda: out.append(f()))
    t.start()
    return out, t


def blocks_until(call, unblock):
    """call() in a thread is still blocked 0.3 s later, and returns once
    unblock() has run (in this thread); its result."""
    got, t = in_thread(call)
    time.sleep(0.3)
    assert not got, 'returned before unblock()'
    unblock()
    t.join(10)
    assert got, 'still blocked after unblock()'
    return got[0]


def test_a_lock_acquired_through_one_gateway_blocks_the_other(gw):
    a, b = gw
    la, lb = a.lock(), b.lock()
    assert la.acquire() is True
    assert lb.acquire(False) is False
    started = time.monotonic()
    assert lb.acquire(timeout=0.2) is False
    assert 0.19 <= time.monotonic() - started < 2
    assert blocks_until(lambda: lb.acquire(timeout=30), la.release) is True
    # A Lock has no owner: a client of the other gateway releases it.
    la.release()
    with pytest.raises(RuntimeError) as e:
        lb.release()
    assert str(e.value) == 'release unlocked lock'
    with pytest.raises(ValueError) as e:
        la.acquire(False, 1)
    assert str(e.value) == "can't specify a timeout for a non-blocking call"


def test_rlock_reenters_and_only_its_owner_releases(gw):
    a, b = gw
    ra, rb = a.rlock(), b.rlock()
    assert ra.acquire() and ra.acquire()
    assert rb.acquire(False) is False
    with pytest.raises(RuntimeError) as e:
        rb.release()
    assert str(e.value) == 'cannot release un-acquired lock'
    # Another thread of this process has its own connection: not the owner,
    # even through the same gateway.
    other, t = in_thread(lambda: a.rlock().acquire(False))
    t.join(10)
    assert other == [False]
    ra.release()
    assert rb.acquire(False) is False  # one level still held
    assert blocks_until(lambda: rb.acquire(timeout=30), ra.release) is True
    with pytest.raises(RuntimeError):
        ra.release()


def test_semaphore_units_across_gateways(gw):
    a, b = gw
    sa, sb = a.sem(), b.sem()
    assert sa.acquire() and sb.acquire()
    assert sa.acquire(False) is False
    assert sb.acquire(timeout=0.2) is False
    assert blocks_until(lambda: sa.acquire(timeout=30), sb.release) is True
    # An unbounded semaphore may be released past its start value
    # (release(n): 3.9+; AcquirerProxy passes no n, _callmethod does).
    sa._callmethod('release', (3,))
    assert [sb.acquire(False) for _ in range(4)] == [True, True, True, False]
    with pytest.raises(ValueError) as e:
        sa._callmethod('release', (0,))
    assert str(e.value) == 'n must be one or more'


def test_bounded_semaphore_refuses_a_release_past_its_bound(gw):
    a, b = gw
    ba, bb = a.bsem(), b.bsem()
    with pytest.raises(ValueError) as e:
        bb.release()
    assert str(e.value) == 'Semaphore released too many times'
    assert ba.acquire() is True
    assert bb.acquire(False) is False
    bb.release()
    with pytest.raises(ValueError):
        ba.release()
    assert bb.acquire(False) is True


def test_event_wait_is_woken_by_a_set_on_the_other_gateway(gw):
    a, b = gw
    ea, eb = a.event(), b.event()
    assert eb.is_set() is False
    started = time.monotonic()
    assert eb.wait(0.2) is False
    assert 0.19 <= time.monotonic() - started < 2
    assert eb.wait(0) is False
    assert blocks_until(lambda: eb.wait(30), ea.set) is True
    assert eb.is_set() and eb.wait() is True and eb.wait(0) is True
    eb.clear()
    assert ea.is_set() is False
    with pytest.raises(TypeError) as e:
        ea.wait('x')
    assert "'>' not supported" in str(e.value)


def test_list_calls_match_a_python_list(gw):
    a, b = gw
    proxies = [a.items(), b.items()]
    local = []
    calls = [0]

    def both(op):
        """op on the local list and on one gateway's proxy, in turn: the
        same result, or the same exception."""
        proxy = proxies[calls[0] % 2]
        calls[0] += 1
        outcomes = []
        for target in (local, proxy):
            try:
                outcomes.append(('ok', op(target)))
            except Exception as e:
                outcomes.append((type(e).__name__, str(e)))
        assert outcomes[0] == outcomes[1], (op.__doc__, outcomes)
        return outcomes[0]

    def slice_of(lst):
        return lst[1:5:2]

    both(lambda l: l.append(1))
    both(lambda l: l.extend([2, 3.0, 'x', (4, 5), None]))
    both(lambda l: l.extend([]))
    both(len)
    for i in (0, 2, -1, -6, 6, -7, 2 ** 70):
        both(lambda l: l[i])
    for s in (slice(None), slice(1, 4), slice(None, None, -1),
              slice(-3, None), slice(5, 1, -2), slice(100, 200)):
        both(lambda l: l[s])
    both(slice_of)
    both(lambda l: l.__setitem__(1, 'two'))
    both(lambda l: l.__setitem__(-1, 'last'))
    both(lambda l: l.__setitem__(9, 'no'))
    both(lambda l: l.__setitem__(slice(0, 2), ['a', 'b', 'c']))
    both(lambda l: l.__setitem__(slice(None, None, 2), [0] * 4))
    both(lambda l: l.__setitem__(slice(None, None, 2), [0]))
    both(lambda l: l.__delitem__(0))
    both(lambda l: l.__delitem__(slice(1, 3)))
    both(lambda l: l.__delitem__(50))
    both(lambda l: l.insert(0, 1.0))
    both(lambda l: l.insert(-1, True))
    both(lambda l: l.insert(100, 'end'))
    both(lambda l: l[:])
    # Python's equality: 1 == 1.0 == True.
    for x in (1, 1.0, True, 'end', 'nope', None):
        both(lambda l: x in l)
        both(lambda l: l.count(x))
        both(lambda l: l.index(x))
    both(lambda l: l.index('end', 1, 3))
    both(lambda l: l.remove(True))
    both(lambda l: l.remove('nope'))
    both(lambda l: l.reverse())
    both(lambda l: l.pop())
    both(lambda l: l.pop(0))
    both(lambda l: l.pop(1))
    both(lambda l: l.pop(99))
    both(lambda l: l + [7])
    both(lambda l: l * 2)
    both(lambda l: list(reversed(l)))
    both(lambda l: l.sort())  # None among the items: TypeError, list kept
    both(lambda l: l[:])
    both(lambda l: l.__setitem__(slice(None), [3, 1.5, 2, -1]))
    both(lambda l: l.sort())
    both(lambda l: l.sort(reverse=True))
    both(lambda l: l[:])
    both(lambda l: l.__imul__(2) and None)  # a proxy returns itself
    both(lambda l: l[:])
    while both(len)[1]:
        both(lambda l: l.pop())
    both(lambda l: l.pop())
    both(lambda l: l.pop(0))
    both(lambda l: l[0])
    assert redis_cli('llen', 'fm:{l:items}:items').strip() == '0'


def test_list_appends_from_two_gateways_at_once_are_all_kept(gw):
    a, b = gw
    la, lb = a.items(), b.items()

    def add(proxy, tag):
        for i in range(200):
            proxy.append((tag, i))
            if i % 50 == 0:
                proxy.insert(0, (tag, 'front', i))  # a whole-list rewrite
    threads = [threading.Thread(target=add, args=(p, t))
               for p, t in ((la, 'a'), (lb, 'b'))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    got = la[:]
    assert len(got) == 2 * (200 + 4)
    for tag in 'ab':
        assert [x[1] for x in got if x[0] == tag and len(x) == 2] == list(range(200))


def test_rlock_of_a_killed_client_is_released_within_a_second(gateways, gw):
    a, b = gateways
    holder = spawn('hold', a, 'rlock')
    waiter = None
    try:
        assert holder.stdout.readline().strip() == 'held'
        waiter = spawn('acquire', b, 'rlock', 30)
        assert waiter.stdout.readline().strip() == 'ready'
        time.sleep(0.5)  # parked in gateway B
        assert waiter.poll() is None
        os.kill(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
        out, err = waiter.communicate(timeout=30)
        done = time.monotonic() - killed
        assert waiter.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])['acquired'] is True
        assert done < 1.0, done
        print('RLock of a SIGKILLed client acquired through the other '
              'gateway %.3f s after the kill' % done)
    finally:
        holder.kill()
        holder.communicate()
        if waiter is not None and waiter.poll() is None:
            waiter.kill()
            waiter.communicate()


def test_a_killed_client_keeps_its_lock_and_a_killed_waiter_takes_nothing(gateways, gw):
    # As on the embedded server: a Lock has no owner to die (another client
    # releases it); a client killed while parked in acquire() is dropped.
    a, b = gateways
    _, mb = gw
    holder = spawn('hold', a, 'lock')
    waiter = None
    try:
        assert holder.stdout.readline().strip() == 'held'
        waiter = spawn('acquire', b, 'lock', 30)
        assert waiter.stdout.readline().strip() == 'ready'
        time.sleep(0.5)
        for p in (holder, waiter):
            os.kill(p.pid, signal.SIGKILL)
            p.communicate()
        time.sleep(0.5)
        lock = mb.lock()
        assert lock.acquire(False) is False
        lock.release()
        time.sleep(0.5)  # the dead waiter must not take it meanwhile
        assert lock.acquire(False) is True
        lock.release()
    finally:
        for p in (holder, waiter):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()


def test_lock_and_units_held_through_a_killed_gateway_come_back_after_its_lease(gateways, gw, tmp_path):
    _, mb = gw
    c = Gateway(str(tmp_path / 'c.log'), register=REGISTER)
    try:
        mc = manager(c)
        # Kept: a process's last proxy gone closes its connection, which
        # would release the RLock at once.
        held = [mc.lock(), mc.rlock(), mc.bsem(), mc.sem()]
        assert all(p.acquire() for p in held)
        lock, rlock, bsem, sem = mb.lock(), mb.rlock(), mb.bsem(), mb.sem()
        assert not lock.acquire(False) and not rlock.acquire(False)
        assert not bsem.acquire(False)
        os.kill(c.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        c.proc.wait()
        assert lock.acquire(timeout=LEASE + 10) is True
        waited = time.monotonic() - killed
        # The lease, plus up to a second for B's next pass, plus slack.
        assert waited < LEASE + 3, waited
        assert rlock.acquire(timeout=5) and bsem.acquire(timeout=5)
        # The unbounded semaphore's unit is back too: 2 free again.
        assert sem.acquire(False) and sem.acquire(False)
        assert not sem.acquire(False)
        print('Lock held through a SIGKILLed gateway acquired through '
              'another %.2f s after the kill (lease %.0f s)' % (waited, LEASE))
    finally:
        c.stop()
