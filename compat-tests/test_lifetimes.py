"""Object lifetimes: what number_of_objects reports as proxies come and go,
and a proxy stored inside a shared queue keeping its referent alive."""
import time


def test_refcounts_and_stored_proxies(py, server, clients):
    r = clients.run(py, 'lifetimes.py')
    assert r['start'] == 0
    assert r['two'] == 2
    # fastmanager counts the inner queue while the outer one holds a proxy
    # to it; CPython keeps it alive too but no longer counts it.
    assert r['held_by_queue'] == (2 if server.kind == 'rust' else 1)
    assert r['inner_item'] == 'inner item'
    if server.kind == 'rust':
        # The inner queue lives on only for the grace period after it left
        # the outer queue, until the getter's proxy held its own reference.
        assert r['after_drop_inner'] in (1, 2)
        assert r['end'] in (0, 1)
    else:
        # CPython keeps an object rebuilt inside the server alive forever
        # (id_to_local_proxy_obj, gh-103136).
        assert r['end'] >= 0


def test_stored_proxy_released_after_grace(py, server, clients):
    if py.minor != (3, 11):
        return
    r = clients.run(py, 'lifetimes.py')
    assert r['end'] in (0, 1)
    if server.kind != 'rust':
        return
    # After the grace period nothing is left on fastmanager.
    time.sleep(5.5)
    r = clients.run(py, 'lifetimes.py')
    assert r['start'] == 0
