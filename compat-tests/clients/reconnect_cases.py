"""What a reconnecting (fastmanager, connect()ed) proxy does in each case;
``reconnect_cases.py DIR``, the test restarting and stopping the server as
the files in DIR say.

1. ``blocked``: a get() with no timeout is waiting when the server is
   killed: MaybeAppliedError, not a silent retry.
2. after the restart: the named queue is found again (put, get);
   a dict made by create raises ObjectLostError.
3. ``stopped``: the server is killed and not restarted: a call gives up
   after reconnect_timeout (1 s here) with the usual exception.
"""
import os
import sys
import time

import fmclient
import fastmanager
from fastmanager import SyncManager

DIR = sys.argv[1]


class Manager(SyncManager):
    pass


Manager.register('get_task')


def main():
    out = {}
    m = Manager(address=fmclient.address(), authkey=fmclient.authkey(),
                reconnect_timeout=20)
    m.connect()
    tasks, d = m.get_task(), m.dict()
    d['a'] = 1
    fmclient.write_file(os.path.join(DIR, 'blocked'), '')
    try:
        tasks.get()
        out['blocked_get'] = 'returned'
    except Exception as e:
        out['blocked_get'] = fmclient.exc_name(e)
        out['blocked_get_is_eof'] = isinstance(e, EOFError)
        out['blocked_get_is_connection_error'] = isinstance(
            e, ConnectionError)
        out['blocked_get_says'] = str(e)
    fmclient.wait_for_file(os.path.join(DIR, 'restarted'))
    tasks.put('after restart')
    out['after_restart'] = tasks.get(timeout=10)
    try:
        d['a']
        out['created_dict'] = 'returned'
    except Exception as e:
        out['created_dict'] = fmclient.exc_name(e)
        out['created_dict_says'] = str(e)
    m.reconnect_timeout = 1
    tasks.qsize()      # a live connection first
    fmclient.write_file(os.path.join(DIR, 'stopped'), '')
    fmclient.wait_for_file(os.path.join(DIR, 'killed'))
    t0 = time.monotonic()
    try:
        tasks.qsize()
        out['stopped'] = 'returned'
    except Exception as e:
        out['stopped'] = fmclient.exc_name(e)
    out['stopped_after_s'] = time.monotonic() - t0
    out['names'] = [c.__name__ for c in (
        fastmanager.ReconnectError, fastmanager.MaybeAppliedError,
        fastmanager.ObjectLostError)]
    fmclient.emit(out)


if __name__ == '__main__':
    main()
