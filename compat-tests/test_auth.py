"""Scenario 7: a wrong authkey raises multiprocessing.AuthenticationError
on connect; the server keeps serving."""


def test_wrong_authkey(py, server, clients):
    r = clients.run(py, 'auth.py')
    for case in ('base_wrong', 'sync_wrong', 'empty_key'):
        assert r[case]['exc'] is not None, case
        assert r[case]['is_auth'], (case, r[case])
    assert r['round_trip'] == ['ok', 42]
    # and a separate, later client still gets served
    assert clients.run(py, 'auth.py')['round_trip'] == ['ok', 42]
