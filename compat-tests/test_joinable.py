"""Scenario 2: 10,000 items through a JoinableQueue with task_done and a
None terminator; the producer's join() returns only after the consumer
finished.  Both the registered `jobs` and a SyncManager().JoinableQueue()
whose proxy the producer pickles to the consumer (Token, RebuildProxy,
incref by a process that did not create it)."""
import pytest

N = 10000


@pytest.mark.parametrize('mode', ['named', 'sync'])
def test_joinable_queue(py, server, clients, mode):
    work = clients.workdir
    producer = clients.start(py, 'jq_producer.py', mode, N, work)
    consumer = clients.start(py, 'jq_consumer.py', mode, work)
    c = consumer.finish(timeout=120)
    p = producer.finish(timeout=120)
    assert c == {'count': N, 'in_order': True}
    # The consumer wrote its marker before its last task_done(): join()
    # must not have returned before that.
    assert p['consumed_at_join'] == str(N), p
    assert p['qsize'] == 0
