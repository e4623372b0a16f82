"""The Rust client (fastmanager::client, driven through the programs in
examples/) against fastmanager and against CPython's own manager server.

Every test runs against three servers: the suite's ``server`` (fastmanager,
or CPython's under FASTMANAGER_SERVER=cpython) and reference_server.py
(CPython's ``serve_forever``) under 3.8 and 3.13, so the default run covers
both kinds of server and both handshake dialects (3.8 answers and sends
legacy HMAC-MD5 challenges, 3.13 ``{sha256}`` ones).

The examples are built by ``cargo build --release --examples``
(scripts/test-all.sh); FASTMANAGER_EXAMPLES may point elsewhere.
"""
import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from conftest import (INTERPRETERS, REPO, RESULT_MARK, Client, Server,
                      interp, server_kind, tail)

EXAMPLES = Path(os.environ.get('FASTMANAGER_EXAMPLES') or
                REPO / 'target' / 'release' / 'examples')

SERVERS = ['suite', 'cpython3.8', 'cpython3.13']

# Every check examples/client_check.rs runs; one that disappears fails here.
CHECKS = {
    'wrong_authkey', 'named_queue_round_trip', 'empty', 'full', 'joinable',
    'blocking_get_wakes', 'dict', 'list', 'lock', 'rlock', 'iterator_proxy',
    'unexposed_method', 'raw_values_survive', 'references_given_back',
}


def start_server(which, workdir, unix=False):
    """A started server: the suite's kind, or CPython's under a version."""
    workdir = Path(workdir) / which
    workdir.mkdir()
    if which == 'suite':
        srv = Server(server_kind(), workdir, unix=unix)
    else:
        py = interp(tuple(int(x) for x in which[len('cpython'):].split('.')))
        if py is None:
            pytest.skip('no %s interpreter under pyenv' % which)
        srv = Server('cpython', workdir, unix=unix)
        srv.cmd[0] = py.path            # reference_server.py under py
        srv.ref_version = py.minor
    srv.start()
    return srv


@pytest.fixture(params=SERVERS)
def any_server(request, tmp_path):
    """Each server in turn; the test fails if it died meanwhile (the
    suite's ``server`` fixture checks that itself)."""
    if request.param == 'suite':
        yield request.getfixturevalue('server')
        return
    srv = start_server(request.param, tmp_path)
    try:
        yield srv
        assert srv.alive(), 'the reference server died:\n' + tail(srv.log)
    finally:
        srv.stop()


def server_args(srv):
    address = ('unix:' + srv.unix_path if srv.unix_path
               else '%s:%d' % (srv.host, srv.port))
    return ['--address', address, '--authkey', srv.authkey]


class Example:
    """One examples/<name> process, with its output in files."""

    _seq = 0

    def __init__(self, name, args, srv, workdir):
        exe = EXAMPLES / name
        if not exe.exists():
            pytest.fail('%s not found: run `cargo build --release --examples` '
                        '(or set FASTMANAGER_EXAMPLES)' % exe, pytrace=False)
        self.srv = srv
        self.cmd = [str(exe)] + [str(a) for a in args]
        Example._seq += 1
        stem = '%s-%d' % (name, Example._seq)
        self.out = Path(workdir) / (stem + '.out')
        self.err = Path(workdir) / (stem + '.err')
        with open(self.out, 'wb') as o, open(self.err, 'wb') as e:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                         stdout=o, stderr=e)

    def finish(self, timeout=120):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        lines = self.out.read_text(errors='replace').splitlines()
        explain = ('command: %s\nexit: %s\n--- stdout ---\n%s\n--- stderr '
                   '---\n%s\n--- server (%s) ---\n%s' % (
                       ' '.join(self.cmd), self.proc.returncode,
                       tail(self.out), tail(self.err), self.srv.describe(),
                       tail(self.srv.log, 2000)))
        assert self.proc.returncode == 0, explain
        return lines, explain

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def result(self, timeout=120):
        lines, explain = self.finish(timeout)
        results = [l[len(RESULT_MARK):] for l in lines
                   if l.startswith(RESULT_MARK)]
        assert len(results) == 1, explain
        return json.loads(results[0])


@pytest.fixture
def spawned():
    """Processes a test starts; any still running at its end are killed."""
    procs = []
    yield procs
    for p in procs:
        p.kill()


@pytest.mark.parametrize('which', SERVERS)
@pytest.mark.parametrize('transport', ['tcp', 'unix'])
def test_client_checks(which, transport, tmp_path):
    """The same behaviour checks pass against every server."""
    srv = start_server(which, tmp_path, unix=(transport == 'unix'))
    try:
        r = Example('client_check', server_args(srv), srv, tmp_path).result()
    finally:
        srv.stop()
    assert r['failed'] == {}
    assert set(r['passed']) == CHECKS


@pytest.mark.parametrize('master_py', ['oldest', 'newest'])
def test_python_master_rust_workers(master_py, any_server, tmp_path,
                                    spawned):
    """A stock Python master (oldest and newest interpreter) hands ints and
    every compat item to two Rust workers: squares come back, and each
    item comes back intact (class instances, sets, recursive lists, lone
    surrogates... travel through Rust as raw pickles)."""
    py = INTERPRETERS[0] if master_py == 'oldest' else INTERPRETERS[-1]
    ntasks, nworkers = 20, 2
    master = Client(py, 'rust_master.py', (ntasks, nworkers), any_server,
                    tmp_path)
    workers = [Example('worker', server_args(any_server) + ['--id', 'r%d' % i],
                       any_server, tmp_path) for i in range(nworkers)]
    spawned.extend([master] + workers)
    done = [w.result()['done'] for w in workers]
    r = master.finish(180)
    assert r['squares'] == [[n, n * n] for n in range(1, ntasks + 1)]
    assert r['item_errors'] == []
    assert r['item_names'] == r['expected_names']
    assert sum(done) == ntasks + len(r['expected_names'])
    assert set(r['workers']) <= {'r0', 'r1'}


# What Python sees of examples/producer.rs's samples(), in order.
PRODUCER_SAMPLES = [
    True, False, 0, -1, 65536, 2 ** 63 - 1, -2 ** 63, 1.5, -0.0, 1e300,
    '', 'h\xe9llo \u2603', 'x' * 300, b'\x00\xff', b'\x07' * 300, [],
    [1, 'a', None], (), (1,), (1, 2, 3, 4),
    {'a': 1, (1, 2): [b'x'], 3: {'n': None}}, list(range(2500)), {1, 2},
    2 ** 80,
]


def test_rust_producer_python_consumers(any_server, tmp_path, spawned):
    """A Rust producer feeds Python consumers of the oldest and the newest
    interpreter at once; together they receive exactly the values sent,
    with their Python types (repr tells True from 1, tuple from list)."""
    count = 200
    pys = [INTERPRETERS[0], INTERPRETERS[-1]]
    consumers = [Client(py, 'rust_consumer.py', (), any_server, tmp_path)
                 for py in pys]
    producer = Example('producer', server_args(any_server) + [
        '--count', count, '--consumers', len(consumers)], any_server, tmp_path)
    spawned.extend(consumers + [producer])
    assert producer.result()['put'] == len(PRODUCER_SAMPLES) + count
    received = Counter()
    for c in consumers:
        received.update(c.finish()['reprs'])
    expected = Counter(repr(v) for v in PRODUCER_SAMPLES + list(range(count)))
    assert received == expected


@pytest.mark.parametrize('op,queue', [('put-get', 'Queue'),
                                      ('qsize', 'get_task')])
def test_loadgen_reports(op, queue, tmp_path):
    """examples/loadgen drives the server from several connections and
    reports one JSON line (numbers are measured by benches, not here)."""
    srv = start_server('suite', tmp_path)
    try:
        ex = Example('loadgen', server_args(srv) + [
            '--connections', 3, '--seconds', 1, '--op', op, '--queue', queue],
            srv, tmp_path)
        lines, explain = ex.finish(60)
    finally:
        srv.stop()
    assert len(lines) == 1, explain
    r = json.loads(lines[0])
    assert r['op'] == op.replace('-', '_') and r['connections'] == 3
    assert r['errors'] == 0 and r['ops'] > 0 and r['ops_per_sec'] > 0
    lat = r['latency_us']
    assert 0 < lat['p50'] <= lat['p90'] <= lat['p99'] <= lat['p999'] <= lat['max']
