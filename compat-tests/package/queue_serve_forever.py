"""A master that fills its task queue, then blocks in
get_server().serve_forever() while two worker processes (stock clients,
square_worker.py) square the tasks. A thread of the master waits for the
workers, reads the results as a client of its own server, and sends the
shutdown request that ends serve_forever (which exits with status 0)."""
import queue
import sys
import threading
from multiprocessing.managers import BaseManager

import scenario_env

NTASKS = 30
NWORKERS = 2

tasks = queue.Queue()
results = queue.Queue()
for n in range(NTASKS):
    tasks.put(n)        # before serving: the workers must see them
for _ in range(NWORKERS):
    tasks.put(None)


class QueueManager(BaseManager):
    pass


QueueManager.register('get_task', callable=lambda: tasks)
QueueManager.register('get_result', callable=lambda: results)


def collect_then_shutdown(address):
    try:
        done = scenario_env.collect([scenario_env.spawn('square_worker.py')
                                     for _ in range(NWORKERS)])
        client = QueueManager(address=address,
                              authkey=scenario_env.authkey())
        client.connect()
        result = client.get_result()
        print('results waiting:', result.qsize())
        got = [result.get(timeout=scenario_env.TIMEOUT)
               for _ in range(NTASKS)]
        print('results:', sorted(square for _, square in got))
        print('tasks done by the workers:', sum(int(d) for d in done))
        print('task queue empty:', client.get_task().empty())
        sys.stdout.flush()
    finally:    # a failure above ends the program too, with what it printed
        scenario_env.request_shutdown(address)


def main():
    m = QueueManager(address=scenario_env.address(),
                     authkey=scenario_env.authkey())
    server = m.get_server()
    scenario_env.report('server', type(server))
    print('server address as given:', server.address == scenario_env.address())
    sys.stdout.flush()
    threading.Thread(target=collect_then_shutdown,
                     args=(server.address,)).start()
    try:
        server.serve_forever()
    except SystemExit as e:
        print('serve_forever ended: SystemExit', e.code)
        raise
    print('serve_forever returned')     # CPython's never does


if __name__ == '__main__':
    main()
