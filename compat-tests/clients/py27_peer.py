"""Issue 15: one side of a Python 2.7 <-> 3.x exchange on one server.

Runs under CPython 2.7 and 3.x alike (no fmclient: that needs 3.6+).
`master N`: puts N tasks on get_task (int, bytes, text, a set, a nested
tuple), then reads N results and prints them. `list-slices`: slices a list
proxy as 2.7 does it. `put-bytes`: (2.7) puts
a str of non-ASCII bytes; `get-one`: gets one item and reports it, or the
error, and the queue's size after. `worker`: gets tasks until
None, puts back what it got with its own types' names, then tries one
get_nowait on the empty queue. Prints one FMRESULT json line.
"""
import json
import os
import sys
from multiprocessing.managers import BaseManager


class M(BaseManager):
    pass


M.register('get_task')
M.register('get_result')


def type_name(x):
    return type(x).__name__


def main():
    m = M(address=(os.environ['FM_HOST'], int(os.environ['FM_PORT'])),
          authkey=os.environ['FM_AUTHKEY'].encode('ascii'))
    m.connect()
    task, result = m.get_task(), m.get_result()
    out = {'python': list(sys.version_info[:2])}
    if sys.argv[1] == 'list-slices':
        # 2.7's ListProxy slices with __getslice__ / __delslice__.
        from multiprocessing.managers import SyncManager
        sm = SyncManager(address=m.address, authkey=os.environ['FM_AUTHKEY'].encode('ascii'))
        sm.connect()
        lst = sm.list(range(6))
        out['slices'] = [lst[1:], lst[:2], lst[-2:], lst[-100:2], lst[2:100], lst[::2]]
        del lst[0:2]
        out['after_del'] = lst[:]
    elif sys.argv[1] == 'put-bytes':
        # A 2.7 str of non-ASCII bytes, which Python 3 cannot unpickle.
        task.put('caf\xc3\xa9')
    elif sys.argv[1] == 'get-one':
        try:
            x = task.get(timeout=10)
            out['got'] = [type_name(x), [ord(c) for c in x] if sys.version_info[0] == 2 else repr(x)]
        except Exception as e:
            out['error'] = [type(e).__name__, str(e)[-300:]]
        out['left'] = task.qsize()
    elif sys.argv[1] == 'master':
        n = int(sys.argv[2])
        for i in range(n):
            task.put((i, b'raw\x00\xff', u'caf\xe9', set([i]), (u'nested', [i])))
        task.put(None)
        got = [result.get(timeout=30) for _ in range(n)]
        out['results'] = [[r[0], type_name(r[1]), r[1], type_name(r[2]), r[2]]
                          for r in got]
    else:
        seen = []
        while True:
            t = task.get(timeout=30)
            if t is None:
                break
            seen.append([type_name(v) for v in t])
            # A 2.7 str of ASCII and a unicode: both reach 3.x as str.
            result.put((t[0], 'ascii str', u'unicode \xe9'))
            out['last_raw'] = [ord(c) for c in t[1]] if sys.version_info[0] == 2 else list(t[1])
            out['last_text'] = t[2]
            out['last_set'] = sorted(t[3])
        out['task_types'] = seen
        try:
            task.get_nowait()
            out['empty'] = None
        except Exception as e:
            out['empty'] = '%s.%s' % (type(e).__module__, type(e).__name__)
    sys.stdout.write('FMRESULT ' + json.dumps(out) + '\n')


if __name__ == '__main__':
    main()
