"""Scenario 1: a master puts tasks, two workers square them, the master
collects the results (every process a stock client of one interpreter)."""

NTASKS = 10
NWORKERS = 2


def test_master_worker(py, server, clients):
    master = clients.start(py, 'master.py', NTASKS, NWORKERS)
    workers = [clients.start(py, 'worker.py', 'w%d' % i)
               for i in range(NWORKERS)]
    done = [w.finish()['done'] for w in workers]
    results = master.finish()['results']
    assert sorted((n, sq) for n, sq, _ in results) == \
        [(n, n * n) for n in range(1, NTASKS + 1)]
    assert sum(done) == NTASKS
    assert set(w for _, _, w in results) <= {'w0', 'w1'}
