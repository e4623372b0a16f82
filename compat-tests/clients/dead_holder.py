"""Holds references to objects of every way a client comes to hold one,
then waits to be SIGKILLed (see test_lifetimes.py).

    dead_holder.py WORKDIR

Created by this process: a dict (used, so a serving connection is open),
a Queue, a Lock it acquires, a list holding a proxy to another dict, and
an Iterator the server sent back as #PROXY. It also holds a proxy to the
named queue get_task. Writes WORKDIR/holding once all are held."""
import os
import sys
import time

import fmclient


def main():
    work = sys.argv[1]
    m = fmclient.connect_sync()
    d = m.dict({'a': 1})
    d['b'] = 2
    q = m.Queue()
    q.put('item')
    lock = m.Lock()
    lock.acquire()
    nested = m.list([m.dict({'inner': True})])
    it = iter(d)
    next(it)
    task = fmclient.connect().get_task()
    task.qsize()
    held = (d, q, lock, nested, it, task)
    fmclient.write_file(os.path.join(work, 'holding'), str(len(held)))
    while True:
        time.sleep(1)


if __name__ == '__main__':
    main()
