"""A stock CPython client of a Redis-backed gateway (test_redis_backend_queues.py).

    redis_backend.py ROLE HOST:PORT AUTHKEY [ARGS...]

Roles:
  produce FIRST COUNT [MOD]
                        puts FIRST..FIRST+COUNT-1 on `tasks` (each modulo
                        MOD, if given: equal twins)
  consume               gets from `tasks` until None; prints the items
  wait TAG              prints 'ready', then one blocking get on `tasks`;
                        prints TAG and the item
Results go to stdout as one JSON line.
"""
import json
import sys
from multiprocessing.managers import BaseManager


class Manager(BaseManager):
    pass


Manager.register('tasks')


def main():
    role, address, authkey = sys.argv[1:4]
    host, port = address.rsplit(':', 1)
    m = Manager((host, int(port)), authkey=authkey.encode())
    m.connect()
    q = m.tasks()
    if role == 'produce':
        first, count = int(sys.argv[4]), int(sys.argv[5])
        mod = int(sys.argv[6]) if len(sys.argv) > 6 else None
        for i in range(first, first + count):
            q.put(i % mod if mod else i)
        print(json.dumps({'put': count}))
    elif role == 'consume':
        got = []
        while True:
            item = q.get(timeout=60)
            if item is None:
                break
            got.append(item)
        print(json.dumps({'got': got}))
    elif role == 'wait':
        tag = sys.argv[4]
        print('ready', flush=True)
        print(json.dumps({'tag': tag, 'item': q.get(timeout=60)}))
    else:
        raise SystemExit('unknown role %r' % role)


if __name__ == '__main__':
    main()
