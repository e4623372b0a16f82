"""Scenario 2 producer: N items + None into a JoinableQueue, then join().

    jq_producer.py named N WORKDIR   uses the registered `jobs`
    jq_producer.py sync  N WORKDIR   uses SyncManager().JoinableQueue(); the
                                     pickled proxy goes to WORKDIR/proxy.hex
The consumer writes WORKDIR/consumed before its last task_done(), so the
file must exist when join() returns.
"""
import os
import pickle
import sys
import time

import fmclient


def main():
    mode, n, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == 'named':
        q = fmclient.connect().jobs()
    else:
        q = fmclient.connect_sync().JoinableQueue()
        fmclient.write_file(os.path.join(workdir, 'proxy.hex'),
                            pickle.dumps(q).hex())
    marker = os.path.join(workdir, 'consumed')
    t0 = time.time()
    for i in range(n):
        q.put(i)
    q.put(None)
    t_put = time.time()
    q.join()
    t_join = time.time()
    consumed = None
    if os.path.exists(marker):
        with open(marker) as f:
            consumed = f.read()
    fmclient.emit({'put_seconds': t_put - t0, 'join_seconds': t_join - t_put,
                   'consumed_at_join': consumed, 'qsize': q.qsize()})


if __name__ == '__main__':
    main()
