"""A Python master for Rust workers (examples/worker.rs): puts the ints
1..ntasks, then every compat item as a (name, value) task, then one None
per worker; collects a result per task.  A Rust worker squares ints and
hands any other task back unchanged, so each item must come back intact,
however little of it Rust understands."""
import sys

import compat_items
import fmclient


def main():
    ntasks, nworkers = int(sys.argv[1]), int(sys.argv[2])
    m = fmclient.connect()
    task, result = m.get_task(), m.get_result()
    items = compat_items.make_items()
    for i in range(1, ntasks + 1):
        task.put(i)
    for name_value in items:
        task.put(name_value)
    for _ in range(nworkers):
        task.put(None)
    squares, errors, names, workers = [], [], [], set()
    for _ in range(ntasks + len(items)):
        got, square, wid = result.get(timeout=60)
        workers.add(wid)
        if type(got) is int:
            squares.append([got, square])
            continue
        name, value = got
        names.append(name)
        if square is not None:
            errors.append('%s: square %r for a non-int task' % (name, square))
        problem = compat_items.check(name, value)
        if problem:
            errors.append(problem)
    fmclient.emit({'squares': sorted(squares), 'item_errors': errors,
                   'item_names': sorted(names),
                   'expected_names': sorted(n for n, _ in items),
                   'workers': sorted(workers)})


if __name__ == '__main__':
    main()
