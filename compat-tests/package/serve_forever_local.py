"""A serve_forever master that keeps using the queues it registered: a
thread of the master puts work into its own `tasks` queue and reads its
own `results` queue directly, while a client (here a thread, connected
like any worker) uses the same queues through the server. On CPython's
server both sides touch one and the same queue.Queue.

With `--kept-objects-in-python`, the manager class sets
`kept_objects_in_rust = False`: fastmanager then serves the master's own
queues as they are, so both sides meet there too."""
import queue
import sys
import threading
from multiprocessing.managers import BaseManager

import scenario_env

WAIT = 2        # seconds: ample for a reply that comes at all

tasks = queue.Queue()
results = queue.Queue()


class QueueManager(BaseManager):
    pass


QueueManager.register('get_task', callable=lambda: tasks)
QueueManager.register('get_result', callable=lambda: results)

if '--kept-objects-in-python' in sys.argv[1:]:
    # fastmanager: serve the kept queues as the Python objects themselves
    # (ignored by CPython, whose serve_forever always does).
    QueueManager.kept_objects_in_rust = False


def master_and_client(address):
    try:
        client = QueueManager(address=address,
                              authkey=scenario_env.authkey())
        client.connect()
        task, result = client.get_task(), client.get_result()
        tasks.put('from the master')            # the master's own queue
        try:
            print('the client gets:', task.get(timeout=WAIT))
        except queue.Empty as e:
            print('the client gets:', type(e).__name__)
        result.put('from the client')
        try:
            print('the master gets:', results.get(timeout=WAIT))
        except queue.Empty as e:
            print('the master gets:', type(e).__name__)
        sys.stdout.flush()
    finally:    # a failure above ends the program too
        scenario_env.request_shutdown(address)


def main():
    m = QueueManager(address=scenario_env.address(),
                     authkey=scenario_env.authkey())
    server = m.get_server()
    scenario_env.report('server', type(server))
    threading.Thread(target=master_and_client,
                     args=(server.address,)).start()
    server.serve_forever()


if __name__ == '__main__':
    main()
