"""SyncManager in the `with` form: a Namespace, a list, a dict, a Value,
a Lock and a Queue handed to a child process (multiprocessing.Process),
which changes them; the parent prints what it sees."""
import multiprocessing
import queue
from multiprocessing.managers import SyncManager

import scenario_env


def child(ns, items, table, counter, lock, inbox):
    ns.answer = 42
    ns.name = 'child'
    del ns.scratch
    items.append('from child')
    items[0] = 'changed'
    items.extend(range(3))
    table['child'] = {'nested': [1, 2]}
    table.update(b=2)
    del table['gone']
    with lock:
        counter.value += 10
    inbox.put(('done', len(items)))


def main():
    with SyncManager(address=scenario_env.address(),
                     authkey=scenario_env.authkey()) as m:
        scenario_env.report('server', type(m._process))
        ns = m.Namespace(answer=0, scratch=True)
        items = m.list(['first'])
        table = m.dict(gone=1, a=1)
        counter = m.Value('i', 5)
        lock = m.Lock()
        inbox = m.Queue()
        p = multiprocessing.Process(
            target=child, args=(ns, items, table, counter, lock, inbox))
        p.start()
        print('child says:', inbox.get(timeout=scenario_env.TIMEOUT))
        p.join(scenario_env.TIMEOUT)
        print('child exit code:', p.exitcode)
        print('namespace:', ns, ns.answer)
        print('list:', items, len(items), items[-1], items[1:3])
        print('dict:', table, sorted(table.keys()), table.get('nope', '-'))
        print('value:', counter, counter.value)
        print('lock:', lock.acquire(False), lock.acquire(False))
        lock.release()
        for bad in (lambda: ns.scratch, lambda: table['gone'],
                    lambda: items[10], lambda: inbox.get_nowait()):
            try:
                bad()
            except (AttributeError, KeyError, IndexError, queue.Empty) as e:
                print('raises', type(e).__name__, e)
    print('state after the with block:', m._state.value)


if __name__ == '__main__':
    main()
