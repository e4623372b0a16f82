"""The Redis backend (issue 18): two gateways (``fastmanager serve --backend
redis://...``) over one real Redis Cluster share their named objects with
stock CPython clients.

The cluster is real: scripts/redis-cluster.sh starts 6 redis-server
processes (127.0.0.1:7101-7106, 3 masters + 3 replicas) and redis-cli makes
them a cluster. scripts/test-all.sh installs redis-server when missing.
Clients are separate processes (clients/redis_backend.py) or this one.
The last test SIGKILLs the master of a queue's slot under load: clients
must see a stall, not an error.
"""
import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import (HERE, REPO, client_env, free_port, rust_binary,
                      server_kind, stop_process)

SCRIPT = REPO / 'scripts' / 'redis-cluster.sh'
# REDIS_CLUSTER_PORT (scripts/redis-cluster.sh) moves the cluster's ports.
PORT = int(os.environ.get('REDIS_CLUSTER_PORT', '7101'))
SEEDS = 'redis://' + ','.join('127.0.0.1:%d' % (PORT + i) for i in range(3))
AUTHKEY = 'redis-backend-test'
CLIENT = HERE / 'clients' / 'redis_backend.py'
REGISTER = ['tasks=Queue', 'small=Queue(2)', 'jobs=JoinableQueue',
            'shared=dict', 'ns=Namespace', 'counter=Value(i,7)']
KEYS = ['fm:{q:tasks}:items', 'fm:{q:small}:items', 'fm:{q:jobs}:items',
        'fm:{q:tasks}:unfinished', 'fm:{q:small}:unfinished',
        'fm:{q:jobs}:unfinished', 'fm:{d:shared}:hash', 'fm:{n:ns}:attrs']

pytestmark = pytest.mark.skipif(
    server_kind() != 'rust', reason="the Redis backend is the Rust server's")


def redis_cli(*args):
    return subprocess.run(['redis-cli', '-c', '-p', str(PORT), *args],
                          capture_output=True, text=True, timeout=10).stdout


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    """The cluster's state directory (pid files: redis-PORT.pid)."""
    if shutil.which('redis-server') is None:
        pytest.fail('redis-server is not installed (scripts/test-all.sh '
                    'installs it: apt-get install -y redis-server)')
    state = tmp_path_factory.mktemp('redis')
    env = dict(os.environ, REDIS_CLUSTER_DIR=str(state))
    subprocess.run([str(SCRIPT), 'start'], env=env, check=True, timeout=60)
    yield state
    subprocess.run([str(SCRIPT), 'stop'], env=env, timeout=30)


class Gateway:
    def __init__(self, log, backend=SEEDS, env=None, register=REGISTER, extra=()):
        self.port = free_port()
        self.log = log
        args = [a for r in register for a in ('--register', r)] + list(extra)
        with open(log, 'wb') as out:
            self.proc = subprocess.Popen(
                [rust_binary(), 'serve', '--address', '127.0.0.1:%d' % self.port,
                 '--authkey', AUTHKEY, '--backend', backend, *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=dict(os.environ, **(env or {})))
        deadline = time.time() + 15
        while True:
            assert self.proc.poll() is None, open(log).read()
            try:
                socket.create_connection(('127.0.0.1', self.port), 0.5).close()
                return
            except OSError:
                assert time.time() < deadline, open(log).read()
                time.sleep(0.05)

    @property
    def address(self):
        return '127.0.0.1:%d' % self.port

    def manager(self):
        from multiprocessing.managers import (BaseManager, DictProxy,
                                              NamespaceProxy, ValueProxy)

        class M(BaseManager):
            pass
        M.register('tasks')
        M.register('small')
        M.register('jobs')
        M.register('shared', proxytype=DictProxy)
        M.register('ns', proxytype=NamespaceProxy)
        M.register('counter', proxytype=ValueProxy)
        m = M(('127.0.0.1', self.port), authkey=AUTHKEY.encode())
        m.connect()
        return m

    def stop(self):
        stop_process(self.proc)


@contextlib.contextmanager
def two_gateways(directory, register=REGISTER):
    """Gateways A and B (logs in `directory`), which must still be alive
    at the end."""
    a = Gateway(str(directory / 'a.log'), register=register)
    b = Gateway(str(directory / 'b.log'), register=register)
    yield a, b
    for g in (a, b):
        alive = g.proc.poll() is None
        g.stop()
        assert alive, 'gateway died:\n' + open(g.log).read()


@pytest.fixture(scope='module')
def gateways(cluster, tmp_path_factory):
    with two_gateways(tmp_path_factory.mktemp('gateways')) as pair:
        yield pair


@pytest.fixture
def gw(gateways):
    """The two gateways, with the named objects empty."""
    for key in KEYS:
        redis_cli('del', key)
    return gateways


def spawn(role, gateway, *args):
    return subprocess.Popen(
        [sys.executable, str(CLIENT), role, gateway.address, AUTHKEY,
         *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=client_env())


def result(proc, timeout=60):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_cluster_is_up_for_the_backend(cluster):
    out = redis_cli('cluster', 'info')
    assert 'cluster_state:ok' in out
    assert 'cluster_known_nodes:6' in out


def test_items_put_on_one_gateway_are_got_on_the_other(gw):
    a, b = gw
    qa, qb = a.manager().tasks(), b.manager().tasks()
    qa.put({'x': [1, 2]})
    qa.put(('two', 2.5))
    assert qb.qsize() == 2 and not qb.empty()
    assert qb.get() == {'x': [1, 2]}
    assert qb.get_nowait() == ('two', 2.5)
    assert qa.empty()
    # The items live in Redis, not in either gateway.
    qb.put(b'bytes')
    assert redis_cli('llen', KEYS[0]).strip() == '1'


def test_ten_thousand_items_across_gateways_none_lost_or_duplicated(gw):
    a, b = gw
    producers, per = 4, 2500
    consumers = [spawn('consume', b) for _ in range(4)]
    started = time.time()
    puts = [spawn('produce', a, i * per, per) for i in range(producers)]
    assert sum(result(p)['put'] for p in puts) == producers * per
    q = a.manager().tasks()
    for _ in consumers:
        q.put(None)
    got = [item for c in consumers for item in result(c)['got']]
    elapsed = time.time() - started
    assert len(got) == producers * per, len(got)
    assert sorted(got) == list(range(producers * per))
    print('10,000 items, 4 producers on A, 4 consumers on B: %.2f s' % elapsed)


def test_blocked_getters_are_served_in_arrival_order(gw):
    a, b = gw
    waiters = []
    for tag in range(4):
        w = spawn('wait', b, tag)
        assert w.stdout.readline().strip() == 'ready'
        waiters.append(w)
        # Long enough for its get to reach the gateway and wait there.
        time.sleep(0.5)
    qa = a.manager().tasks()
    for i in range(4):
        qa.put('item-%d' % i)
    got = {r['tag']: r['item'] for r in map(result, waiters)}
    assert got == {str(i): 'item-%d' % i for i in range(4)}


def test_a_blocked_get_is_woken_by_a_put_on_the_other_gateway(gw):
    a, b = gw
    qa, qb = a.manager().tasks(), b.manager().tasks()
    got = []
    t = threading.Thread(target=lambda: got.append(qb.get(timeout=30)))
    t.start()
    time.sleep(0.3)
    assert not got
    qa.put('wake')
    t.join(10)
    assert got == ['wake']


def test_get_timeout_on_an_empty_queue_raises_queue_empty(gw):
    a, _ = gw
    q = a.manager().tasks()
    t = time.monotonic()
    with pytest.raises(queue.Empty) as e:
        q.get(timeout=0.2)
    waited = time.monotonic() - t
    assert e.type is queue.Empty and e.value.args == ()
    assert 0.19 <= waited < 2.0, waited
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(False)


def test_bounded_queue_full_and_a_blocked_put_woken_by_a_get(gw):
    a, b = gw
    qa, qb = a.manager().small(), b.manager().small()
    qa.put(1)
    qa.put(2)
    assert qb.full() and qb.qsize() == 2
    with pytest.raises(queue.Full):
        qb.put_nowait(3)
    t = time.monotonic()
    with pytest.raises(queue.Full):
        qb.put(3, timeout=0.2)
    assert time.monotonic() - t >= 0.19
    done = []
    th = threading.Thread(target=lambda: done.append(qa.put(3, timeout=30)))
    th.start()
    time.sleep(0.3)
    assert not done
    assert qb.get() == 1
    th.join(10)
    assert done == [None]
    assert [qb.get(), qb.get()] == [2, 3]


def test_joinable_queue_join_waits_for_task_done_on_the_other_gateway(gw):
    a, b = gw
    ja, jb = a.manager().jobs(), b.manager().jobs()
    ja.join()  # nothing unfinished: returns at once
    for i in range(3):
        ja.put(i)
    joined = []
    t = threading.Thread(target=lambda: joined.append(ja.join()))
    t.start()
    for i in range(3):
        assert jb.get() == i
        time.sleep(0.2)
        assert not joined, 'join returned with %d tasks unfinished' % (3 - i)
        jb.task_done()
    t.join(10)
    assert joined == [None]
    with pytest.raises(ValueError) as e:
        jb.task_done()
    assert str(e.value) == 'task_done() called too many times'


# A gateway's lease on a queue (src/backend/redis/pending.rs: LEASE).
LEASE = 5.0
# Test-only: a gateway waits this long between taking items for parked
# gets and answering them, so that a test can act while it holds them.
STALL = {'FASTMANAGER_TEST_STALL_AFTER_TAKE_MS': '3000'}


def held_by_a_gateway(item_count=1, timeout=10):
    """Waits until some gateway's pending hash of `tasks` holds the items
    (taken, not yet answered); its id."""
    deadline = time.monotonic() + timeout
    while True:
        for g in redis_cli('smembers', 'fm:{q:tasks}:gateways').split():
            if redis_cli('hlen', 'fm:{q:tasks}:pending:' + g).strip() == str(item_count):
                return g
        assert time.monotonic() < deadline, 'no gateway took the item'
        time.sleep(0.02)


@contextlib.contextmanager
def item_held_by_a_stalled_gateway(gw, tmp_path, item):
    """A gateway C (stalling after takes) holds `item`, taken for a client
    of C parked in get(); yields C, the client and C's gateway id."""
    a, _ = gw
    c = Gateway(str(tmp_path / 'c.log'), env=STALL)
    waiter = spawn('wait', c, 'c')
    try:
        assert waiter.stdout.readline().strip() == 'ready'
        time.sleep(0.5)
        a.manager().tasks().put(item)
        held = held_by_a_gateway()
        assert redis_cli('llen', KEYS[0]).strip() == '0'
        yield c, waiter, held
    finally:
        waiter.kill()
        waiter.communicate()
        c.stop()


def test_item_of_a_gateway_killed_before_its_reply_goes_to_another(gw, tmp_path):
    # At-least-once: C takes the item for a parked get, and is SIGKILLed
    # before it answers; when C's lease expires, B's lease pass puts the
    # item back and a consumer on B gets it.
    with item_held_by_a_stalled_gateway(gw, tmp_path, 'held') as (c, _, dead):
        os.kill(c.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        c.proc.wait()
        qb = gw[1].manager().tasks()
        assert qb.get(timeout=LEASE + 10) == 'held'
        waited = time.monotonic() - killed
        # The lease, plus up to a second for B's next pass, plus slack.
        assert waited < LEASE + 3, waited
        with pytest.raises(queue.Empty):
            qb.get_nowait()
        assert redis_cli('exists', 'fm:{q:tasks}:pending:' + dead).strip() == '0'
        print('item of a killed gateway got on another %.2f s after the kill' % waited)


def test_item_for_a_client_that_left_goes_back_to_the_queue(gw, tmp_path):
    # The client is SIGKILLed while its gateway holds the item taken for
    # it: the gateway, alive, puts the item back itself (no lease expiry).
    with item_held_by_a_stalled_gateway(gw, tmp_path, 'returned') as (c, waiter, _):
        waiter.kill()
        waiter.communicate()
        assert gw[1].manager().tasks().get(timeout=LEASE - 1) == 'returned'
        assert c.proc.poll() is None
        assert gw[0].manager().tasks().empty()


def test_dict_through_both_gateways(gw):
    a, b = gw
    da, db = a.manager().shared(), b.manager().shared()
    da['k'] = 1
    da[1] = 'one'
    da[(1, 2)] = [3]
    assert db['k'] == 1
    # Python's key equality: 1 == 1.0 == True are one key.
    assert db[1.0] == 'one' and db[True] == 'one'
    assert len(db) == 3 and 'k' in db and 'nope' not in db
    assert set(db.keys()) == {'k', 1, (1, 2)}
    assert db.get('zz') is None and db.get('zz', 'd') == 'd'
    with pytest.raises(KeyError) as e:
        db['missing']
    assert e.value.args == ('missing',)
    with pytest.raises(KeyError) as e:
        del db[('a', 1)]
    assert e.value.args == (('a', 1),)
    assert da.pop('k') == 1 and db.pop('k', 'gone') == 'gone'
    assert db.setdefault('n', 5) == 5 and da.setdefault('n', 6) == 5
    db.update({'u': 1}, v=2)
    assert dict(da.items()) == {1: 'one', (1, 2): [3], 'n': 5, 'u': 1, 'v': 2}
    assert sorted(map(repr, da.values())) == sorted(['1', '2', '5', "'one'", '[3]'])
    assert da.copy() == {1: 'one', (1, 2): [3], 'n': 5, 'u': 1, 'v': 2}
    del da[1]
    db.clear()
    assert len(da) == 0


def test_namespace_through_both_gateways(gw):
    a, b = gw
    na, nb = a.manager().ns(), b.manager().ns()
    na.x = 1
    na.label = ('a', [2])
    assert nb.x == 1 and nb.label == ('a', [2])
    nb.x += 1
    assert na.x == 2
    del nb.label
    with pytest.raises(AttributeError) as e:
        na.label
    assert "'Namespace' object has no attribute 'label'" in str(e.value)
    with pytest.raises(AttributeError):
        del na.missing


def test_value_through_both_gateways(gateways, tmp_path):
    a, b = gateways
    redis_cli('del', 'fm:{v:counter}:value')
    va, vb = a.manager().counter(), b.manager().counter()
    assert va.value == 7  # the key is gone: the start-up value
    va.value = 41
    assert vb.value == 41 and vb.get() == 41
    vb.set('text')
    assert va.value == 'text'
    # A gateway that starts later (with Value(i,7) too) does not reset it.
    c = Gateway(str(tmp_path / 'c.log'))
    try:
        assert c.manager().counter().value == 'text'
    finally:
        c.stop()


def test_create_of_an_unserved_syncmanager_type_is_a_clear_error(gw):
    from multiprocessing.managers import RemoteError
    with pytest.raises(RemoteError) as e:
        sync_manager(gw[0]).Array('i', [1, 2])
    assert 'redis backend' in str(e.value)
    assert 'does not serve create("Array")' in str(e.value)


def sync_manager(gateway):
    from multiprocessing.managers import SyncManager
    m = SyncManager(('127.0.0.1', gateway.port), authkey=AUTHKEY.encode())
    m.connect()
    return m


def created_ids():
    """The ids of every created object (src/backend/redis/created.rs)."""
    return set(redis_cli('zrange', 'fm:objects', '0', '-1').split())


def keys_of(oid):
    """Which of the object's keys exist (`-c` follows the slot's node)."""
    names = ['data', 'refs', 'held', 'version']
    return [n for n in names
            if redis_cli('exists', 'fm:{%s}:%s' % (oid, n)).strip() == '1']


def wait_freed(oids, timeout):
    t = time.monotonic()
    while any(keys_of(o) for o in oids) or created_ids() & set(oids):
        assert time.monotonic() - t < timeout, [(o, keys_of(o)) for o in oids]
        time.sleep(0.1)
    return time.monotonic() - t


def test_created_objects_live_in_redis_until_their_last_proxy_goes(gw):
    import gc
    a, b = gw
    before = created_ids()
    m = sync_manager(a)
    q, jq, small = m.Queue(), m.JoinableQueue(), m.Queue(1)
    d, ns, v = m.dict({'a': 1}, b=2), m.Namespace(x=1), m.Value('i', 5)
    made = created_ids() - before
    assert len(made) == 6, made
    q.put('x')
    assert q.get() == 'x' and q.empty()
    small.put(1)
    with pytest.raises(queue.Full):
        small.put_nowait(2)
    jq.put('job')
    assert jq.get() == 'job'
    jq.task_done()
    jq.join()
    assert d['a'] == 1 and d['b'] == 2 and len(d) == 2
    d['c'] = 3
    assert ns.x == 1 and v.value == 5
    v.value = 6
    assert v.get() == 6
    # Each is its own object in Redis, held by gateway A only.
    for oid in made:
        assert 'refs' in keys_of(oid), oid
        assert len(redis_cli('hkeys', 'fm:{%s}:refs' % oid).split()) == 1
    assert 'data' in keys_of(next(o for o in made if 'data' in keys_of(o)))
    # A proxy passed through gateway B's queue reaches a client of B and
    # works: its token names gateway A, where it takes its reference.
    # (An unpickled proxy authenticates with the process's authkey, as
    # in a worker started by the manager's owner.)
    import multiprocessing
    me, key = multiprocessing.current_process(), None
    key, me.authkey = me.authkey, AUTHKEY.encode()
    try:
        a.manager().tasks().put(q)
        q_via_b = b.manager().tasks().get()
    finally:
        me.authkey = key
    q_via_b.put('from a proxy got on B')
    assert q.get(timeout=5) == 'from a proxy got on B'
    # One proxy left: the object stays.
    del q
    gc.collect()
    time.sleep(0.5)
    assert made <= created_ids()
    q_via_b.put('still there')
    del q_via_b, jq, small, d, ns, v
    gc.collect()
    waited = wait_freed(made, 10)
    print('created objects freed %.2f s after their last proxy' % waited)


def test_created_locks_events_and_lists_work_and_are_freed(gw):
    import gc
    a, b = gw
    before = created_ids()
    m = sync_manager(a)
    lock, rlock, sem, ev, lst = m.Lock(), m.RLock(), m.Semaphore(), m.Event(), m.list()
    made = created_ids() - before
    assert len(made) == 5, made
    assert lock.acquire() and not lock.acquire(timeout=0.2)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    assert rlock.acquire() and rlock.acquire()
    rlock.release()
    rlock.release()
    assert sem.acquire(timeout=1) and not sem.acquire(timeout=0.2)
    sem.release()
    assert not ev.is_set() and not ev.wait(0.1)
    ev.set()
    assert ev.wait(1) is True
    lst.append(1)
    lst.extend([2, 3])
    lst.insert(0, 0)
    assert len(lst) == 4 and lst[0] == 0 and lst.pop() == 3 and lst.index(2) == 2
    del lock, rlock, sem, ev, lst
    gc.collect()
    waited = wait_freed(made, 10)
    print('created sync objects and a list freed %.2f s after their last proxy' % waited)


def test_created_object_of_a_killed_gateway_is_freed_after_its_lease(gw, tmp_path):
    c = Gateway(str(tmp_path / 'c.log'))
    try:
        before = created_ids()
        m = sync_manager(c)
        d, q = m.dict(k='v'), m.Queue()
        q.put('item')
        made = created_ids() - before
        assert len(made) == 2 and all(keys_of(o) for o in made)
        os.kill(c.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        c.proc.wait()
        # Gateway A's and B's sweeps free them once C's lease is over.
        waited = wait_freed(made, LEASE + 10)
        assert time.monotonic() - killed >= LEASE - 1.5
        print('created objects of a killed gateway freed %.2f s after the kill' % waited)
    finally:
        c.stop()


def test_wait_replicas_writes_pass_when_replicated_and_fail_when_not(gw, tmp_path):
    from multiprocessing.managers import RemoteError
    # Each master has one replica: WAIT 1 is met, WAIT 2 never is.
    one = Gateway(str(tmp_path / 'w1.log'), extra=['--backend-wait-replicas', '1'])
    two = Gateway(str(tmp_path / 'w2.log'),
                  extra=['--backend-wait-replicas', '2', '--backend-wait-timeout-ms', '100'])
    try:
        m = one.manager()
        m.tasks().put('replicated')
        m.shared()['k'] = 'v'
        m.ns().x = 1
        m.jobs().put('job')
        assert gw[0].manager().jobs().get() == 'job'
        m.jobs().task_done()
        assert m.tasks().get() == 'replicated' and m.shared()['k'] == 'v'
        m2 = two.manager()
        for write in (lambda: m2.tasks().put('one replica only'),
                      lambda: m2.shared().__setitem__('k', 'w'),
                      lambda: setattr(m2.ns(), 'x', 2),
                      lambda: m2.counter().set(3)):
            t = time.monotonic()
            with pytest.raises(RemoteError) as e:
                write()
            assert time.monotonic() - t >= 0.09
            assert 'redis backend' in str(e.value), e.value
            assert '1 of 2 replicas acknowledged the write within 100 ms' in str(e.value), e.value
        # Done on the masters all the same (the error says it may be lost).
        assert gw[1].manager().tasks().get_nowait() == 'one replica only'
        assert m.shared()['k'] == 'w'
        # Reads do not wait.
        assert m2.ns().x == 2 and m2.tasks().qsize() == 0
    finally:
        one.stop()
        two.stop()


@pytest.mark.parametrize('args', [
    ['--backend-wait-replicas', '0'],
    ['--backend-wait-replicas', 'x'],
    ['--backend-wait-replicas', '1', '--backend-wait-timeout-ms', '0'],
    ['--backend-wait-replicas', '1', '--backend-wait-timeout-ms', '60001'],
])
def test_bad_wait_replicas_values_are_usage_errors(args):
    r = serve('--backend', 'redis://127.0.0.1:1', '--register', 'q=Queue', *args)
    assert r.returncode == 2, r
    assert args[-2] in r.stderr, r.stderr


@pytest.mark.parametrize('args', [['--backend-wait-replicas', '1'],
                                  ['--backend-wait-timeout-ms', '10']])
def test_wait_options_need_what_they_qualify(args):
    r = serve('--register', 'q=Queue', *args)
    assert r.returncode == 2, r
    assert 'required' in r.stderr, r.stderr


def test_one_redis_server_without_cluster_mode(tmp_path):
    if shutil.which('redis-server') is None:
        pytest.fail('redis-server is not installed')
    port = free_port()
    redis = subprocess.Popen(
        ['redis-server', '--bind', '127.0.0.1', '--port', str(port),
         '--save', '', '--appendonly', 'no', '--dir', str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gateways = []
    try:
        for _ in range(50):
            if 'PONG' in subprocess.run(['redis-cli', '-p', str(port), 'ping'],
                                        capture_output=True, text=True).stdout:
                break
            time.sleep(0.1)
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
        stop_process(redis)


def serve(*args):
    return subprocess.run(
        [rust_binary(), 'serve', '--address', '127.0.0.1:%d' % free_port(),
         '--authkey', 'k', *args],
        capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize('kind', ['Condition', 'Barrier(2)', 'Array(i,1)'])
def test_unserved_type_is_refused_naming_backend_and_type(cluster, kind):
    r = serve('--backend', SEEDS, '--register', 'q=Queue',
              '--register', 'x=' + kind)
    assert r.returncode == 1, r
    assert 'redis backend' in r.stderr and SEEDS in r.stderr, r.stderr
    assert 'does not serve %s (served: ' % kind.split('(')[0] in r.stderr, r.stderr


def test_no_registrations_refused(cluster):
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


def master_port_of(key):
    slot = int(redis_cli('cluster', 'keyslot', key).strip())
    for line in redis_cli('cluster', 'nodes').splitlines():
        f = line.split()
        if 'master' in f[2] and 'fail' not in f[2]:
            for r in f[8:]:
                lo, _, hi = r.partition('-')
                if re.fullmatch(r'\d+', lo) and int(lo) <= slot <= int(hi or lo):
                    return int(f[1].split(':')[1].split('@')[0])
    return None


# Last in this file: it leaves the cluster with one master dead.
def test_master_killed_under_load_is_a_stall_not_an_error(cluster, gw):
    a, b = gw
    qa, qb = a.manager().tasks(), b.manager().tasks()
    acked, got, errors = [], [], []
    stop = threading.Event()

    def produce():
        i = 0
        while not stop.is_set():
            try:
                qa.put(i)
                acked.append((i, time.monotonic()))
            except Exception as e:
                errors.append('put: %r' % e)
            i += 1

    def consume():
        while True:
            try:
                got.append(qb.get(timeout=2))
            except queue.Empty:
                if stop.is_set():
                    return
            except Exception as e:
                errors.append('get: %r' % e)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    port = master_port_of(KEYS[0])
    os.kill(int((cluster / ('redis-%d.pid' % port)).read_text()), signal.SIGKILL)
    killed = time.monotonic()
    deadline = killed + 20
    # Until puts go through again (a replica took over), and a bit more.
    while time.monotonic() < deadline and not (acked and acked[-1][1] > killed + 1):
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors[:3]
    assert acked[-1][1] > killed + 1, 'no put went through after the kill'
    assert master_port_of(KEYS[0]) not in (None, port)
    ids = [i for i, _ in acked]
    # Every item got was put; a put retried after a dropped connection may
    # repeat one (at-least-once), and an acknowledged put may be lost
    # (asynchronous replication): both are printed, not asserted.
    assert set(got) <= set(range(ids[-1] + 2))
    times = [t for _, t in acked]
    stall = max(b - a for a, b in zip(times, times[1:]))
    print('failover: stall %.2f s, %d acknowledged, %d lost, %d duplicated'
          % (stall, len(ids), len(set(ids) - set(got)), len(got) - len(set(got))))
