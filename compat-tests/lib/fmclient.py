"""Helpers shared by the client scripts (run by every CPython from 3.6 on).

The driver (conftest.py) passes the server in the environment:
FM_HOST, FM_PORT, FM_AUTHKEY.  A client prints exactly one result line,
``FMRESULT <json>``, which the driver parses; anything else on stdout or
stderr is only shown when a test fails.
"""
import json
import os
import sys
import time
from multiprocessing.managers import BaseManager, SyncManager

RESULT_MARK = 'FMRESULT '
NAMES = ('get_task', 'get_result', 'jobs', 'small', 'smalljobs')


def address():
    if os.environ.get('FM_UNIX'):
        return os.environ['FM_UNIX']
    return (os.environ['FM_HOST'], int(os.environ['FM_PORT']))


def authkey():
    return os.environ['FM_AUTHKEY'].encode('utf-8')


class QueueManager(BaseManager):
    pass


for _name in NAMES:
    QueueManager.register(_name)


def connect(key=None):
    """The stock BaseManager client: register names, connect()."""
    m = QueueManager(address=address(),
                     authkey=authkey() if key is None else key)
    m.connect()
    return m


def connect_sync(key=None):
    m = SyncManager(address=address(),
                    authkey=authkey() if key is None else key)
    m.connect()
    return m


def round_trip():
    """One put and get on the suite's result queue: proof that the server
    still serves (after a hostile client did its worst)."""
    q = connect().get_result()
    q.put(('ok', 42))
    return list(q.get(timeout=10))


def exc_name(e):
    t = type(e)
    return '%s.%s' % (t.__module__, t.__qualname__)


def version():
    return '%d.%d' % sys.version_info[:2]


def emit(obj):
    sys.stdout.write(RESULT_MARK + json.dumps(obj, sort_keys=True) + '\n')
    sys.stdout.flush()


def wait_for_file(path, timeout=30.0):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            raise RuntimeError('timed out waiting for %s' % path)
        time.sleep(0.01)
    with open(path) as f:
        return f.read()


def write_file(path, text):
    """Atomically (rename) write text, so a poller never reads half."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.rename(tmp, path)

