"""A JoinableQueue consumer: take jobs until a None, mark every one done
(the None too), print how many it took and their sum."""
from multiprocessing.managers import BaseManager

import scenario_env


class JobManager(BaseManager):
    pass


JobManager.register('get_jobs')


def main():
    scenario_env.report('client', BaseManager)
    m = JobManager(address=scenario_env.address(),
                   authkey=scenario_env.authkey())
    m.connect()
    jobs = m.get_jobs()
    count = total = 0
    while True:
        item = jobs.get(timeout=scenario_env.TIMEOUT)
        jobs.task_done()
        if item is None:
            break
        count += 1
        total += item
    print(count, total)


if __name__ == '__main__':
    main()
