"""A master that shares two queue.Queue objects by name, starts its
manager, hands out tasks and collects what two worker processes (stock
`connect()` clients, square_worker.py) send back."""
import queue
from multiprocessing.managers import BaseManager

import scenario_env

NTASKS = 40
NWORKERS = 2

tasks = queue.Queue()
results = queue.Queue()
tasks.put(0)        # put before start(): the server must still hold it


class QueueManager(BaseManager):
    pass


QueueManager.register('get_task', callable=lambda: tasks)
QueueManager.register('get_result', callable=lambda: results)


def main():
    m = QueueManager(address=scenario_env.address(),
                     authkey=scenario_env.authkey())
    m.start()
    scenario_env.report('server', type(m._process))
    print('address as given:', m.address == scenario_env.address())
    task, result = m.get_task(), m.get_result()
    for n in range(1, NTASKS):
        task.put(n)
    for _ in range(NWORKERS):
        task.put(None)
    workers = [scenario_env.spawn('square_worker.py')
               for _ in range(NWORKERS)]
    got = [result.get(timeout=scenario_env.TIMEOUT) for _ in range(NTASKS)]
    done = scenario_env.collect(workers)
    print('results:', sorted(square for _, square in got))
    print('each result is its task squared:',
          all(square == n * n for n, square in got))
    print('tasks done by the workers:', sum(int(d) for d in done))
    print('queues empty:', task.empty(), result.empty(), task.qsize())
    try:
        task.get_nowait()
    except queue.Empty as e:
        print('get_nowait on an empty queue raises', type(e).__name__)
    try:
        result.get(timeout=0.1)
    except queue.Empty as e:
        print('get(timeout=0.1) on an empty queue raises', type(e).__name__)
    print('str of a queue proxy:', scenario_env.scrub(str(task)))
    m.shutdown()
    print('state after shutdown:', m._state.value)


if __name__ == '__main__':
    main()
