"""Acknowledged puts lost at a Redis master's failover (issue 18), with and
without ``--backend-wait-replicas``: one scenario, used by
compat-tests/test_redis_failover.py and benches/redis_failover.py.

On loopback a replica is never behind its master, so the scenario makes it
behind on purpose, deterministically:

1. a fresh 6-node cluster (scripts/redis-cluster.sh) and one gateway;
   ``before`` puts go through while replication is healthy;
2. the replica of the queue's master is SIGSTOPped, and the master drops
   its replication link (``CLIENT KILL TYPE replica``): the stopped replica
   cannot reconnect, so every write from now on is on the master alone;
3. a client puts through the gateway for ``stall`` seconds: without WAIT
   each put is acknowledged at once; with WAIT 1 each waits its timeout
   and fails (RemoteError naming the replicas), i.e. it is not
   acknowledged;
4. the master is SIGKILLed and the replica SIGCONTed: it is promoted
   (cluster-node-timeout 1 s) with the data it had at step 2;
5. the queue is drained through the gateway: an acknowledged put missing
   from it is lost.
"""
import os
import queue
import re
import signal
import socket
import subprocess
import tempfile
import time
from multiprocessing.managers import BaseManager, RemoteError
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / 'scripts' / 'redis-cluster.sh'
AUTHKEY = b'failover'
ITEMS_KEY = 'fm:{q:tasks}:items'


def wait_ports_free(base, timeout=15):
    deadline = time.monotonic() + timeout
    for port in range(base, base + 6):
        while True:
            try:
                socket.create_connection(('127.0.0.1', port), 0.2).close()
            except OSError:
                break
            assert time.monotonic() < deadline, 'port %d stays taken' % port
            time.sleep(0.1)


class Cluster:
    def __init__(self, base_port, binary):
        self.base = base_port
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix='fm-failover-')
        self.env = dict(os.environ, REDIS_CLUSTER_DIR=self.dir,
                        REDIS_CLUSTER_PORT=str(base_port))
        self.stopped = []
        wait_ports_free(base_port)
        try:
            subprocess.run([str(SCRIPT), 'start'], env=self.env, check=True,
                           timeout=60, stdout=subprocess.DEVNULL)
        except BaseException:
            self.stop()
            raise

    def cli(self, port, *args):
        return subprocess.run(['redis-cli', '-p', str(port), *args],
                              capture_output=True, text=True, timeout=10).stdout

    def pid(self, port):
        return int(Path(self.dir, 'redis-%d.pid' % port).read_text())

    def nodes(self, via):
        """(id, port, flags, master id, slot ranges) of each node."""
        out = []
        for line in self.cli(via, 'cluster', 'nodes').splitlines():
            f = line.split()
            port = int(f[1].split(':')[1].split('@')[0])
            out.append((f[0], port, f[2], f[3], f[8:]))
        return out

    def master_and_replica(self, key):
        slot = int(self.cli(self.base, 'cluster', 'keyslot', key).strip())
        nodes = self.nodes(self.base)
        for nid, port, flags, _, ranges in nodes:
            if 'master' not in flags:
                continue
            for r in ranges:
                lo, _, hi = r.partition('-')
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    replica = [p for _, p, fl, m, _ in nodes if m == nid and 'slave' in fl]
                    return port, replica[0]
        raise AssertionError('no master serves slot %d' % slot)

    def master_of(self, key, via):
        slot = int(self.cli(via, 'cluster', 'keyslot', key).strip())
        for _, port, flags, _, ranges in self.nodes(via):
            if 'master' in flags and 'fail' not in flags:
                for r in ranges:
                    lo, _, hi = r.partition('-')
                    if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                        return port
        return None

    def stop(self):
        for pid in self.stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        subprocess.run([str(SCRIPT), 'stop'], env=self.env, timeout=30)
        # The next run takes the same ports.
        wait_ports_free(self.base)


class Gateway:
    def __init__(self, cluster, extra):
        seeds = ','.join('127.0.0.1:%d' % (cluster.base + i) for i in range(6))
        self.log = os.path.join(cluster.dir, 'gateway.log')
        # Port 0: a new address per run (a client process caches one
        # connection per address, which a later run must not reuse); the
        # port is read from the log.
        with open(self.log, 'wb') as out:
            self.proc = subprocess.Popen(
                [cluster.binary, 'serve', '--address', '127.0.0.1:0',
                 '--authkey', AUTHKEY.decode(), '--backend', 'redis://' + seeds,
                 '--register', 'tasks=Queue', *extra],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while True:
            assert self.proc.poll() is None, open(self.log).read()
            found = re.search(r'serving address=127\.0\.0\.1:(\d+)', open(self.log).read())
            if found:
                self.port = int(found.group(1))
                return
            assert time.time() < deadline, open(self.log).read()
            time.sleep(0.05)

    def queue(self):
        class M(BaseManager):
            pass
        M.register('tasks')
        m = M(('127.0.0.1', self.port), authkey=AUTHKEY)
        m.connect()
        return m.tasks()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run(binary, base_port, wait_replicas=None, before=50, stall=1.0, wait_timeout_ms=200):
    """One run; a dict of its figures: puts acknowledged before and during
    the stall, puts refused during it (errors), acknowledged puts lost,
    seconds until the queue was readable again after the kill."""
    extra = []
    if wait_replicas:
        extra = ['--backend-wait-replicas', str(wait_replicas),
                 '--backend-wait-timeout-ms', str(wait_timeout_ms)]
    cluster = Cluster(base_port, binary)
    gateway = None
    try:
        gateway = Gateway(cluster, extra)
        q = gateway.queue()
        acked, refused = [], []
        for i in range(before):
            q.put(i)
            acked.append(i)
        master, replica = cluster.master_and_replica(ITEMS_KEY)
        os.kill(cluster.pid(replica), signal.SIGSTOP)
        cluster.stopped.append(cluster.pid(replica))
        assert cluster.cli(master, 'client', 'kill', 'type', 'replica').strip() == '1'
        during = 0
        i = before
        end = time.monotonic() + stall
        while time.monotonic() < end:
            try:
                q.put(i)
                acked.append(i)
                during += 1
            except RemoteError as e:
                assert 'replicas acknowledged the write' in str(e), e
                refused.append(i)
            i += 1
        os.kill(cluster.pid(master), signal.SIGKILL)
        killed = time.monotonic()
        os.kill(cluster.pid(replica), signal.SIGCONT)
        deadline = killed + 30
        while cluster.master_of(ITEMS_KEY, replica) != replica:
            assert time.monotonic() < deadline, 'the replica was not promoted'
            time.sleep(0.1)
        got = []
        while True:
            try:
                got.append(q.get_nowait())
            except queue.Empty:
                break
        readable = time.monotonic() - killed
        assert set(got) <= set(acked) | set(refused), 'items nobody put'
        return {
            'acked_before': before,
            'acked_during': during,
            'refused_during': len(refused),
            'lost': len(set(acked) - set(got)),
            'recovered_s': readable,
            'gateway_alive': gateway.proc.poll() is None,
        }
    finally:
        if gateway:
            gateway.stop()
        cluster.stop()
