"""A producer master: 10,000 jobs into a shared queue (SyncManager's
JoinableQueue is a queue.Queue too), a None per consumer, then join()
until two consumer processes (stock clients, jobs_consumer.py) have
called task_done for every one."""
import queue
from multiprocessing.managers import BaseManager

import scenario_env

NJOBS = 10000
NCONSUMERS = 2

jobs = queue.Queue()


class JobManager(BaseManager):
    pass


JobManager.register('get_jobs', callable=lambda: jobs)


def main():
    m = JobManager(address=scenario_env.address(),
                   authkey=scenario_env.authkey())
    m.start()
    scenario_env.report('server', type(m._process))
    q = m.get_jobs()
    consumers = [scenario_env.spawn('jobs_consumer.py')
                 for _ in range(NCONSUMERS)]
    for n in range(NJOBS):
        q.put(n)
    for _ in range(NCONSUMERS):
        q.put(None)
    q.join()
    print('join returned; queue empty:', q.empty(), q.qsize())
    taken = [tuple(int(x) for x in out.split())
             for out in scenario_env.collect(consumers)]
    print('jobs taken:', sum(c for c, _ in taken))
    print('sum of jobs:', sum(t for _, t in taken))
    try:
        q.task_done()
    except ValueError as e:
        print('one task_done too many raises', type(e).__name__, e)
    m.shutdown()


if __name__ == '__main__':
    main()
