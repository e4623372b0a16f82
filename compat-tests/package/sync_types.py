"""SyncManager's other types, used by the master itself after start():
Pool, Event, Barrier, Condition, BoundedSemaphore, Array, Value. The
program ends without calling shutdown(): the manager's finalizer stops
the server at exit, and the process must still exit with status 0."""
import threading
from multiprocessing.managers import SyncManager

import scenario_env


def square(x):
    return x * x


def main():
    m = SyncManager(address=scenario_env.address(),
                    authkey=scenario_env.authkey())
    m.start()
    scenario_env.report('server', type(m._process))
    pool = m.Pool(2)
    print('pool:', pool.apply_async(square, (7,)).get(scenario_env.TIMEOUT),
          pool.map(square, range(6)))
    pool.close()
    pool.join()

    event = m.Event()
    setter = threading.Timer(0.2, event.set)
    setter.start()
    print('event:', event.is_set(), event.wait(scenario_env.TIMEOUT),
          event.is_set())
    setter.join()
    barrier = m.Barrier(2, timeout=scenario_env.TIMEOUT)
    other = threading.Thread(target=barrier.wait)
    other.start()
    print('barrier:', barrier.wait() in (0, 1), barrier.parties,
          barrier.n_waiting, barrier.broken)
    other.join()
    cond = m.Condition()
    with cond:
        print('condition wait times out:', cond.wait(0.05))
    sem = m.BoundedSemaphore(2)
    print('semaphore:', sem.acquire(), sem.acquire(), sem.acquire(False))
    sem.release()
    sem.release()
    try:
        sem.release()
    except ValueError as e:
        print('one release too many raises', type(e).__name__, e)
    array = m.Array('i', [1, 2, 3])
    array[0] = 10
    print('array:', len(array), array[0], array[1:], array)
    value = m.Value('d', 1.5)
    value.value *= 3
    print('value:', value.value, value)
    print('objects on the server:', m._number_of_objects())
    print('leaving without shutdown()')


if __name__ == '__main__':
    main()
