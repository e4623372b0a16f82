"""A worker across a server restart:
``reconnect_worker.py fastmanager|stock [SECONDS_PER_TASK]``.

Takes ``get_task`` items until a None and puts ``(n, n * n)`` on
``get_result``. With ``fastmanager`` its manager is
``fastmanager.BaseManager`` (the one-import switch): its proxies reconnect
when the server comes back. A ``MaybeAppliedError`` (a get whose reply the
restart swallowed) is counted and the loop goes on. With ``stock`` it is
``multiprocessing.managers.BaseManager``, and the first exception ends it.

Prints FMRESULT {"done": [tasks taken], "maybe_applied": N, "error": null|name}.
"""
import queue
import sys
import time

import fmclient

KIND = sys.argv[1]
PAUSE = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
if KIND == 'fastmanager':
    import fastmanager
    from fastmanager import BaseManager
else:
    from multiprocessing.managers import BaseManager


class QueueManager(BaseManager):
    pass


QueueManager.register('get_task')
QueueManager.register('get_result')


def main():
    m = QueueManager(address=fmclient.address(), authkey=fmclient.authkey())
    m.connect()
    tasks, results = m.get_task(), m.get_result()
    done, maybe_applied, error = [], 0, None
    while True:
        try:
            n = tasks.get(timeout=0.5)
        except queue.Empty:
            continue
        except Exception as e:
            if KIND == 'fastmanager' and isinstance(
                    e, fastmanager.MaybeAppliedError):
                maybe_applied += 1
                continue
            error = fmclient.exc_name(e)
            break
        if n is None:
            break
        # Taken, whether or not its result gets through: the master may
        # see the result and kill the server before the put's reply comes.
        done.append(n)
        time.sleep(PAUSE)
        try:
            results.put((n, n * n))
        except Exception as e:
            if KIND == 'fastmanager' and isinstance(
                    e, fastmanager.MaybeAppliedError):
                maybe_applied += 1     # the result may be lost: go on
                continue
            error = fmclient.exc_name(e)
            break
    fmclient.emit({'done': done, 'maybe_applied': maybe_applied,
                     'error': error})


if __name__ == '__main__':
    main()
