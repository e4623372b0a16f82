"""A master that shares an instance of its own class (set/get/
__setitem__) and an RLock, and registers the class itself as a typeid.
Two worker processes (stock clients, store_worker.py) count under the
lock; the master checks the count and how errors come back."""
import gc
import threading
from multiprocessing.managers import BaseManager

import scenario_env

NWORKERS = 2


class Store(object):
    def __init__(self, **initial):
        self._data = dict(initial)

    def set(self, key, value):
        self._data[key] = value

    def get(self, key):
        return self._data[key]

    def __setitem__(self, key, value):
        self._data[key] = value

    def keys(self):
        return sorted(self._data)

    def fail(self):
        raise ValueError('Store.fail called')


store = Store(count=0)
lock = threading.RLock()


class StoreManager(BaseManager):
    pass


StoreManager.register('get_store', callable=lambda: store,
                      exposed=('set', 'get', '__setitem__', 'keys'))
StoreManager.register('get_lock', callable=lambda: lock)
StoreManager.register('Store', Store,
                      exposed=('set', 'get', '__setitem__', 'keys', 'fail'))


def main():
    m = StoreManager(address=scenario_env.address(),
                     authkey=scenario_env.authkey())
    m.start()
    scenario_env.report('server', type(m._process))
    shared, rlock = m.get_store(), m.get_lock()
    print('str of the store proxy:', scenario_env.scrub(str(shared)))
    print('str of the lock proxy:', scenario_env.scrub(str(rlock)))
    done = scenario_env.collect([scenario_env.spawn('store_worker.py',
                                                    'w%d' % i)
                                 for i in range(NWORKERS)])
    print('workers:', done)
    print('count:', shared.get('count'))
    print('keys:', shared.keys(), [shared.get('w%d' % i)
                                   for i in range(NWORKERS)])
    try:
        shared.get('missing')
    except KeyError as e:
        print('get of a missing key raises', type(e).__name__, e)
    try:
        shared._callmethod('fail')
    except Exception as e:
        print('a method not exposed raises', type(e).__name__)
    try:
        rlock.release()
    except RuntimeError as e:
        print('release of an unheld RLock raises', type(e).__name__, e)
    print('acquire, non-blocking:', rlock.acquire(False), rlock.acquire(False))
    rlock.release()
    rlock.release()

    own = m.Store(colour='red')     # a new Store for each call
    own['size'] = 3
    other = m.Store()
    print('new stores:', own.keys(), other.keys(), own.get('colour'))
    try:
        own.fail()
    except ValueError as e:
        print('an exposed method that raises:', type(e).__name__, e)
    print('objects on the server:', m._number_of_objects())
    del own, other
    gc.collect()    # own.fail()'s traceback holds `own` in a cycle
    print('after dropping two proxies:', m._number_of_objects())
    m.shutdown()


if __name__ == '__main__':
    main()
