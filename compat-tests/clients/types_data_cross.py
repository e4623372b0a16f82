"""Cross-process visibility of dict, list, Namespace, Value and Array.

    types_data_cross.py writer DIR   creates the objects, fills them, passes
                                     the proxies through the named queue
                                     get_task, waits for DIR/reader_done,
                                     then reads what the reader changed.
    types_data_cross.py reader DIR   gets the proxies, reads, changes them,
                                     writes DIR/reader_done.

The writer stays connected until the reader is done, so the objects keep
a reference (a proxy's last decref frees its object, in CPython too).
"""
import array
import multiprocessing
import os
import sys

import fmclient


def snapshot(d, l, ns, v, a):
    return {'dict': repr(d.copy()), 'list': repr(l[:]), 'ns': str(ns),
            'value': repr(v.get()), 'array': repr(a[:]),
            'dict_str': str(d), 'list_str': str(l)}


def main():
    role, workdir = sys.argv[1], sys.argv[2]
    # Unpickled proxies authenticate with the process's authkey.
    multiprocessing.current_process().authkey = fmclient.authkey()
    sm = fmclient.connect_sync()
    q = fmclient.connect().get_task()
    r = {'version': fmclient.version()}
    if role == 'writer':
        d = sm.dict({'from': 'writer', 1: (1.5, None)})
        l = sm.list(['w', b'bytes', {'k': [1]}])
        ns = sm.Namespace(who='writer', n=1)
        v = sm.Value('i', 1)
        a = sm.Array('d', [0.5, 1.5])
        r['before'] = snapshot(d, l, ns, v, a)
        q.put((d, l, ns, v, a))
        fmclient.wait_for_file(os.path.join(workdir, 'reader_done'), 30)
        r['after'] = snapshot(d, l, ns, v, a)
    else:
        d, l, ns, v, a = q.get(timeout=30)
        r['seen'] = snapshot(d, l, ns, v, a)
        d['reader'] = ['r', 2]
        del d['from']
        l.append(('reader', 3))
        l[0] = 'W'
        ns.who = 'reader'
        ns.extra = {'x'}
        v.value = 2
        a[1] = -1.0
        r['after'] = snapshot(d, l, ns, v, a)
        fmclient.write_file(os.path.join(workdir, 'reader_done'), 'ok')
    fmclient.emit(r)


if __name__ == '__main__':
    main()
