"""The docs' "Proxy Objects" example as a doctest against the server under
test (FASTMANAGER_SERVER=rust or cpython: both must print proxies stored in
containers as CPython does)."""


def test_docs_proxy_objects_example(py, server, clients):
    r = clients.run(py, 'proxy_objects.py')
    assert r['attempted'] >= 8
    assert r['failed'] == 0, r['report']
