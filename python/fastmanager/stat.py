"""``fastmanager.stat()``: a running fastmanager server's figures."""
import json
from multiprocessing import current_process
from multiprocessing.connection import Client
from multiprocessing.managers import dispatch

# The control request the server answers with its figures as JSON text
# (src/server/stats/mod.rs, STAT_REQUEST).
STAT_REQUEST = 'fastmanager_stat'


def stat(address, authkey=None):
    """The figures ``fastmanager stat --json`` prints, as a dict:
    connections, requests (totals, per second, by method, latency),
    objects by type, every named object's depth (``len``, ``unfinished``,
    lock holder), blocked calls, memory and slow calls.

    ``address`` is what the manager was given (``(host, port)`` or a Unix
    socket path); ``authkey`` defaults to the current process's, as a
    manager's does. A master can show its queue draining with
    ``stat(addr, key)['named']``. Raises ``RemoteError`` against a server
    that is not fastmanager (CPython's does not know the request).
    """
    if authkey is None:
        authkey = current_process().authkey
    conn = Client(address, authkey=bytes(authkey))
    try:
        return json.loads(dispatch(conn, None, STAT_REQUEST))
    finally:
        conn.close()
