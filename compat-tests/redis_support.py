"""What the Redis backend's test files share (issue 18): the cluster's
ports and keys, a gateway process (``fastmanager serve --backend
redis://...``), client processes, and redis-cli.

The cluster is real: scripts/redis-cluster.sh starts 6 redis-server
processes (127.0.0.1:PORT..PORT+5, 3 masters + 3 replicas) and redis-cli
makes them a cluster. conftest.py's session fixture ``redis_cluster``
starts one for every test_redis_backend_*.py file; a test that changes it
(kills a master) asks for ``restored_redis_cluster`` instead, which makes
it fresh again afterwards. scripts/test-all.sh installs redis-server when
missing.
"""
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
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
# A gateway's lease on an object (src/backend/redis/pending.rs: LEASE).
LEASE = 5.0

# Every test of these files needs the Rust server (the gateway).
only_rust = pytest.mark.skipif(
    server_kind() != 'rust', reason="the Redis backend is the Rust server's")


def redis_cli(*args):
    return subprocess.run(['redis-cli', '-c', '-p', str(PORT), *args],
                          capture_output=True, text=True, timeout=10).stdout


def cluster_script(command, state):
    """scripts/redis-cluster.sh `command` on the cluster whose state
    directory (pid files: redis-PORT.pid) is `state`."""
    if shutil.which('redis-server') is None:
        pytest.fail('redis-server is not installed (scripts/test-all.sh '
                    'installs it: apt-get install -y redis-server)')
    env = dict(os.environ, REDIS_CLUSTER_DIR=str(state))
    subprocess.run([str(SCRIPT), command], env=env, check=command != 'stop',
                   timeout=60)


def flush_cluster():
    """Empties every master: a module's gateways start on no object left
    by another module (named objects keep their state in Redis)."""
    for line in redis_cli('cluster', 'nodes').splitlines():
        f = line.split()
        if 'master' in f[2] and 'fail' not in f[2]:
            port = f[1].split(':')[1].split('@')[0]
            subprocess.run(['redis-cli', '-p', port, 'flushall'],
                           capture_output=True, timeout=10)


@contextlib.contextmanager
def one_redis_server(directory):
    """One redis-server without cluster mode (state in `directory`); its
    port."""
    if shutil.which('redis-server') is None:
        pytest.fail('redis-server is not installed (scripts/test-all.sh installs it)')
    port = free_port()
    redis = subprocess.Popen(
        ['redis-server', '--bind', '127.0.0.1', '--port', str(port),
         '--save', '', '--appendonly', 'no', '--dir', str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if 'PONG' in subprocess.run(['redis-cli', '-p', str(port), 'ping'],
                                        capture_output=True, text=True).stdout:
                break
            time.sleep(0.1)
        yield port
    finally:
        stop_process(redis)


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
def two_gateways(directory, register=REGISTER, extra=()):
    """Gateways A and B (logs in `directory`), which must still be alive
    at the end."""
    flush_cluster()
    a = Gateway(str(directory / 'a.log'), register=register, extra=extra)
    b = Gateway(str(directory / 'b.log'), register=register, extra=extra)
    yield a, b
    for g in (a, b):
        alive = g.proc.poll() is None
        g.stop()
        assert alive, 'gateway died:\n' + open(g.log).read()


def command_calls(command):
    """How many `command`s the cluster's nodes ran since their stats were
    last reset (`config resetstat`), replicas' replays included."""
    total = 0
    for port in range(PORT, PORT + 6):
        out = subprocess.run(['redis-cli', '-p', str(port), 'info', 'commandstats'],
                             capture_output=True, text=True, timeout=10).stdout
        found = re.search(r'^cmdstat_%s:calls=(\d+)' % command, out, re.M)
        total += int(found.group(1)) if found else 0
    return total


def reset_command_stats():
    for port in range(PORT, PORT + 6):
        subprocess.run(['redis-cli', '-p', str(port), 'config', 'resetstat'],
                       capture_output=True, timeout=10)


def empty_named_objects():
    """Deletes the named objects of REGISTER (their main keys)."""
    for key in KEYS:
        redis_cli('del', key)


def sync_manager(gateway):
    from multiprocessing.managers import SyncManager
    m = SyncManager(('127.0.0.1', gateway.port), authkey=AUTHKEY.encode())
    m.connect()
    return m


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


def serve(*args):
    """`fastmanager serve ARGS` expected to exit (a refused start)."""
    return subprocess.run(
        [rust_binary(), 'serve', '--address', '127.0.0.1:%d' % free_port(),
         '--authkey', 'k', *args],
        capture_output=True, text=True, timeout=30)


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


# Fixtures a test file takes by importing them (each file gets its own
# pair of gateways, over the session's cluster).

@pytest.fixture(scope='module')
def gateways(redis_cluster, tmp_path_factory):
    with two_gateways(tmp_path_factory.mktemp('gateways')) as pair:
        yield pair


@pytest.fixture
def gw(gateways):
    """The two gateways, with the named objects empty."""
    empty_named_objects()
    return gateways
