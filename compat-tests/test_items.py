"""Scenarios 5 and 6: items of many types round-trip unchanged from one
client process to another, within one interpreter and across versions.

The item set is lib/compat_items.py; the producer also puts its proxy's own
ident string object and 'put'/'get', which the request pickle
(ident, 'put', (item,), {}) memoizes, so the item refers back outside
itself (test_request_pickle_memoizes checks that this still happens)."""
import pytest

from conftest import interp

CROSS = [((3, 13), (3, 8)), ((3, 8), (3, 13)),
         ((3, 6), (3, 12)), ((3, 12), (3, 6))]


def round_trip(clients, producer, consumer):
    put = clients.run(producer, 'items.py', 'put')
    got = clients.run(consumer, 'items.py', 'get', put['ident'])
    assert got['failures'] == []
    assert got['count'] == put['count']


def test_items_round_trip(py, server, clients):
    round_trip(clients, py, py)


@pytest.mark.parametrize(
    'src,dst', CROSS,
    ids=['py%d.%d-to-py%d.%d' % (a + b) for a, b in CROSS])
def test_items_cross_version(src, dst, server, clients):
    producer, consumer = interp(src), interp(dst)
    if producer is None or consumer is None:
        pytest.skip('needs CPython %d.%d and %d.%d' % (src + dst))
    round_trip(clients, producer, consumer)


def test_request_pickle_memoizes(py, server, clients):
    r = clients.run(py, 'probe_memo.py')
    assert all(r['memo_get'].values()), r
