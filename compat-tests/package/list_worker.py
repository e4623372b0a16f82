"""A client that appends its own entries to the master's shared list."""
import sys
from multiprocessing.managers import BaseManager

import scenario_env


class ListManager(BaseManager):
    pass


ListManager.register('get_list')


def main():
    scenario_env.report('client', BaseManager)
    name = sys.argv[1]
    m = ListManager(address=scenario_env.address(),
                    authkey=scenario_env.authkey())
    m.connect()
    entries = m.get_list()
    for i in range(5):
        entries.append('%s-%d' % (name, i))
    entries.extend([name] * 2)
    print(entries.count(name))


if __name__ == '__main__':
    main()
