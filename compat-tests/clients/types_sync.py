"""Synchronization types in one client process: Lock, RLock, Semaphore,
BoundedSemaphore, Condition, Event and Barrier through SyncManager's
typeids. A second client *thread* stands in for another client: each
thread has its own connection to the server, so it is another owner.

Prints one json dict of observations; test_types_sync.py decides what is
expected.  Runs on every CPython from 3.6 on.
"""
import threading
import time

import fmclient

TICK = 0.1    # a short timeout that must be waited out


def attempt(fn, *args, **kwds):
    t0 = time.time()
    try:
        value = fn(*args, **kwds)
    except Exception as e:
        return {'exc': fmclient.exc_name(e), 'msg': str(e)[-400:],
                'seconds': round(time.time() - t0, 3)}
    return {'exc': None, 'value': value, 'seconds': round(time.time() - t0, 3)}


def in_thread(fn, *args, **kwds):
    """Runs fn in another thread (another connection); returns a joiner
    that gives fn's attempt() result."""
    box = {}

    def run():
        box['r'] = attempt(fn, *args, **kwds)
    t = threading.Thread(target=run)
    t.daemon = True
    t.start()

    def join(timeout=20):
        t.join(timeout)
        return box.get('r', {'exc': 'still running'})
    join.done = lambda: 'r' in box
    return join


def wait_until(pred, timeout=10):
    deadline = time.time() + timeout
    while not pred():
        if time.time() > deadline:
            return False
        time.sleep(0.01)
    return True


def exposed(m, typeid, *args):
    """The method list the server sends with `create` (what an AutoProxy
    would expose)."""
    token, exp = m._create(typeid, *args)
    return sorted(exp)


def lock_checks(m, r):
    lk = m.Lock()
    r['lock_str_new'] = str(lk)
    r['lock_acquire'] = lk.acquire()
    r['lock_str_held'] = str(lk)
    r['lock_reacquire_timeout'] = attempt(lk.acquire, timeout=TICK)
    r['lock_acquire_noblock'] = attempt(lk.acquire, False)
    r['lock_acquire_zero'] = attempt(lk.acquire, True, 0)
    r['lock_noblock_timeout'] = attempt(lk.acquire, False, 1)
    r['lock_negative_timeout'] = attempt(lk.acquire, True, -2)
    r['lock_other_thread_timeout'] = in_thread(lk.acquire, timeout=TICK)()
    # threading.Lock may be released by another thread (connection).
    r['lock_release_by_other'] = in_thread(lk.release)()
    r['lock_release_unlocked'] = attempt(lk.release)
    with lk:
        r['lock_with_str'] = str(lk)
    # A blocked acquire in another thread wakes on release.
    lk.acquire()
    join = in_thread(lk.acquire)
    time.sleep(0.2)
    t_release = time.time()
    lk.release()
    got = join()
    r['lock_woken'] = {'value': got.get('value'), 'waited': got['seconds'],
                       'late': round(time.time() - t_release, 3)}
    r['lock_getvalue'] = attempt(lk._getvalue)['exc']


def rlock_checks(m, r):
    rl = m.RLock()
    r['rlock_str_new'] = str(rl)
    r['rlock_twice'] = [rl.acquire(), rl.acquire(True, 1)]
    r['rlock_str_held'] = str(rl)
    r['rlock_release_by_other'] = in_thread(rl.release)()
    r['rlock_other_timeout'] = in_thread(rl.acquire, timeout=TICK)()
    r['rlock_releases'] = [attempt(rl.release)['exc'] for _ in range(3)]
    r['rlock_release_msg'] = attempt(rl.release)['msg']
    r['rlock_str_after'] = str(rl)
    r['rlock_noblock_timeout'] = attempt(rl.acquire, False, 1)


def semaphore_checks(m, r):
    s = m.Semaphore(2)
    r['sem_str'] = str(s)
    r['sem_takes'] = [s.acquire(), s.acquire(), s.acquire(False)]
    r['sem_timeout'] = attempt(s.acquire, timeout=TICK)
    r['sem_noblock_timeout'] = attempt(s.acquire, False, 1)
    r['sem_str_empty'] = str(s)
    # Any client may release (no owner); a blocked acquire wakes.
    join = in_thread(s.acquire)
    time.sleep(0.2)
    r['sem_release_other'] = in_thread(s.release)()
    r['sem_woken'] = join()
    s.release()
    s.release()
    s.release()
    r['sem_str_over'] = str(s)   # an unbounded semaphore goes past 2
    r['sem_negative'] = attempt(m.Semaphore, -1)
    b = m.BoundedSemaphore(1)
    r['bsem_str'] = str(b)
    r['bsem_over'] = attempt(b.release)
    r['bsem_cycle'] = [b.acquire(), str(b), b.release(), str(b)]
    with b:
        r['bsem_with'] = b.acquire(False)
    r['sem_getvalue'] = attempt(s._getvalue)['exc']


def event_checks(m, r):
    e = m.Event()
    r['event_str'] = str(e)
    r['event_initial'] = [e.is_set(), attempt(e.wait, TICK), attempt(e.wait, 0)]
    join = in_thread(e.wait, 10)
    time.sleep(0.2)
    e.set()
    r['event_woken'] = join()
    r['event_set'] = [e.is_set(), attempt(e.wait), str(e)]
    e.clear()
    r['event_cleared'] = [e.is_set(), attempt(e.wait, 0), str(e)]


def condition_checks(m, r):
    c = m.Condition()
    r['cond_str'] = str(c)
    r['cond_unowned'] = [attempt(c.wait, 0.1), attempt(c.notify),
                         attempt(c.notify_all), attempt(c.release)]
    with c:
        r['cond_wait_timeout'] = attempt(c.wait, TICK)
        r['cond_wait_zero'] = attempt(c.wait, 0)
        r['cond_notify_nobody'] = attempt(c.notify)
    r['cond_other_thread_notify'] = in_thread(c.notify)()

    # wait() releases the RLock completely (held twice here) and restores
    # the recursion count when it returns.
    c.acquire()
    c.acquire()

    def notifier():
        with c:
            c.notify()
            return 'notified'
    join = in_thread(notifier)
    r['cond_wait_notified'] = attempt(c.wait, 10)
    r['cond_notifier'] = join()
    r['cond_releases_after_wait'] = [attempt(c.release)['exc']
                                    for _ in range(3)]

    # FIFO: three waiters; notify(1) wakes the oldest, notify(2) the rest.
    woke = []

    def waiter(i):
        with c:
            ok = c.wait(10)
            woke.append(i)
            return ok
    joins = []
    for i in range(3):
        joins.append(in_thread(waiter, i))
        wait_until(lambda: str(c).endswith(', %d)>' % (i + 1)))
    r['cond_str_waiting'] = str(c)
    with c:
        c.notify()
    wait_until(lambda: len(woke) == 1)
    time.sleep(0.1)
    r['cond_after_notify1'] = list(woke)
    with c:
        c._callmethod('notify', (2,))   # 3.6's proxy has no notify(n)
    r['cond_waiters'] = [j()['value'] for j in joins]
    r['cond_order'] = woke

    # notify_all and the client-side wait_for.
    box = {'ready': False}

    def wait_for_ready():
        with c:
            return c.wait_for(lambda: box['ready'], 10)
    joins = [in_thread(wait_for_ready) for _ in range(2)]
    wait_until(lambda: str(c).endswith(', 2)>'))
    with c:
        box['ready'] = True
        c.notify_all()
    r['cond_wait_for'] = [j()['value'] for j in joins]
    with c:
        r['cond_wait_for_timeout'] = attempt(c.wait_for, lambda: False, TICK)
    r['cond_str_end'] = str(c)
    r['cond_getvalue'] = attempt(c._getvalue)['exc']


def condition_lock_checks(m, r, kind):
    """Condition(lock): the condition and the lock proxy share one lock."""
    lk = getattr(m, kind)()
    c = m.Condition(lk)
    out = {}
    out['str'] = str(c)
    out['lock_str'] = str(lk)
    # Held through the lock proxy: another client cannot take it through
    # the condition, and the other way round.
    lk.acquire()
    out['cond_str_held'] = str(c)
    out['cond_acquire_other'] = in_thread(c.acquire, True, TICK)()
    lk.release()
    c.acquire()
    out['lock_str_cond_held'] = str(lk)
    out['lock_acquire_other'] = in_thread(lk.acquire, True, TICK)()
    # A blocked lock.acquire() wakes when the condition releases.
    join = in_thread(lambda: lk.acquire() and lk.release() is None)
    time.sleep(0.2)
    c.release()
    out['lock_woken_by_cond_release'] = join()

    # wait/notify through the condition, lock acquired through the
    # condition (CPython: fails for an RLock, see the test).
    def waiter():
        with c:
            return c.wait(10)
    join = in_thread(waiter)
    wait_until(lambda: join.done() or str(c).endswith(', 1)>'))
    if not join.done():
        with c:
            c.notify()
    out['wait_notified'] = join()
    with c:
        out['notify_owned'] = attempt(c.notify)
    if kind == 'Lock':
        # Lock taken through its own proxy, waited on through the condition.
        lk.acquire()
        out['wait_after_lock_acquire'] = attempt(c.wait, TICK)
        lk.release()
    # The lock is free again afterwards.
    out['lock_free_after'] = [lk.acquire(False), lk.release()]
    out['lock_ident'] = lk._token.id
    r['cond_' + kind] = out


def barrier_checks(m, r):
    b = m.Barrier(2)
    r['barrier_str'] = str(b)
    r['barrier_attrs'] = [b.parties, b.n_waiting, b.broken]
    join = in_thread(b.wait, 10)
    wait_until(lambda: b.n_waiting == 1)
    r['barrier_str_waiting'] = str(b)
    mine = attempt(b.wait, 10)
    r['barrier_indices'] = sorted([mine['value'], join()['value']])
    r['barrier_after'] = [b.n_waiting, b.broken]
    # A timeout breaks the barrier, for everyone waiting.
    join = in_thread(b.wait)
    wait_until(lambda: b.n_waiting == 1)
    b2 = m.Barrier(3)
    r['barrier_timeout'] = attempt(b2.wait, TICK)
    r['barrier_timeout_state'] = [b2.broken, b2.n_waiting, str(b2)]
    r['barrier_broken_wait'] = attempt(b2.wait, 1)
    b2.reset()
    r['barrier_reset_state'] = [b2.broken, str(b2)]
    # abort() breaks it: the waiting thread sees BrokenBarrierError.
    b.abort()
    r['barrier_aborted_waiter'] = join()
    r['barrier_aborted'] = [b.broken, str(b)]
    b.reset()
    # reset() with a waiter: the waiter gets BrokenBarrierError, the
    # barrier is usable again.
    join = in_thread(b.wait, 10)
    wait_until(lambda: b.n_waiting == 1)
    b.reset()
    r['barrier_reset_waiter'] = join()
    r['barrier_after_reset'] = [b.broken, b.n_waiting]
    join = in_thread(b.wait, 10)
    r['barrier_reuse'] = sorted([attempt(b.wait, 10)['value'],
                                 join()['value']])
    r['barrier_zero_parties'] = attempt(m.Barrier, 0)['exc']
    # Barrier default timeout (the constructor's).
    b3 = m.Barrier(2, None, TICK)
    r['barrier_default_timeout'] = attempt(b3.wait)
    action = attempt(m.Barrier, 2, print)
    r['barrier_action'] = [action['exc'], action.get('msg')]


def main():
    r = {'version': fmclient.version()}
    m = fmclient.connect_sync()
    r['exposed'] = {t: exposed(m, t, *a) for t, a in (
        ('Lock', ()), ('RLock', ()), ('Semaphore', ()),
        ('BoundedSemaphore', ()), ('Condition', ()), ('Event', ()),
        ('Barrier', (2,)))}
    # The sections use their own objects, so they run side by side (each
    # thread is a client connection of its own) to keep the run short.
    sections = [(lock_checks, ()), (rlock_checks, ()),
                (semaphore_checks, ()), (event_checks, ()),
                (condition_checks, ()), (condition_lock_checks, ('Lock',)),
                (condition_lock_checks, ('RLock',)), (barrier_checks, ())]
    joins = [in_thread(fn, m, r, *args) for fn, args in sections]
    for (fn, args), join in zip(sections, joins):
        out = join(40)
        if out['exc'] is not None:
            r['error_' + fn.__name__ + ''.join(args)] = out
    fmclient.emit(r)


if __name__ == '__main__':
    main()
