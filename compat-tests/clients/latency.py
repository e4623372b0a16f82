"""Scenario 4: a blocked get() must not delay other clients.

    latency.py blocker WORKDIR   get() on get_task, blocks ~2 s
    latency.py pinger  WORKDIR   200 put+get round trips on get_result
    latency.py putter  WORKDIR   puts into get_task 2 s after the blocker
                                 started waiting (and after the pinger)
"""
import os
import sys
import time

import fmclient

ROUNDS = 200
BLOCK_SECONDS = 2.0


def main():
    role, workdir = sys.argv[1], sys.argv[2]
    ready = os.path.join(workdir, 'blocker-ready')
    pinged = os.path.join(workdir, 'pinger-done')
    m = fmclient.connect()
    if role == 'blocker':
        q = m.get_task()
        q.qsize()  # open the per-thread connection before timing
        t0 = time.time()
        fmclient.write_file(ready, repr(t0))
        value = q.get()
        t1 = time.time()
        fmclient.emit({'value': value, 'waited': t1 - t0, 'woke_at': t1})
    elif role == 'pinger':
        r = m.get_result()
        r.qsize()
        fmclient.wait_for_file(ready)
        time.sleep(0.3)  # let the blocker's get() reach the server
        t0 = time.time()
        ok = True
        for i in range(ROUNDS):
            r.put(i)
            if r.get(timeout=5) != i:
                ok = False
        t1 = time.time()
        fmclient.write_file(pinged, repr(t1))
        fmclient.emit({'elapsed': t1 - t0, 'finished_at': t1, 'ok': ok})
    elif role == 'putter':
        q = m.get_task()
        q.qsize()
        t_ready = float(fmclient.wait_for_file(ready))
        fmclient.wait_for_file(pinged)
        delay = t_ready + BLOCK_SECONDS - time.time()
        if delay > 0:
            time.sleep(delay)
        t = time.time()
        q.put('wake')
        fmclient.emit({'put_at': t})
    else:
        raise SystemExit('unknown role %r' % role)


if __name__ == '__main__':
    main()
