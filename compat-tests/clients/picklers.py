"""Issue 15: what real picklers send, against the server.

Each check pickles the real object with the real library: the clients of
`multiprocess` (dill) and billiard (Celery's fork) speak the protocol
themselves; dill (plain and recurse) and cloudpickle requests are sent raw
on a stock connection, as a client built on them would. Prints one json
dict of check -> observed value; the test compares with what CPython's
server gives.
"""
import gc
import sys

import fmclient


def docs_example(mod):
    """The Python docs' "Proxy Objects" example, under `mod`'s manager."""
    # Proxies a reply carries authenticate with the process's key.
    sys.modules[mod.__name__.split('.')[0]].current_process().authkey = fmclient.authkey()
    m = mod.SyncManager(address=fmclient.address(), authkey=fmclient.authkey())
    m.connect()
    a = m.list()
    b = m.list()
    a.append(b)
    out = {'str_a': str(a), 'str_b': str(b)}
    b.append(7)
    out['a0'] = a[0][:]
    out['slice'] = m.list(range(5))[1:4]
    out['whole'] = m.list(range(3))[:]
    # A dict and a queue keep a stored proxy's referent alive after the
    # client drops its own proxy.
    d = m.dict()
    d['k'] = m.list([1, 2])
    q = m.Queue()
    q.put(m.dict({'x': 1}))
    gc.collect()
    out['dict_held'] = d['k'][:]
    out['queue_held'] = q.get(timeout=10).copy()
    return out


def raw(dumps, label):
    """Requests pickled by `dumps` on a stock connection."""
    from multiprocessing.managers import dispatch
    m = fmclient.connect_sync()
    lst = m.list()
    ident = lst._token.id
    conn = m._Client(m._address, authkey=m._authkey)
    dispatch(conn, None, 'accept_connection', ('picklers',))
    try:
        def call(method, *args):
            conn.send_bytes(dumps((ident, method, args, {})))
            kind, result = __import__('pickle').loads(conn.recv_bytes())
            if kind != '#RETURN':
                return '%s: %s' % (kind, str(result)[:200])
            return result
        out = {}
        out['extend_range'] = (call('extend', range(1, 10, 2)), lst[:])
        out['getitem_slice'] = call('__getitem__', slice(1, None, 2))
        out['setitem_slice'] = (call('__setitem__', slice(0, 2), [set([1]), frozenset([2])]), str(lst))
        out['extend_misc'] = (call('extend', [bytearray(b'ab'), complex(1, 2), ValueError('v')]), str(lst[-3:]))
    finally:
        conn.close()
    return {label + '.' + k: v for k, v in out.items()}


def main():
    out = {}
    import multiprocessing.managers as stock
    out.update({'stock.' + k: v for k, v in docs_example(stock).items()})
    import multiprocess.managers as mp
    out.update({'multiprocess.' + k: v for k, v in docs_example(mp).items()})
    import billiard.managers as bl
    out.update({'billiard.' + k: v for k, v in docs_example(bl).items()})
    import dill
    import cloudpickle
    import pickle
    out.update(raw(lambda o: pickle.dumps(o, 2), 'pickle2'))
    out.update(raw(lambda o: dill.dumps(o, 4), 'dill'))
    out.update(raw(lambda o: dill.dumps(o, 2), 'dill2'))
    out.update(raw(lambda o: dill.dumps(o, 4, recurse=True), 'dill_recurse'))
    out.update(raw(lambda o: cloudpickle.dumps(o, 4), 'cloudpickle'))
    fmclient.emit(out)


if __name__ == '__main__':
    main()
