"""Seeing inside a running server: `fastmanager stat` (screen, --json,
--watch), `fastmanager.stat()`, the Prometheus endpoint, slow calls and
JSON logs, against a real server that stock CPython client processes
drive. Every figure checked is one the clients' own actions determine
(items put minus items got, requests made, getters blocked or killed).
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from multiprocessing.managers import BaseManager, SyncManager

import pytest

from conftest import REPO, rust_binary, free_port, server_kind

pytestmark = pytest.mark.skipif(server_kind() == 'cpython',
                                reason='fastmanager figures; CPython has none')

KEY = 'statkey'


class Server:
    def __init__(self, tmp_path, *extra, global_args=()):
        self.port = free_port()
        self.metrics_port = free_port()
        self.address = '127.0.0.1:%d' % self.port
        self.logpath = tmp_path / 'server.log'
        self.log = open(self.logpath, 'w')
        self.proc = subprocess.Popen(
            [rust_binary()] + list(global_args) +
            ['serve', '--address', self.address, '--authkey', KEY,
             '--register', 'tasks=Queue', '--register', 'jobs=JoinableQueue',
             '--register', 'guard=RLock', '--register', 'shared=dict',
             '--metrics-address', '127.0.0.1:%d' % self.metrics_port]
            + list(extra),
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while True:
            try:
                self.manager().connect()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise AssertionError('server did not start: ' + self.logpath.read_text())
                time.sleep(0.05)

    def manager(self):
        class M(BaseManager):
            pass
        for name in ('tasks', 'jobs', 'guard', 'shared'):
            M.register(name)
        return M(('127.0.0.1', self.port), authkey=KEY.encode())

    def stat_cli(self, *args):
        r = subprocess.run([rust_binary(), 'stat', '--address', self.address, '--authkey', KEY] + list(args),
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def stat(self):
        return json.loads(self.stat_cli('--json'))

    def metrics(self):
        with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % self.metrics_port, timeout=10) as r:
            assert 'openmetrics-text' in r.headers['Content-Type']
            return r.read().decode()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path, '--slow-call-us', '1000000')
    yield s
    s.stop()


def metric(text, metric_name, **labels):
    """The value of one sample of the exposition `text`."""
    want = ','.join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith('#'):
            continue
        m = re.match(r'^([a-z_]+)(?:\{([^}]*)\})? (\S+)$', line)
        if m and m.group(1) == metric_name and ','.join(sorted((m.group(2) or '').split(','))) == want:
            return float(m.group(3))
    raise AssertionError("no sample %s{%s} in:\n%s" % (metric_name, want, text))


CLIENT = r'''
import sys
from multiprocessing.managers import BaseManager
class M(BaseManager): pass
for n in ('tasks', 'jobs', 'guard', 'shared'): M.register(n)
m = M(('127.0.0.1', int(sys.argv[1])), authkey=sys.argv[2].encode()); m.connect()
role, n = sys.argv[3], int(sys.argv[4])
q = m.tasks()
if role == 'put':
    for i in range(n):
        q.put(i)
elif role == 'get':
    for i in range(n):
        q.get(timeout=30)
elif role == 'block':
    print('ready', flush=True)
    q.get()
elif role == 'hold':
    g = m.guard(); g.acquire()
    print('held', flush=True)
    sys.stdin.read()
'''


def client(server, role, n=0, **kw):
    return subprocess.Popen([sys.executable, '-c', CLIENT, str(server.port), KEY, role, str(n)], **kw)


def wait_for(check, what, timeout=10):
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError('timed out waiting for ' + what)
        time.sleep(0.05)


def named(snapshot, name):
    return next(o for o in snapshot['named'] if o['name'] == name)


def test_figures_agree_with_what_clients_did(server):
    before = server.stat()['requests']['by_method']
    producers = [client(server, 'put', 300) for _ in range(4)]
    for p in producers:
        assert p.wait(timeout=60) == 0
    consumers = [client(server, 'get', 200) for _ in range(2)]
    for c in consumers:
        assert c.wait(timeout=60) == 0
    s = server.stat()
    tasks = named(s, 'tasks')
    assert tasks['len'] == 4 * 300 - 2 * 200
    assert tasks['typeid'] == 'Queue' and tasks['waiting'] == 0
    by_method = s['requests']['by_method']
    assert by_method['put']['total'] - before.get('put', {'total': 0})['total'] == 1200
    assert by_method['get']['total'] - before.get('get', {'total': 0})['total'] == 400
    assert s['objects']['queued_items'] == 800
    assert s['objects']['by_type']['Queue'] == 2
    # Each client process opened its proxy's connection (and closed it).
    assert s['connections']['accepted_total'] >= 6
    # Every request is timed once (this stat request is in neither yet).
    assert s['requests']['latency']['count'] == s['requests']['total']
    text = server.metrics()
    assert metric(text, 'fastmanager_queue_items', name='tasks', type='Queue') == 800
    assert metric(text, 'fastmanager_requests_total', method='put') == by_method['put']['total']
    assert metric(text, 'fastmanager_request_duration_seconds_count') >= s['requests']['total']
    # The human screen says the same.
    screen = server.stat_cli()
    assert re.search(r'tasks\s+Queue\s+len=800 unfinished=1200 waiting=0', screen), screen
    assert 'queued items: 800' in screen


def test_blocked_getters_and_dead_clients(server):
    getters = [client(server, 'block', stdout=subprocess.PIPE, text=True) for _ in range(3)]
    for g in getters:
        assert g.stdout.readline().strip() == 'ready'
    s = wait_for(lambda: (lambda s: s if s['blocked']['total'] == 3 else None)(server.stat()), '3 blocked getters')
    assert named(s, 'tasks')['waiting'] == 3
    assert s['connections']['waiting'] == 3
    assert s['blocked']['by_object'] == [{'object': 'tasks', 'typeid': 'Queue', 'waiting': 3}]
    assert metric(server.metrics(), 'fastmanager_waiting_calls') == 3
    # A getter killed while it waits no longer counts.
    getters[0].send_signal(signal.SIGKILL)
    getters[0].wait()
    wait_for(lambda: server.stat()['blocked']['total'] == 2, 'the dead getter to go')
    # Two items wake the two live getters; the queue stays empty.
    m = server.manager(); m.connect()
    q = m.tasks()
    q.put('a')
    q.put('b')
    for g in getters[1:]:
        assert g.wait(timeout=10) == 0
    s = server.stat()
    assert s['blocked']['total'] == 0 and named(s, 'tasks')['len'] == 0


def test_lock_holder_and_its_death(server):
    holder = client(server, 'hold', stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == 'held'
    s = server.stat()
    guard = named(s, 'guard')
    assert guard['set'] is True
    # Its process is named when the server knows it (TCP on this host).
    assert 'connection' in guard['holder']
    holder.kill()
    holder.wait()
    # An RLock whose owner's connection closed is released.
    wait_for(lambda: named(server.stat(), 'guard')['set'] is False, 'the RLock to be released')
    assert 'held by' not in [l for l in server.stat_cli().splitlines() if 'guard' in l][0]


def test_watch_prints_a_line_per_interval(server):
    m = server.manager(); m.connect()
    q = m.tasks()
    for i in range(50):
        q.put(i)
    out = server.stat_cli('--watch', '--interval', '0.2', '--count', '3')
    lines = out.strip().splitlines()
    assert lines[0].split() == ['requests/s', 'connections', 'queued', 'waiting']
    assert len(lines) == 4
    for line in lines[1:]:
        rate, conns, queued, waiting = line.split()
        float(rate)
        assert int(queued) == 50 and int(waiting) == 0 and int(conns) >= 1


def test_python_stat_matches_the_command(server):
    pytest.importorskip('fastmanager')
    import fastmanager
    s = fastmanager.stat(('127.0.0.1', server.port), KEY.encode())
    assert set(s) == set(server.stat())
    assert named(s, 'tasks')['len'] == 0


def test_slow_calls_are_logged_and_kept(tmp_path):
    s = Server(tmp_path, '--slow-call-us', '1')
    try:
        m = s.manager(); m.connect()
        q = m.tasks()
        q.put(b'x' * (4 << 20))
        for i in range(200):
            q.put(i)
        snap = s.stat()
        slow = snap['slow_calls']
        assert slow['threshold_us'] == 1
        assert slow['total'] >= 201
        assert len(slow['recent']) == 128
        # Newest first; the big put is older than the 128 kept.
        assert slow['recent'][0]['method'] == 'put' and slow['recent'][0]['typeid'] == 'Queue'
        assert slow['recent'][0]['object'] == 'tasks'
        assert 'slow call' in s.logpath.read_text()
        assert 'bytes=4194' in s.logpath.read_text()
    finally:
        s.stop()


def test_json_logs_say_who(tmp_path):
    s = Server(tmp_path, global_args=['--log-format', 'json'])
    try:
        bad = s.manager()
        bad._authkey = b'wrong'
        with pytest.raises(Exception):
            bad.connect()
        time.sleep(0.2)
    finally:
        s.stop()
    records = [json.loads(l) for l in s.logpath.read_text().splitlines() if l.strip()]
    failed = [r for r in records if 'authentication failed' in r['fields'].get('message', '')]
    assert failed and failed[0]['fields']['client'].endswith('127.0.0.1)')
    assert any('fastmanager serving' in r['fields'].get('message', '') for r in records)


def test_stat_against_cpython_server_says_why():
    class M(SyncManager):
        pass
    m = M(('127.0.0.1', 0), authkey=KEY.encode())
    m.start()
    try:
        host, port = m.address
        r = subprocess.run([rust_binary(), 'stat', '--address', '%s:%d' % (host, port), '--authkey', KEY],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert "fastmanager_stat" in r.stderr and 'unrecognized' in r.stderr
    finally:
        m.shutdown()
