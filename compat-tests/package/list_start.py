"""A master that shares a list by name (`get_list`); three worker
processes (stock clients, list_worker.py) append to it."""
from multiprocessing.managers import BaseManager

import scenario_env

NWORKERS = 3

entries = ['master']


class ListManager(BaseManager):
    pass


ListManager.register('get_list', callable=lambda: entries)


def main():
    m = ListManager(address=scenario_env.address(),
                    authkey=scenario_env.authkey())
    m.start()
    scenario_env.report('server', type(m._process))
    shared = m.get_list()
    print('before the workers:', shared)
    counts = scenario_env.collect([scenario_env.spawn('list_worker.py',
                                                      'w%d' % i)
                                   for i in range(NWORKERS)])
    print('each worker counts its own entries:', counts)
    shared.sort()
    print('sorted:', shared)
    print('a copy:', shared._getvalue()[:3], len(shared._getvalue()))
    print('count, index:', shared.count('w1'), shared.index('w0-0'))
    shared.insert(0, 'first')
    shared.reverse()
    print('pop, pop(0):', shared.pop(), shared.pop(0))
    shared.remove('master')
    for bad in (lambda: shared.remove('nobody'),
                lambda: shared.index('nobody'),
                lambda: m.get_list().pop(99)):
        try:
            bad()
        except Exception as e:
            print('raises', type(e).__name__, e)
    print('same list for every get_list():',
          len(m.get_list()._getvalue()) == len(shared._getvalue()))
    m.shutdown()


if __name__ == '__main__':
    main()
