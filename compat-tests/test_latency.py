"""Scenario 4: a client blocked in get() on one queue for ~2 s does not
delay another client's 200 round trips on another queue, and the blocked
get() wakes when a third process puts."""


def test_blocked_get_does_not_stall_others(py, server, clients):
    work = clients.workdir
    blocker = clients.start(py, 'latency.py', 'blocker', work)
    pinger = clients.start(py, 'latency.py', 'pinger', work)
    putter = clients.start(py, 'latency.py', 'putter', work)
    p = pinger.finish()
    u = putter.finish()
    b = blocker.finish()
    assert p['ok']
    assert p['elapsed'] < 1.5, '200 round trips took %.2fs' % p['elapsed']
    # The round trips happened while the get() was still blocked.
    assert p['finished_at'] < u['put_at']
    assert b['value'] == 'wake'
    assert b['waited'] >= 1.5, b
    # Woken by the put, promptly.
    assert b['woke_at'] >= u['put_at'] - 0.05
    assert b['woke_at'] - u['put_at'] < 1.0, (b, u)
