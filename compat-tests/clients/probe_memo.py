"""Shows that the tricky items really arrive as memo references (the
item's pickle opcodes point back into the request's ident / method name).
Not a test client; run by test_items.py::test_request_pickle_memoizes to
make sure the scenario still exercises what it claims to."""
import pickletools
import sys

import fmclient
from multiprocessing import connection


def main():
    m = fmclient.connect()
    q = m.get_task()
    seen = {}
    real_send = connection.Connection.send

    def spy(self, obj):
        if isinstance(obj, tuple) and len(obj) == 4 and obj[1] == 'put':
            from multiprocessing.reduction import ForkingPickler
            data = bytes(ForkingPickler.dumps(obj))
            ops = [op.name for op, arg, pos in pickletools.genops(data)]
            seen[repr(obj[2][0])[:20]] = any(
                'GET' in name for name in ops)
        return real_send(self, obj)

    connection.Connection.send = spy
    q.put('put')
    q.put(q._id)
    q.get(timeout=5)
    q.get(timeout=5)
    fmclient.emit({'memo_get': seen, 'version': fmclient.version()})


if __name__ == '__main__':
    sys.exit(main())
