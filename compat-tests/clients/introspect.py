"""Scenarios 8 and 9: str/repr of proxies, _getvalue, unexposed methods,
bad arguments; then the proxy must still work."""
from multiprocessing.managers import RemoteError

import fmclient


def attempt(fn, *args, **kwds):
    try:
        value = fn(*args, **kwds)
    except Exception as e:
        return {'exc': fmclient.exc_name(e),
                'is_remote_error': isinstance(e, RemoteError),
                'head': str(e)[:300], 'msg': str(e)[-600:]}
    return {'exc': None, 'value': repr(value)}


def main():
    m = fmclient.connect()
    q = m.get_task()
    r = {
        'ident': q._id,
        'str': str(q),
        'repr': repr(q),
        'call_repr': q._callmethod('__repr__'),
        'call_str': q._callmethod('__str__'),
        'getvalue': attempt(q._getvalue),
        'nonexistent': attempt(q._callmethod, 'nonexistent'),
        'dunder_len': attempt(q._callmethod, '__len__'),
        'private_attr': attempt(q._callmethod, '_put', ('x',)),
        'put_no_args': attempt(q._callmethod, 'put'),
        'get_bad_kwarg': attempt(q._callmethod, 'get', (), {'bogus': 1}),
    }
    q.put('still works')
    r['after_errors'] = q.get(timeout=5)

    sm = fmclient.connect_sync()
    jq = sm.JoinableQueue()
    sq = sm.Queue()
    r['sync_joinable_str'] = str(jq)
    r['sync_queue_str'] = str(sq)
    r['sync_queue_repr'] = repr(sq)
    r['sync_getvalue'] = attempt(sq._getvalue)
    fmclient.emit(r)


if __name__ == '__main__':
    main()
