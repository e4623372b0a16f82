"""A stock CPython client of a Redis-backed gateway's locks
(test_redis_backend_sync.py).

    redis_backend_sync.py ROLE HOST:PORT AUTHKEY NAME [TIMEOUT]

Roles:
  hold       acquires the lock or semaphore NAME, prints 'held', then
             sleeps until killed
  acquire    prints 'ready', then acquire(timeout=TIMEOUT) on NAME; prints
             the result and the seconds waited as one JSON line
"""
import json
import sys
import time
from multiprocessing.managers import AcquirerProxy, BaseManager


class Manager(BaseManager):
    pass


def main():
    role, address, authkey, name = sys.argv[1:5]
    Manager.register(name, proxytype=AcquirerProxy)
    host, port = address.rsplit(':', 1)
    m = Manager((host, int(port)), authkey=authkey.encode())
    m.connect()
    lock = getattr(m, name)()
    if role == 'hold':
        assert lock.acquire(timeout=30)
        print('held', flush=True)
        time.sleep(3600)
    elif role == 'acquire':
        timeout = float(sys.argv[5])
        print('ready', flush=True)
        started = time.monotonic()
        got = lock.acquire(timeout=timeout)
        print(json.dumps({'acquired': got, 'waited': time.monotonic() - started}))
    else:
        raise SystemExit('unknown role %r' % role)


if __name__ == '__main__':
    main()
