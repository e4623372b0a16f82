"""Scenario 1 master: put tasks, then one None per worker; collect results."""
import sys

import fmclient


def main():
    ntasks, nworkers = int(sys.argv[1]), int(sys.argv[2])
    m = fmclient.connect()
    task, result = m.get_task(), m.get_result()
    for i in range(1, ntasks + 1):
        task.put(i)
    for _ in range(nworkers):
        task.put(None)
    results = []
    for _ in range(ntasks):
        results.append(result.get(timeout=30))
    fmclient.emit({'results': results})


if __name__ == '__main__':
    main()
