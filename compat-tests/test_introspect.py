"""Scenarios 8 and 9: str()/repr() of queue proxies, _getvalue() on a
queue, and methods the object does not expose."""
import re

QUEUE_STR = re.compile(r'^<queue\.Queue object at 0x[0-9a-f]+>$')


def test_str_repr_getvalue_unexposed(py, server, clients):
    r = clients.run(py, 'introspect.py')

    # str(proxy) is the server's __repr__ of the referent ...
    assert QUEUE_STR.match(r['str']), r['str']
    assert r['str'] == r['call_repr']
    assert QUEUE_STR.match(r['call_str']), r['call_str']
    # ... for SyncManager's Queue and JoinableQueue too (both queue.Queue).
    assert QUEUE_STR.match(r['sync_queue_str']), r['sync_queue_str']
    assert QUEUE_STR.match(r['sync_joinable_str']), r['sync_joinable_str']
    # repr(proxy) is local to the client.
    assert re.match(r"^<AutoProxy\[get_task\] object, typeid 'get_task' "
                    r"at 0x[0-9a-f]+>$", r['repr']), r['repr']
    assert re.match(r"^<AutoProxy\[Queue\] object, typeid 'Queue' "
                    r"at 0x[0-9a-f]+>$", r['sync_queue_repr'])

    # _getvalue(): CPython cannot pickle a queue.Queue (it holds locks), so
    # its reply is ('#UNSERIALIZABLE', traceback) -> RemoteError whose text
    # starts with 'Unserializable message:'.
    for case in ('getvalue', 'sync_getvalue'):
        assert r[case]['is_remote_error'], (case, r[case])
        assert 'Unserializable message' in r[case]['head'], (case, r[case])

    # Unexposed / unknown methods: ('#TRACEBACK', ...) -> RemoteError.
    for case in ('nonexistent', 'dunder_len', 'private_attr'):
        assert r[case]['is_remote_error'], (case, r[case])
        assert r[case]['exc'] == 'multiprocessing.managers.RemoteError'

    # Bad arguments to an exposed method: the TypeError itself ('#ERROR').
    for case in ('put_no_args', 'get_bad_kwarg'):
        assert r[case]['exc'] == 'builtins.TypeError', (case, r[case])

    # The connection is still usable after all of that.
    assert r['after_errors'] == 'still works'
