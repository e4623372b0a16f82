"""Proxies that outlive a server restart, for ``connect()``ed managers.

A stock proxy keeps one connection per thread for its whole life: once the
server goes away, every call fails for good. A ``fastmanager`` manager
that ``connect()``s instead gives its proxies this behaviour:

- before a call, a connection the server has closed (readable while no
  reply is due: end of file) is dropped; a new one is opened with backoff
  (0.05 s doubling to 1 s) for at most ``reconnect_timeout`` seconds
  (default 30), after which the usual exception (``ConnectionRefusedError``
  ...) is raised;
- a proxy to a named object (a typeid other than SyncManager's built-in
  ones, e.g. ``register('get_task')``) is resolved again by calling the
  typeid, with the same arguments, on the new server: the new token
  replaces the old one;
- a proxy to an object made by ``create`` (``m.dict()``, ``m.Queue()``)
  cannot be found again: ``ObjectLostError``;
- a call is retried only when its request could not be sent in full (the
  server never saw it). When the request went out and no reply came, the
  call may have run (a ``put`` stored, a ``get`` taken): it is not
  repeated, ``MaybeAppliedError`` says so.

``reconnect_timeout = 0`` (class attribute, or the manager's keyword)
turns it off: the proxies are the standard library's, unchanged. Managers
that serve (``start()``, ``get_server()``) never reconnect.
"""
import select
import threading
import time
from multiprocessing import managers as _mpm

__all__ = ['ReconnectError', 'MaybeAppliedError', 'ObjectLostError']

# Typeids whose every call makes a new object: their proxies cannot be
# resolved again by name.
_CREATING_TYPEIDS = frozenset(_mpm.SyncManager._registry)

# What a dead server or connection raises in the standard client.
_LOST = (OSError, EOFError)


class ReconnectError(ConnectionError, EOFError):
    """The server went away and the call cannot be completed. A subclass of
    both exceptions a stock proxy raises then, so code that catches those
    still does."""


class MaybeAppliedError(ReconnectError):
    """The request was sent but its reply was lost: the call may have run on
    the server (an item put, or taken), so it is not repeated."""


class ObjectLostError(ReconnectError):
    """The server went away, and this proxy's object was made by ``create``
    (not a name the server resolves): it cannot be found again. The call
    was not sent."""


class _Backoff(object):
    """Waits between attempts, until ``timeout`` seconds from the first."""

    def __init__(self, timeout):
        self.deadline = time.monotonic() + timeout
        self.delay = 0.05

    def wait_or_raise(self, exc):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise exc
        time.sleep(min(self.delay, left))
        self.delay = min(self.delay * 2, 1.0)


def _timeout(manager):
    """The manager's reconnect timeout, or None where it does not reconnect."""
    if manager is None or not getattr(manager, '_fm_connected', False):
        return None
    t = getattr(manager, 'reconnect_timeout', None)
    return t if t else None


class _Watched(object):
    """A proxy's connection, noting how far the current call got."""

    def __init__(self, conn):
        self.conn = conn
        self.sent = self.received = False
        # One poll object per connection: ``Connection.poll`` builds a
        # selector on every call, which cost a third of a round trip.
        self._poll = select.poll()
        self._poll.register(conn.fileno(), select.POLLIN)

    def closed_by_peer(self):
        """Whether the idle connection (no reply due) is readable: the
        server closed it (end of file, or a reset), or it is out of step."""
        try:
            return bool(self._poll.poll(0))
        except _LOST:
            return True

    def send(self, obj):
        self.conn.send(obj)
        self.sent = True

    def recv(self):
        result = self.conn.recv()
        self.received = True
        return result

    def __getattr__(self, name):
        return getattr(self.conn, name)


# Connections lost per server address, in this process. A thread's
# connection to an address is shared by all its proxies (the standard
# ``BaseProxy._address_to_local``): a proxy whose count is behind the
# address's may be holding an ident of a server that is gone, even when
# another proxy has already opened a new connection.
_losses = {}
_losses_lock = threading.Lock()


def _lost(address):
    with _losses_lock:
        _losses[address] = _losses.get(address, 0) + 1


class ReconnectingProxy(object):
    """Mixed into a proxy's own class (see ``_swap_class``)."""

    #: (typeid, args, kwds) that make the object again, or None.
    _fm_resolve = None
    #: ``_losses`` of its address when its ident was last known good.
    _fm_epoch = 0

    def _fm_drop(self):
        conn = getattr(self._tls, 'connection', None)
        if conn is not None:
            del self._tls.connection
            try:
                conn.close()
            except _LOST:
                pass
        _lost(self._token.address)

    def _fm_reresolve(self):
        if self._fm_resolve is None:
            raise ObjectLostError(
                'the connection to the server was lost and this %s proxy '
                '(object %s) was made by create: it cannot be found again '
                'on a new server; the call was not sent'
                % (self._token.typeid, self._token.id))
        epoch = _losses.get(self._token.address, 0)
        typeid, args, kwds = self._fm_resolve
        token, _ = self._manager._fm_create_once(typeid, *args, **kwds)
        # The finalizer holds this very token: it will decref the new id.
        # The old id's reference died with the old server (or, where the
        # server is the same, stays held: named objects live as long as
        # their server anyway).
        self._idset.discard(self._token.id)
        self._token.id = self._id = token.id
        self._idset.add(token.id)
        self._fm_epoch = epoch

    def _callmethod(self, methodname, args=(), kwds={}):
        timeout = _timeout(self._manager)
        if timeout is None:
            return super(ReconnectingProxy, self)._callmethod(
                methodname, args, kwds)
        backoff = None
        while True:
            conn = getattr(self._tls, 'connection', None)
            if conn is not None and (not isinstance(conn, _Watched) or
                                     conn.closed_by_peer()):
                self._fm_drop()
                conn = None
            try:
                if self._fm_epoch != _losses.get(self._token.address, 0):
                    self._fm_reresolve()
                if conn is None:
                    self._connect()
                    conn = self._tls.connection = _Watched(
                        self._tls.connection)
            except ReconnectError:
                raise
            except _LOST as e:
                # Nothing of the call was sent; the server may be
                # restarting, and what it had with it.
                _lost(self._token.address)
                backoff = backoff or _Backoff(timeout)
                backoff.wait_or_raise(e)
                continue
            conn.sent = conn.received = False
            try:
                return super(ReconnectingProxy, self)._callmethod(
                    methodname, args, kwds)
            except _LOST as e:
                if conn.received:
                    raise           # the call's own error, not the link's
                self._fm_drop()
                if conn.sent:
                    raise MaybeAppliedError(
                        '%s.%s: the connection to the server was lost after '
                        'the request was sent (%s: %s): the call may have '
                        'run; it was not repeated' % (
                            self._token.typeid, methodname,
                            type(e).__name__, e)) from e
                # Not sent in full: the server never saw it.
                backoff = backoff or _Backoff(timeout)
                backoff.wait_or_raise(e)

    def __reduce__(self):
        # Pickled as the standard class it extends (this one is made at run
        # time and cannot be imported by name).
        func, args = super(ReconnectingProxy, self).__reduce__()[:2]
        if args[0] is type(self):
            args = (type(self).__bases__[1],) + tuple(args[1:])
        return func, args


_classes = {}
_classes_lock = threading.Lock()


def _swap_class(proxy):
    base = type(proxy)
    with _classes_lock:
        cls = _classes.get(base)
        if cls is None:
            cls = type(base.__name__, (ReconnectingProxy, base),
                       {'__module__': base.__module__,
                        '__qualname__': getattr(base, '__qualname__',
                                                base.__name__)})
            _classes[base] = cls
    proxy.__class__ = cls


_last_create = threading.local()


def _wrap_proxytype(proxytype, typeid):
    """A callable that makes ``proxytype``'s proxy, reconnecting when its
    manager is a connected fastmanager one."""
    if getattr(proxytype, '_fm_wrapped', False):
        return proxytype

    def make(token, *args, **kwds):
        proxy = proxytype(token, *args, **kwds)
        manager = kwds.get('manager')
        if _timeout(manager) is not None:
            _swap_class(proxy)
            proxy._fm_epoch = _losses.get(token.address, 0)
            made = getattr(_last_create, 'made', None)
            if (made is not None and made[0] is token
                    and token.typeid not in _CREATING_TYPEIDS):
                proxy._fm_resolve = made[1]
        _last_create.made = None
        return proxy
    make._fm_wrapped = True
    for attr in ('_exposed_', '_method_to_typeid_'):
        if hasattr(proxytype, attr):
            setattr(make, attr, getattr(proxytype, attr))
    make.__name__ = getattr(proxytype, '__name__', 'proxy')
    return make


class ReconnectingManager(object):
    """Mixed into fastmanager's managers before the standard classes."""

    #: Seconds a proxy of a connect()ed manager keeps trying to reach the
    #: server again; 0 turns reconnecting off (stock behaviour).
    reconnect_timeout = 30.0
    _fm_connected = False

    def __init__(self, *args, **kwds):
        timeout = kwds.pop('reconnect_timeout', None)
        super(ReconnectingManager, self).__init__(*args, **kwds)
        if timeout is not None:
            self.reconnect_timeout = timeout

    def __init_subclass__(cls, **kwds):
        super().__init_subclass__(**kwds)
        # Typeids registered by a standard base class (SyncManager's) make
        # standard proxies: register them again with the wrapper.
        for typeid, entry in list(cls._registry.items()):
            callable_, exposed, method_to_typeid, proxytype = entry
            if not getattr(proxytype, '_fm_wrapped', False):
                cls.register(typeid, callable_, proxytype, exposed,
                             method_to_typeid,
                             create_method=hasattr(cls, typeid))

    @classmethod
    def register(cls, typeid, callable=None, proxytype=None, exposed=None,
                 method_to_typeid=None, create_method=True):
        # What the standard register derives from the proxy type, first.
        proxytype = proxytype or _mpm.AutoProxy
        exposed = exposed or getattr(proxytype, '_exposed_', None)
        method_to_typeid = method_to_typeid or getattr(
            proxytype, '_method_to_typeid_', None)
        super(ReconnectingManager, cls).register(
            typeid, callable, _wrap_proxytype(proxytype, typeid), exposed,
            method_to_typeid, create_method)

    def connect(self):
        super(ReconnectingManager, self).connect()
        self._fm_connected = True

    def _fm_create_once(self, typeid, *args, **kwds):
        return super(ReconnectingManager, self)._create(typeid, *args, **kwds)

    def _create(self, typeid, *args, **kwds):
        """The standard ``_create``; connected, it waits for a server that
        refuses connections, and notes how to make the object again."""
        timeout = _timeout(self)
        if timeout is None:
            return self._fm_create_once(typeid, *args, **kwds)
        assert self._state.value == _mpm.State.STARTED, \
            'server not yet started'
        backoff = None
        while True:
            try:
                conn = self._Client(self._address, authkey=self._authkey)
            except _LOST as e:
                backoff = backoff or _Backoff(timeout)
                backoff.wait_or_raise(e)
                continue
            try:
                id, exposed = _mpm.dispatch(conn, None, 'create',
                                            (typeid,) + args, kwds)
            finally:
                conn.close()
            token = _mpm.Token(typeid, self._address, id)
            _last_create.made = (token, (typeid, args, kwds))
            return token, exposed
