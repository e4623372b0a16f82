"""A worker as the multiprocessing docs write it: connect to a master's
named queues, square tasks until a None, print how many it did."""
from multiprocessing.managers import BaseManager

import scenario_env


class QueueManager(BaseManager):
    pass


QueueManager.register('get_task')
QueueManager.register('get_result')


def main():
    scenario_env.report('client', BaseManager)
    m = QueueManager(address=scenario_env.address(),
                     authkey=scenario_env.authkey())
    m.connect()
    task, result = m.get_task(), m.get_result()
    done = 0
    while True:
        n = task.get(timeout=scenario_env.TIMEOUT)
        if n is None:
            break
        result.put((n, n * n))
        done += 1
    print(done)


if __name__ == '__main__':
    main()
