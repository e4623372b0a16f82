"""Synchronization types between client processes (see test_types_sync.py).

    types_sync_peer.py ROLE WORKDIR [ARG]

Roles, started together by the test:

- ``pair_a`` / ``pair_b``: a Lock held by A (B's acquire(timeout) fails,
  B's blocking acquire wakes on A's release), an Event A sets while B
  waits, a Condition(Lock) B waits on and A notifies, and the lock shared
  by a Condition and its lock proxy.
- ``barrier N``: three processes at a Barrier(3); N = 0 creates it. Round
  one passes; in round two a timeout breaks it for everyone.
- ``holder`` / ``survivor``: the holder takes a Lock, an RLock, a
  Condition's lock and a Semaphore unit, then is SIGKILLed by the test;
  the survivor reports what it can acquire afterwards.

Objects are created by one process and handed to the others as pickled
proxies in files (unpickling a proxy connects with the process authkey).
Files mark the steps, so the order of events does not depend on timing.
"""
import faulthandler
import multiprocessing
import os
import pickle
import sys
import threading
import time

import fmclient


def attempt(fn, *args, **kwds):
    t0 = time.time()
    try:
        value = fn(*args, **kwds)
    except Exception as e:
        return {'exc': fmclient.exc_name(e), 'msg': str(e)[-300:],
                'seconds': round(time.time() - t0, 3), 'at': time.time()}
    return {'exc': None, 'value': value,
            'seconds': round(time.time() - t0, 3), 'at': time.time()}


class Steps:
    def __init__(self, workdir):
        self.workdir = workdir

    def mark(self, name, text='1'):
        fmclient.write_file(os.path.join(self.workdir, name), text)

    def wait(self, name):
        return fmclient.wait_for_file(os.path.join(self.workdir, name))

    def share(self, name, objects):
        self.mark(name, pickle.dumps(objects).hex())

    def receive(self, name):
        return pickle.loads(bytes.fromhex(self.wait(name)))


def pair_a(m, steps, r):
    lock, lock2, rlock = m.Lock(), m.Lock(), m.RLock()
    objs = {'lock': lock, 'event': m.Event(), 'cond': m.Condition(lock2),
            'lock2': lock2, 'rlock': rlock, 'rcond': m.Condition(rlock)}
    lock.acquire()
    steps.share('objs', objs)
    # B tries with a timeout, then blocks; we release a moment later.
    steps.wait('b_timed_out')
    time.sleep(0.3)
    r['lock_released_at'] = time.time()
    lock.release()
    # B waits for the event; we set it.
    steps.wait('b_event_waiting')
    time.sleep(0.2)
    r['event_set_at'] = time.time()
    objs['event'].set()
    # B waits on the condition (it held the lock when it marked the step,
    # so our `with cond` returns only once its wait() released it).
    steps.wait('b_cond_waiting')
    with objs['cond']:
        objs['cond'].notify()
        r['notified_at'] = time.time()
    # The Condition's lock, held through the lock proxy (and an RLock
    # through the condition built on it), once B is out of its wait (locks
    # are not fair: we could take lock2 again before B reacquires it).
    steps.wait('b_cond_done')
    with lock2:
        rlock.acquire()
        steps.mark('a_holds_lock2')
        steps.wait('b_tried_lock2')
        rlock.release()
    steps.wait('b_done')


def pair_b(m, steps, r):
    objs = steps.receive('objs')
    lock = objs['lock']
    r['lock_timeout'] = attempt(lock.acquire, timeout=0.2)
    steps.mark('b_timed_out')
    r['lock_blocked'] = attempt(lock.acquire)
    lock.release()
    steps.mark('b_event_waiting')
    r['event_wait'] = attempt(objs['event'].wait, 10)
    cond = objs['cond']
    cond.acquire()
    steps.mark('b_cond_waiting')
    r['cond_wait'] = attempt(cond.wait, 10)
    r['cond_lock_after_wait'] = str(objs['lock2'])
    cond.release()
    steps.mark('b_cond_done')
    steps.wait('a_holds_lock2')
    r['cond_acquire_lock2_held'] = attempt(cond.acquire, True, 0.2)
    r['rcond_acquire_rlock_held'] = attempt(objs['rcond'].acquire, True, 0.2)
    steps.mark('b_tried_lock2')
    r['cond_acquire_after'] = attempt(cond.acquire, True, 5)
    cond.release()
    steps.mark('b_done')


def barrier(m, steps, r, n):
    if n == 0:
        b = m.Barrier(3)   # kept: the others incref it when they unpickle
        steps.share('barrier', b)
    else:
        b = steps.receive('barrier')
    r['parties'] = b.parties
    r['round1'] = attempt(b.wait, 10)
    steps.mark('round1_%d' % n)
    for i in range(3):
        steps.wait('round1_%d' % i)
    if n < 2:
        # Two parties wait with a timeout; nobody else comes.
        r['round2'] = attempt(b.wait, 0.3)
        r['broken_after'] = b.broken
        steps.mark('round2_%d' % n)
    else:
        steps.wait('round2_0')
        steps.wait('round2_1')
        r['round2'] = attempt(b.wait, 5)
        r['str_broken'] = str(b)
        b.reset()
        r['after_reset'] = [b.broken, b.n_waiting]
        steps.mark('round2_2')
    steps.wait('round2_2')


def holder(m, steps, r):
    objs = {'lock': m.Lock(), 'rlock': m.RLock(), 'cond': m.Condition(),
            'sem': m.Semaphore(1)}
    objs['lock'].acquire()
    objs['rlock'].acquire()
    objs['rlock'].acquire()
    objs['cond'].acquire()
    objs['sem'].acquire()
    steps.share('objs', objs)
    steps.wait('survivor_ready')
    steps.mark('holding')
    # The test kills this process now.
    time.sleep(60)


def survivor(m, steps, r):
    objs = steps.receive('objs')
    # A waiter parked before the holder dies (its acquire is pending).
    box = {}

    def parked():
        box['r'] = attempt(objs['rlock'].acquire, True, 3)
    t = threading.Thread(target=parked)
    t.daemon = True
    t.start()
    steps.mark('survivor_ready')
    steps.wait('killed')
    tries = {}

    def tryit(name, fn, *args):
        tries[name] = attempt(fn, *args)
    threads = [threading.Thread(target=tryit, args=a) for a in (
        ('lock', objs['lock'].acquire, True, 0.3),
        ('cond', objs['cond'].acquire, True, 1.5),
        ('sem', objs['sem'].acquire, True, 0.3))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    t.join(10)
    r['parked_rlock'] = box.get('r')
    r.update(tries)


def main():
    role, workdir = sys.argv[1], sys.argv[2]
    # A hung step shows where it hangs (stderr is in the test's report).
    faulthandler.dump_traceback_later(25, exit=True)
    multiprocessing.current_process().authkey = fmclient.authkey()
    m = fmclient.connect_sync()
    steps = Steps(workdir)
    r = {'version': fmclient.version()}
    if role == 'barrier':
        barrier(m, steps, r, int(sys.argv[3]))
    else:
        globals()[role](m, steps, r)
    fmclient.emit(r)


if __name__ == '__main__':
    main()
