"""Scenario 1 worker: get tasks until None, put (n, n*n, worker)."""
import sys

import fmclient


def main():
    wid = sys.argv[1]
    m = fmclient.connect()
    task, result = m.get_task(), m.get_result()
    done = 0
    while True:
        n = task.get(timeout=30)
        if n is None:
            break
        result.put((n, n * n, wid))
        done += 1
    fmclient.emit({'done': done})


if __name__ == '__main__':
    main()
