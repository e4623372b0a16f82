"""fastmanager: CPython's ``multiprocessing.managers`` server, in Rust.

Switch a master program by changing one import::

    from fastmanager import BaseManager      # was: multiprocessing.managers

Workers keep using the standard library's clients unchanged.
"""
from .managers import BaseManager, Server, SyncManager
from .reconnect import MaybeAppliedError, ObjectLostError, ReconnectError
from .stat import stat

__all__ = ['BaseManager', 'SyncManager', 'Server', 'Manager', 'ReconnectError',
           'MaybeAppliedError', 'ObjectLostError', 'stat']


def Manager(**options):
    """A started :class:`SyncManager` served by the Rust server, as
    ``multiprocessing.Manager()`` returns a started stdlib one; ``options``
    are the server's (``managers.SERVER_OPTIONS``)."""
    m = SyncManager(**options)
    m.start()
    return m

__version__ = '0.1.0'
