"""Scenario 3: queue semantics and the exceptions a client sees.

Prints one json dict; the test decides what is expected.  Exceptions are
reported by ``kind()``: a stable name for the classes we care about
(checked with isinstance on the client's own classes), else module.qualname.
"""
import multiprocessing
import queue
import threading
import time
from multiprocessing.managers import RemoteError

import fmclient


def kind(e):
    if e is None:
        return None
    if hasattr(queue, 'ShutDown') and isinstance(e, queue.ShutDown):
        return 'queue.ShutDown'
    for cls, name in ((queue.Empty, 'queue.Empty'), (queue.Full, 'queue.Full'),
                      (RemoteError, 'RemoteError'),
                      (multiprocessing.AuthenticationError,
                       'AuthenticationError'),
                      (ValueError, 'ValueError'), (TypeError, 'TypeError')):
        if isinstance(e, cls):
            return name
    return fmclient.exc_name(e)


def attempt(fn, *args, **kwds):
    t0 = time.time()
    try:
        value = fn(*args, **kwds)
    except Exception as e:
        return {'exc': kind(e), 'msg': str(e)[:300],
                'seconds': time.time() - t0}
    return {'exc': None, 'value': value, 'seconds': time.time() - t0}


def exposed(proxy):
    return sorted(type(proxy)._exposed_)


def main():
    r = {'version': fmclient.version()}
    m = fmclient.connect()

    q = m.get_task()
    r['exposed_named'] = exposed(q)
    r['get_timeout'] = attempt(q.get, timeout=0.2)
    r['get_positional_timeout'] = attempt(q.get, True, 0.2)
    r['get_nowait'] = attempt(q.get_nowait)
    r['get_noblock'] = attempt(q.get, False)
    r['empty_initially'] = [q.qsize(), q.empty(), q.full()]
    q.put('x')
    r['after_put'] = [q.qsize(), q.empty(), q.full()]
    r['get_after_put'] = attempt(q.get_nowait)
    r['put_unbounded_nowait'] = attempt(q.put_nowait, 'y')
    r['get_y'] = attempt(q.get, timeout=1)

    s = m.small()  # Queue(2)
    r['small_puts'] = [attempt(s.put, 1, timeout=5)['exc'], attempt(s.put_nowait, 2)['exc']]
    r['small_state'] = [s.qsize(), s.empty(), s.full()]
    r['put_nowait_full'] = attempt(s.put_nowait, 3)
    r['put_timeout_full'] = attempt(s.put, 3, timeout=0.2)
    r['put_noblock_full'] = attempt(s.put, 3, False)
    r['small_gets'] = [s.get(timeout=1), s.get(timeout=1)]
    r['small_after'] = [s.qsize(), s.empty(), s.full()]

    sj = m.smalljobs()  # JoinableQueue(2)
    sj.put('a', timeout=5)
    sj.put('b', timeout=5)
    r['smalljobs_full'] = attempt(sj.put_nowait, 'c')
    r['smalljobs_state'] = [sj.qsize(), sj.full()]
    sj.get(timeout=1)
    sj.get(timeout=1)

    j = m.jobs()
    r['task_done_fresh'] = attempt(j.task_done)
    r['join_idle'] = attempt(j.join)
    j.put(1)
    j.get(timeout=1)
    r['task_done_once'] = attempt(j.task_done)
    r['task_done_twice'] = attempt(j.task_done)
    r['join_after'] = attempt(j.join)

    sm = fmclient.connect_sync()
    a, b = sm.Queue(), sm.Queue()
    r['exposed_sync_queue'] = exposed(a)
    a.put('only in a')
    r['sync_distinct'] = [a._id != b._id, a.qsize(), b.qsize(),
                          attempt(b.get_nowait)['exc']]
    r['sync_get'] = a.get(timeout=1)
    c = sm.Queue(2)
    c.put(1)
    c.put(2)
    r['sync_maxsize_positional'] = attempt(c.put_nowait, 3)['exc']
    d = sm.Queue(maxsize=1)
    d.put(1)
    r['sync_maxsize_keyword'] = [d.full(), attempt(d.put, 2, timeout=0.1)['exc']]
    jq = sm.JoinableQueue()
    r['exposed_sync_joinable'] = exposed(jq)
    jq.put('t')
    jq.get(timeout=1)
    jq.task_done()
    r['sync_joinable'] = [attempt(jq.join)['exc'],
                          attempt(jq.task_done)['exc']]

    if hasattr(queue, 'ShutDown') and 'shutdown' in r['exposed_sync_queue']:
        r['shutdown'] = shutdown_checks(sm)

    fmclient.emit(r)


def shutdown_checks(sm):
    out = {}
    q = sm.Queue()
    q.put(1)
    q.shutdown()
    out['put_after'] = attempt(q.put, 2)['exc']
    out['get_remaining'] = attempt(q.get, timeout=1)
    out['get_after_drained'] = attempt(q.get, timeout=1)['exc']
    out['get_nowait_after'] = attempt(q.get_nowait)['exc']

    q2 = sm.Queue()
    q2.put(1)
    q2.put(2)
    q2.shutdown(immediate=True)
    out['immediate_get'] = attempt(q2.get, timeout=1)['exc']
    out['immediate_qsize'] = q2.qsize()

    # A get() blocked in the server must be woken by shutdown().
    q3 = sm.Queue()
    box = {}

    def blocked_get():
        box['r'] = attempt(q3.get, timeout=10)

    t = threading.Thread(target=blocked_get)
    t.start()
    time.sleep(0.3)
    q3.shutdown()
    t.join(15)
    out['woken_get'] = box.get('r', {'exc': 'still blocked'})
    return out


if __name__ == '__main__':
    main()
