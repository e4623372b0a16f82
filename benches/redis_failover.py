"""What clients of Redis-backed gateways see when the master holding their
queue dies (issue 18). Not a test: it prints what happened.

    python3 benches/redis_failover.py [--load-seconds 2] [--after-seconds 8]

Starts a local 6-node Redis Cluster (scripts/redis-cluster.sh,
--cluster-node-timeout 1000) and two gateways. A stock client of gateway 1
puts 0, 1, 2, ... on `tasks` as fast as it can; a stock client of gateway
2 gets. After --load-seconds, the master of the queue's slot is SIGKILLed;
a replica takes over. Printed: the puts acknowledged, the items got, the
acknowledged puts never got (lost: Redis replicates asynchronously),
duplicates, the errors each client saw, and the longest stall (the
largest gap between two acknowledged puts).
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from redis_backend import AUTHKEY, SCRIPT, SEEDS, start_server  # noqa: E402

KEY = 'fm:{q:tasks}:items'


def cli(port, *args):
    return subprocess.run(['redis-cli', '-p', str(port), *args], capture_output=True,
                          text=True, timeout=10).stdout


def master_of(key):
    slot = int(cli(7101, 'cluster', 'keyslot', key).strip())
    for line in cli(7101, 'cluster', 'nodes').splitlines():
        fields = line.split()
        if 'master' not in fields[2] or 'fail' in fields[2]:
            continue
        for r in fields[8:]:
            lo, _, hi = r.partition('-')
            if re.fullmatch(r'\d+', lo) and int(lo) <= slot <= int(hi or lo):
                return int(fields[1].split(':')[1].split('@')[0])
    return None


def manager(port):
    from multiprocessing.managers import BaseManager

    class M(BaseManager):
        pass
    M.register('tasks')
    m = M(('127.0.0.1', port), authkey=AUTHKEY)
    m.connect()
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--load-seconds', type=float, default=2.0)
    ap.add_argument('--after-seconds', type=float, default=8.0)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix='fm-redis-failover-')
    env = dict(os.environ, REDIS_CLUSTER_DIR=workdir)
    subprocess.run([str(SCRIPT), 'start'], env=env, check=True)
    gateways = []
    try:
        gateways = [start_server('--backend', SEEDS) for _ in range(2)]
        q_put = manager(gateways[0][1]).tasks()
        q_get = manager(gateways[1][1]).tasks()
        acked, got, errors = [], [], {'put': [], 'get': []}
        stop = threading.Event()

        def produce():
            i = 0
            while not stop.is_set():
                try:
                    q_put.put(i)
                    acked.append((i, time.monotonic()))
                except Exception as e:  # what a client sees, whatever it is
                    errors['put'].append('%s: %s' % (type(e).__name__, str(e).strip()[-200:]))
                i += 1

        def consume():
            import queue
            while True:
                try:
                    got.append(q_get.get(timeout=3))
                except queue.Empty:
                    if stop.is_set():
                        return
                except Exception as e:
                    errors['get'].append('%s: %s' % (type(e).__name__, str(e).strip()[-200:]))

        threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
        for t in threads:
            t.start()
        time.sleep(args.load_seconds)
        port = master_of(KEY)
        pid = int(Path(workdir, 'redis-%d.pid' % port).read_text())
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        print('SIGKILLed the master of %s: 127.0.0.1:%d (pid %d), after %d acknowledged puts'
              % (KEY, port, pid, len(acked)))
        time.sleep(args.after_seconds)
        stop.set()
        for t in threads:
            t.join(30)
        times = [t for _, t in acked]
        gaps = [(b - a, a) for a, b in zip(times, times[1:])]
        stall, stall_at = max(gaps) if gaps else (0, killed_at)
        acked_ids = {i for i, _ in acked}
        lost = sorted(acked_ids - set(got))
        print('master of the slot now: %s' % master_of(KEY))
        print(cli(7101 if port != 7101 else 7102, 'cluster', 'nodes'))
        print('acknowledged puts: %d, got: %d, lost (acknowledged, never got): %d, duplicates: %d'
              % (len(acked), len(got), len(lost), len(got) - len(set(got))))
        if lost:
            print('lost ids: %s%s' % (lost[:20], ' ...' if len(lost) > 20 else ''))
        print('longest stall between acknowledged puts: %.2f s, starting %.2f s after the kill'
              % (stall, stall_at - killed_at))
        for side in ('put', 'get'):
            print('%s errors: %d %s' % (side, len(errors[side]), errors[side][:3]))
    finally:
        for p, _ in gateways:
            p.terminate()
            p.wait(5)
        subprocess.run([str(SCRIPT), 'stop'], env=env)


if __name__ == '__main__':
    sys.exit(main())
