"""Scenario 5/6: put the item set (role put) or get and check it (role get).

    items.py put            -> {"ident": q._id, "count": N}
    items.py get IDENT      -> {"failures": [...], "count": N}
"""
import sys

import compat_items
import fmclient


def main():
    role = sys.argv[1]
    m = fmclient.connect()
    q = m.get_task()
    items = compat_items.make_items()
    if role == 'put':
        for name, value in items:
            q.put(value)
        # The proxy's own ident string object: the request pickle
        # (ident, 'put', (item,), {}) memoizes it, so the item is a memo GET.
        q.put(q._id)
        q.put((q._id, 'put'))
        fmclient.emit({'ident': q._id, 'count': len(items) + 2,
                       'version': fmclient.version()})
        return
    ident = sys.argv[2]
    items = items + [('ident', ident), ('ident_tuple', (ident, 'put'))]
    failures = []
    for name, expected in items:
        try:
            got = q.get(timeout=20)
        except Exception as e:
            failures.append('%s: get raised %s: %s'
                            % (name, fmclient.exc_name(e), e))
            break
        err = compat_items.check(name, got, expected)
        if err:
            failures.append(err)
    leftover = q.qsize()
    if leftover:
        failures.append('%d items left in the queue' % leftover)
    fmclient.emit({'failures': failures, 'count': len(items),
                   'version': fmclient.version()})


if __name__ == '__main__':
    main()
