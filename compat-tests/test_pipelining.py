"""A client that pipelines requests and never reads its replies does not
stall the server: other clients keep their latency (one interpreter is
enough: the server's fairness is what is tested)."""


def test_flooding_client_does_not_stall_others(py, server, clients):
    if py.minor != (3, 11):
        return
    r = clients.run(py, 'pipelining.py')
    assert r['flood_sent'] > 1000, r
    assert r['round_trips_seconds'] < 2.0, r
    assert server.alive()
