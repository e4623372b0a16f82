"""Object lifetimes: refcounts through create/incref/decref, and a proxy
stored inside a queue keeping its referent alive."""
import gc
import multiprocessing
import time

import fmclient


def settle():
    gc.collect()
    time.sleep(0.1)


def main():
    # Proxies passed inside items are rebuilt with the process authkey.
    multiprocessing.current_process().authkey = fmclient.authkey()
    m = fmclient.connect_sync()
    r = {'start': m._number_of_objects()}
    outer, inner = m.Queue(), m.Queue()
    inner.put('inner item')
    r['two'] = m._number_of_objects()
    outer.put(inner)
    del inner
    settle()
    # The queue still holds a proxy to `inner`.
    r['held_by_queue'] = m._number_of_objects()
    got = outer.get(timeout=5)
    r['inner_item'] = got.get(timeout=5)
    del got
    settle()
    r['after_drop_inner'] = m._number_of_objects()
    del outer
    settle()
    r['end'] = m._number_of_objects()
    fmclient.emit(r)


if __name__ == '__main__':
    main()
