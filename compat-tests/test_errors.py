"""Scenario 3: queue semantics and the exceptions clients see: Empty,
Full, ValueError from task_done, 3.13's ShutDown, qsize/empty/full, and the
method list the server exposes to AutoProxy clients."""


def expected_empty(server, py):
    """queue.Empty, except where CPython itself cannot deliver it: a >= 3.7
    CPython server pickles it as `_queue.Empty`, which 3.6 cannot import."""
    if server.empty_unreadable_by(py.minor):
        return 'builtins.ModuleNotFoundError'
    return 'queue.Empty'


def test_queue_errors_and_state(py, server, clients):
    r = clients.run(py, 'errors.py')
    empty = expected_empty(server, py)

    # Method names come from the server's create reply, whatever the client.
    expected = sorted(server.expected_exposed())
    assert r['exposed_named'] == expected
    assert r['exposed_sync_queue'] == expected
    assert r['exposed_sync_joinable'] == expected

    for case in ('get_timeout', 'get_positional_timeout'):
        assert r[case]['exc'] == empty, (case, r[case])
        assert 0.19 <= r[case]['seconds'] < 2.0, (case, r[case])
    for case in ('get_nowait', 'get_noblock'):
        assert r[case]['exc'] == empty, (case, r[case])
        assert r[case]['seconds'] < 0.15, (case, r[case])
    assert r['sync_distinct'] == [True, 1, 0, empty]
    assert r['sync_get'] == 'only in a'

    assert r['empty_initially'] == [0, True, False]
    assert r['after_put'] == [1, False, False]
    assert r['get_after_put'] == {'exc': None, 'value': 'x',
                                  'seconds': r['get_after_put']['seconds']}
    assert r['put_unbounded_nowait']['exc'] is None
    assert r['get_y']['value'] == 'y'

    # small = Queue(2)
    assert r['small_puts'] == [None, None]
    assert r['small_state'] == [2, False, True]
    assert r['put_nowait_full']['exc'] == 'queue.Full'
    assert r['put_nowait_full']['seconds'] < 0.15
    assert r['put_timeout_full']['exc'] == 'queue.Full'
    assert 0.19 <= r['put_timeout_full']['seconds'] < 2.0
    assert r['put_noblock_full']['exc'] == 'queue.Full'
    assert r['small_gets'] == [1, 2]
    assert r['small_after'] == [0, True, False]
    # smalljobs = JoinableQueue(2)
    assert r['smalljobs_full']['exc'] == 'queue.Full'
    assert r['smalljobs_state'] == [2, True]
    # SyncManager().Queue(2) / Queue(maxsize=1): create() passes arguments
    assert r['sync_maxsize_positional'] == 'queue.Full'
    assert r['sync_maxsize_keyword'] == [True, 'queue.Full']

    # task_done() more often than put() -> ValueError (sent as '#ERROR')
    assert r['task_done_fresh']['exc'] == 'ValueError'
    assert r['task_done_fresh']['msg'] == 'task_done() called too many times'
    assert r['join_idle']['exc'] is None
    assert r['task_done_once']['exc'] is None
    assert r['task_done_twice']['exc'] == 'ValueError'
    assert r['join_after']['exc'] is None
    assert r['sync_joinable'] == [None, 'ValueError']

    if py.minor >= (3, 13) and server.exposes_shutdown:
        s = r['shutdown']
        assert s['put_after'] == 'queue.ShutDown'
        assert s['get_remaining']['value'] == 1   # items left stay gettable
        assert s['get_after_drained'] == 'queue.ShutDown'
        assert s['get_nowait_after'] == 'queue.ShutDown'
        assert s['immediate_get'] == 'queue.ShutDown'
        assert s['immediate_qsize'] == 0
        assert s['woken_get']['exc'] == 'queue.ShutDown', s['woken_get']
        assert s['woken_get']['seconds'] < 5
    else:
        assert 'shutdown' not in r

