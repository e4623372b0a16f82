"""`fastmanager serve --backend ...` as a command (issue 18): what it
refuses to start with, and a gateway over one Redis server without
cluster mode (compat-tests/redis_support.py).
"""
import threading
import time

import pytest

from conftest import free_port
from redis_support import SEEDS, Gateway, one_redis_server, only_rust, serve

pytestmark = only_rust


def test_one_redis_server_without_cluster_mode(tmp_path):
    gateways = []
    with one_redis_server(tmp_path) as port:
        try:
            backend = 'redis://127.0.0.1:%d' % port
            gateways = [Gateway(str(tmp_path / n), backend) for n in ('a.log', 'b.log')]
            qa, qb = (g.manager().tasks() for g in gateways)
            got = []
            t = threading.Thread(target=lambda: got.append(qb.get(timeout=30)))
            t.start()
            time.sleep(0.3)
            qa.put('over one server')
            t.join(10)
            assert got == ['over one server']
            da, db = (g.manager().shared() for g in gateways)
            da['k'] = 'v'
            assert db['k'] == 'v'
        finally:
            for g in gateways:
                g.stop()


@pytest.mark.parametrize('kind', ['Condition', 'Barrier(2)', 'Array(i,1)'])
def test_unserved_type_is_refused_naming_backend_and_type(redis_cluster, kind):
    r = serve('--backend', SEEDS, '--register', 'q=Queue',
              '--register', 'x=' + kind)
    assert r.returncode == 1, r
    assert 'redis backend' in r.stderr and SEEDS in r.stderr, r.stderr
    assert 'does not serve %s (served: ' % kind.split('(')[0] in r.stderr, r.stderr


def test_an_idle_gateway_spends_no_cpu(redis_cluster, tmp_path):
    # A gateway busy-polls after events by default (--busy-poll-us 100):
    # once its client stops calling, it must sleep again.
    from test_busy_poll import IDLE_WINDOW, cpu_seconds
    g = Gateway(str(tmp_path / 'gw.log'))
    try:
        q = g.manager().tasks()
        for i in range(300):
            q.put(i)
            assert q.get() == i
        before = cpu_seconds(g.proc.pid)
        time.sleep(IDLE_WINDOW)
        used = cpu_seconds(g.proc.pid) - before
        assert used < 0.1 * IDLE_WINDOW, \
            'the gateway used %.2f s of CPU in %.1f s idle' % (used, IDLE_WINDOW)
        q.put('after')
        assert q.get() == 'after'
    finally:
        g.stop()


def test_no_registrations_refused(redis_cluster):
    r = serve('--backend', SEEDS)
    assert r.returncode == 1, r
    assert 'redis backend' in r.stderr and 'serves only' in r.stderr


def test_unreachable_node_is_named():
    r = serve('--backend', 'redis://127.0.0.1:%d' % free_port(),
              '--register', 'q=Queue')
    assert r.returncode == 1, r
    assert 'redis backend node 127.0.0.1:' in r.stderr
    assert 'cannot connect' in r.stderr


@pytest.mark.parametrize('url', ['http://127.0.0.1:7101', 'redis://nohost',
                                 'redis://127.0.0.1:0'])
def test_malformed_backend_url_is_a_usage_error(url):
    r = serve('--backend', url, '--register', 'q=Queue')
    assert r.returncode == 2, r
    assert '--backend' in r.stderr

