"""Acknowledged puts lost at a Redis master's failover, with and without
--backend-wait-replicas 1, over several runs (issue 18).

    python3 benches/redis_failover.py [--runs 3] [--stall 1.0] [--port 7121]

Each run starts a fresh 6-node cluster, cuts the queue's replica off
(SIGSTOP and a dropped replication link), puts through one gateway for
--stall seconds, SIGKILLs the master and lets the replica be promoted
(compat-tests/lib/redis_failover.py describes the steps). Prints, per run:
puts acknowledged before the cut and during it, puts refused during it,
acknowledged puts lost, and seconds from the kill until the queue was read.
Needs redis-server. Not a test: README quotes one run.
"""
import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / 'compat-tests' / 'lib'))
import redis_failover  # noqa: E402

BIN = os.environ.get('FASTMANAGER_BIN') or str(REPO / 'target' / 'release' / 'fastmanager')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--stall', type=float, default=1.0)
    ap.add_argument('--port', type=int, default=int(os.environ.get('REDIS_CLUSTER_PORT', '7101')) + 20)
    args = ap.parse_args()
    print('%-8s %4s %10s %10s %10s %6s %11s' % ('mode', 'run', 'acked<cut', 'acked cut', 'refused', 'lost', 'recovered'))
    for mode, wait in (('no WAIT', None), ('WAIT 1', 1)):
        for i in range(args.runs):
            f = redis_failover.run(BIN, args.port, wait_replicas=wait, stall=args.stall)
            print('%-8s %4d %10d %10d %10d %6d %10.2fs' % (
                mode, i + 1, f['acked_before'], f['acked_during'], f['refused_during'], f['lost'], f['recovered_s']))


if __name__ == '__main__':
    main()
