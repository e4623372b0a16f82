"""Drop-in ``BaseManager`` and ``SyncManager`` whose server is Rust.

They are subclasses of ``multiprocessing.managers``' classes: ``register``,
``connect``, the proxies, the factory methods and the ``with`` form are the
standard library's own. What changes is where the server runs:
``start()`` and ``get_server().serve_forever()`` run the Rust server in a
thread of this process (no fork, no second interpreter), and objects a
client creates are Rust objects where the registered callable is one of
the built-in types (see ``_host``), Python objects of this process
otherwise.
"""
import atexit
import logging
import sys
import threading
import warnings
from multiprocessing import connection, process, util
from multiprocessing import managers as _mpm
from multiprocessing.context import ProcessError

from . import _native
from ._host import NATIVE_FACTORIES, Host
from .reconnect import ReconnectingManager

__all__ = ['BaseManager', 'SyncManager', 'Server']

State = _mpm.State


def _address_text(address):
    if isinstance(address, tuple):
        host, port = address
        return '%s:%d' % (host or '0.0.0.0', port)
    return 'unix:' + address


#: The server's options: keyword arguments of a manager (``BaseManager(
#: address, authkey, max_connections=100)``) or attributes of its class.
#: Each is the ``fastmanager serve`` option of the same name (``--max-
#: connections``); ``None`` (and ``False``) leaves the server's default.
#: ``named`` is ``--register``: ``{'get_task': 'Queue', 'counts': 'dict'}``
#: makes objects the server itself keeps under those typeids (the ones
#: ``data_dir`` keeps on disk), which clients, the master included, reach
#: with a plain ``register('get_task')``.
SERVER_OPTIONS = (
    'max_connections', 'max_frame_bytes', 'no_legacy_md5', 'threads',
    'handshake_timeout', 'send_timeout', 'max_pickle_depth',
    'max_pickle_memo', 'max_pickle_values', 'max_object_bytes',
    'max_total_bytes', 'slow_call_us', 'metrics_address', 'named',
    'data_dir', 'fsync', 'busy_poll_us',
)


def _option_flags(options):
    """``{'max_connections': 100, 'no_legacy_md5': True}`` as the command
    line's flags, which the Rust side parses and checks as ``serve`` does."""
    flags = []
    for name in SERVER_OPTIONS:
        value = options.get(name)
        if value is None or value is False or name == 'named':
            continue
        flag = '--' + name.replace('_', '-')
        if value is True:
            flags.append(flag)
        elif isinstance(value, tuple):          # ('127.0.0.1', 9100)
            flags += [flag, '%s:%d' % value]
        else:
            flags += [flag, str(value)]
    return flags


class _ToMultiprocessingLogger(logging.Handler):
    """Hands the server's records to the ``multiprocessing`` logger."""

    def __init__(self, target):
        logging.Handler.__init__(self)
        self.target = target

    def emit(self, record):
        if self.target.isEnabledFor(record.levelno):
            self.target.handle(record)


def _follow_log_to_stderr():
    """The server logs to the ``fastmanager`` logger (``logging``); a
    program that asked ``multiprocessing.util.log_to_stderr()`` for the
    ``multiprocessing`` logger sees those lines there too, at its level."""
    target = util._logger
    if target is None or not target.handlers:
        return
    logger = logging.getLogger('fastmanager')
    if any(isinstance(h, _ToMultiprocessingLogger) for h in logger.handlers):
        return
    logger.addHandler(_ToMultiprocessingLogger(target))
    if logger.level == logging.NOTSET:
        logger.setLevel(target.getEffectiveLevel())


def _named_registrations(registry, named):
    """``named`` as ``--register`` values. A name the manager registered
    with a callable too would be two objects under one typeid: refused."""
    out = []
    for name, kind in sorted((named or {}).items()):
        callable_ = registry.get(name, (None,))[0]
        if callable_ is not None:
            raise ValueError('%r is both named (%s) and registered with a '
                             'callable; register it without one' % (name, kind))
        out.append('%s=%s' % (name, kind))
    return out


def _split_registry(registry, named=()):
    """Which typeids Rust makes itself, and which Python must create."""
    aliases, hosted = [], []
    for typeid, (callable_, exposed, method_to_typeid, _) in registry.items():
        if typeid in named:
            continue            # the server's own named object
        try:
            kind = NATIVE_FACTORIES.get(callable_)
        except TypeError:       # an unhashable callable
            kind = None
        if kind is not None and typeid in _native.KINDS:
            continue            # SyncManager's own typeids: Rust has them
        if kind is not None:
            aliases.append((typeid, kind, exposed is None))
        elif callable_ is None and typeid in _native.KINDS:
            continue            # e.g. 'Iterator', made by Rust's dict
        else:
            hosted.append((typeid, exposed is None))
    return aliases, hosted


class Server(object):
    """What ``get_server()`` returns: the Rust server for a registry,
    bound at once (``address`` is the real one, port 0 resolved)."""

    def __init__(self, registry, address, authkey, serializer='pickle',
                 kept_objects_in_rust=True, options=None):
        if serializer != 'pickle':
            raise ValueError('fastmanager speaks the pickle serializer only, '
                             'got %r' % (serializer,))
        if address is None:
            address = connection.arbitrary_address(connection.default_family)
        options = options or {}
        named = options.get('named') or {}
        registrations = _named_registrations(registry, named)
        aliases, hosted = _split_registry(registry, named)
        _follow_log_to_stderr()
        self.registry = registry
        self.authkey = process.AuthenticationString(authkey)
        self._native = _native.NativeServer(
            _address_text(address), bytes(authkey), registrations, aliases,
            hosted, _option_flags(options))
        self.address = self._native.address
        if isinstance(address, tuple) and isinstance(self.address, tuple):
            # CPython reports the listener's own address: ('0.0.0.0', port)
            # for ''.
            self.address = (address[0] or '0.0.0.0', self.address[1])
        self._host = Host(self._native, registry, kept_objects_in_rust)
        self._threads = []

    def start(self):
        """Serves in background threads; returns a handle like a Process."""
        for target, name in ((self._native.serve, 'fastmanager-server'),
                             (self._host.run, 'fastmanager-host')):
            t = threading.Thread(target=target, name=name)
            t.daemon = True
            t.start()
            self._threads.append(t)
        # Both threads wait in Rust with the GIL released. One still there
        # when the interpreter finalizes would be unwound by the C runtime
        # through Rust frames, which aborts: stop and join them first.
        atexit.register(self._stop_and_join)
        return _ServerHandle(self)

    def stop(self):
        self._native.stop()

    def _stop_and_join(self, timeout=5.0):
        self.stop()
        for t in self._threads:
            t.join(timeout)

    def serve_forever(self):
        """Serves until a client's shutdown request or Ctrl-C, then exits
        the process with status 0, as CPython's ``serve_forever`` does."""
        handle = self.start()
        try:
            while handle.is_alive():
                handle.join(1.0)
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self._stop_and_join()
            sys.exit(0)


class _ServerHandle(object):
    """Stands in for the manager's server process (``manager._process``)."""

    def __init__(self, server):
        self._server = server
        self.pid = None
        self.exitcode = None

    def is_alive(self):
        return self._server._threads[0].is_alive()

    def join(self, timeout=None):
        # The host thread ends right after the server (its channel closes).
        for t in self._server._threads:
            t.join(timeout)
        if not self.is_alive():
            self.exitcode = 0

    def terminate(self):
        self._server.stop()

    kill = terminate


class BaseManager(ReconnectingManager, _mpm.BaseManager):
    __doc__ = _mpm.BaseManager.__doc__

    #: An object a registered callable returns that the program keeps too
    #: (the queue a ``lambda: q`` closes over) is copied into a Rust object
    #: at the first create. Set this to False on your manager class to
    #: serve such objects as the Python objects themselves instead: the
    #: program's own variable and the clients then see one object, as under
    #: CPython's ``serve_forever()``, at Python speed.
    kept_objects_in_rust = True

    def __init__(self, *args, **kwds):
        options = {}
        for name in SERVER_OPTIONS:
            if name in kwds:
                options[name] = kwds.pop(name)
        super().__init__(*args, **kwds)
        self._server_options = options

    def server_options(self):
        """The options the server gets: the class's attributes named in
        ``SERVER_OPTIONS``, then this manager's keyword arguments."""
        options = {name: getattr(self, name, None) for name in SERVER_OPTIONS}
        options.update(getattr(self, '_server_options', {}))
        return options

    def _make_server(self):
        return Server(self._registry, self._address, self._authkey,
                      self._serializer, self.kept_objects_in_rust,
                      self.server_options())

    def _check_not_started(self):
        """CPython's errors for get_server()/start() on a used manager."""
        if self._state.value != State.INITIAL:
            if self._state.value == State.STARTED:
                raise ProcessError("Already started server")
            elif self._state.value == State.SHUTDOWN:
                raise ProcessError("Manager has shut down")
            else:
                raise ProcessError(
                    "Unknown state {!r}".format(self._state.value))

    def get_server(self):
        self._check_not_started()
        return self._make_server()

    def start(self, initializer=None, initargs=()):
        """Starts the Rust server in this process."""
        self._check_not_started()
        if initializer is not None and not callable(initializer):
            raise TypeError('initializer must be a callable')
        if initializer is not None:
            # There is no server process to initialise: it runs here, once.
            try:
                initializer(*initargs)
            except ValueError as e:   # signal.signal outside the main thread
                warnings.warn('fastmanager: initializer failed: %s' % e)
        server = self._make_server()
        self._process = server.start()
        self._address = server.address
        self._server = server
        self._state.value = State.STARTED
        args = (self._process, self._address, self._authkey, self._state,
                self._Client)
        if hasattr(self, '_shutdown_timeout'):     # 3.11+
            args += (self._shutdown_timeout,)
        self.shutdown = util.Finalize(
            self, type(self)._finalize_manager, args=args, exitpriority=0)


class SyncManager(BaseManager, _mpm.SyncManager):
    """``multiprocessing.managers.SyncManager`` on the Rust server: every
    typeid but Pool is a Rust object; Pool runs in this process."""
    __doc__ = _mpm.SyncManager.__doc__
