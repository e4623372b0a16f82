"""A client of the master's Store and RLock: under the lock, read the
counter, write it back plus one, and note its own progress."""
import sys
from multiprocessing.managers import BaseManager

import scenario_env

ROUNDS = 25


class StoreManager(BaseManager):
    pass


StoreManager.register('get_store')
StoreManager.register('get_lock')


def main():
    scenario_env.report('client', BaseManager)
    name = sys.argv[1]
    m = StoreManager(address=scenario_env.address(),
                     authkey=scenario_env.authkey())
    m.connect()
    store, lock = m.get_store(), m.get_lock()
    for i in range(ROUNDS):
        lock.acquire()
        try:
            lock.acquire()          # an RLock: the owner may take it again
            count = store.get('count')
            store.set('count', count + 1)
            lock.release()
        finally:
            lock.release()
        store[name] = i + 1
    print('ok')


if __name__ == '__main__':
    main()
