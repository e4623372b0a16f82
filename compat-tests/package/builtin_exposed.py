"""A master that shares a list, a dict and an Event by name; the proxies
(AutoProxy) offer the public methods of the object the callable returned,
so the master reads the list with copy()."""
import threading
from multiprocessing.managers import BaseManager

import scenario_env

entries = [3, 1, 2]
table = {'a': 1}
flag = threading.Event()


class Manager(BaseManager):
    pass


Manager.register('get_list', callable=lambda: entries)
Manager.register('get_dict', callable=lambda: table)
Manager.register('get_event', callable=lambda: flag)


def public(proxy):
    return sorted(name for name in dir(proxy) if not name.startswith('_'))


def main():
    m = Manager(address=scenario_env.address(),
                authkey=scenario_env.authkey())
    m.start()
    scenario_env.report('server', type(m._process))
    for name in ('get_list', 'get_dict', 'get_event'):
        print(name, public(getattr(m, name)()))
    shared = m.get_list()
    try:
        print('copy:', shared.copy())
    except AttributeError as e:
        print('copy: AttributeError', e)
    m.shutdown()


if __name__ == '__main__':
    main()
