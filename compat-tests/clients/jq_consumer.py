"""Scenario 2 consumer: get + task_done until None (see jq_producer.py)."""
import multiprocessing
import os
import pickle
import sys

import fmclient


def main():
    mode, workdir = sys.argv[1], sys.argv[2]
    if mode == 'named':
        q = fmclient.connect().jobs()
    else:
        # Unpickling a proxy connects with current_process().authkey.
        multiprocessing.current_process().authkey = fmclient.authkey()
        text = fmclient.wait_for_file(os.path.join(workdir, 'proxy.hex'))
        q = pickle.loads(bytes.fromhex(text))
    count = 0
    in_order = True
    while True:
        x = q.get(timeout=30)
        if x is None:
            fmclient.write_file(os.path.join(workdir, 'consumed'), str(count))
            q.task_done()
            break
        if x != count:
            in_order = False
        count += 1
        q.task_done()
    fmclient.emit({'count': count, 'in_order': in_order})


if __name__ == '__main__':
    main()
