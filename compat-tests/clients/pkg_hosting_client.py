"""A stock multiprocessing client of pkg_hosting_master.py.

    pkg_hosting_client.py nap|burst WORKDIR"""
import json
import os
import sys
import time
from multiprocessing.managers import BaseManager

import fmclient


class Client(BaseManager):
    pass


for name in ('get_q', 'new_q', 'Slow', 'stats'):
    Client.register(name)


def main():
    role, work = sys.argv[1], sys.argv[2]
    m = Client(address=fmclient.address(), authkey=fmclient.authkey())
    m.connect()
    if role == 'nap':
        slow = m.Slow()
        fmclient.write_file(os.path.join(work, 'napping'), '1')
        result = slow.nap(3)
        print(json.dumps({'result': result, 'done_at': time.time()}))
    else:
        q = m.get_q()
        first = q.get(timeout=10)
        for i in range(200):
            q.put(i)
            assert q.get(timeout=10) == i
        print(json.dumps({'first_item': first, 'done_at': time.time()}))


if __name__ == '__main__':
    main()
