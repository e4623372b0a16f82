"""What the Rust server asks of Python: creating objects for typeids whose
callable only Python can run, and serving the objects that are not one of
the built-in types.

A registered callable's result is recognised by its exact type:
``queue.Queue``, ``dict``, ``list``, ``threading`` Lock/RLock/Event/
Semaphore/BoundedSemaphore/Condition/Barrier (without action),
``multiprocessing.managers`` Namespace/Value and ``array.array`` become
Rust objects (with the items they already hold); anything else stays a
Python object in this process, and each call on it runs on a thread of
its own, as on CPython's thread-per-connection server.
"""
import array
import importlib
import pickle
import queue
import sys
import threading
import traceback
from multiprocessing import managers as _mpm
from multiprocessing.reduction import ForkingPickler

from . import _native

# Items a client will unpickle may come from any CPython from 3.6 on.
PROTOCOL = 4

_LOCK_TYPE = type(threading.Lock())
_RLOCK_TYPE = type(threading.RLock())


def _request(method, args=(), kwds=None):
    return pickle.dumps((None, method, tuple(args), kwds or {}), PROTOCOL)


def native_recipe(obj):
    """``(kind, build)`` for a built-in object, or None; ``build()`` gives
    ``(create_pickle, call_pickles)``, whose calls refill the new object as
    ``obj`` is now. Building is deferred: pickling every item is wasted
    when the object is served from Python after all."""
    t = type(obj)

    def made(kind, *args, kwds=None, calls=()):
        return kind, lambda: (_request('create', (kind,) + args, kwds),
                              [_request(*c) for c in calls])
    if t is queue.Queue:
        return made('Queue', obj.maxsize,
                    calls=[('put_nowait', (item,)) for item in list(obj.queue)])
    if t is dict:
        return made('dict', obj)
    if t is list:
        return made('list', obj)
    if t is threading.Event:
        return made('Event', calls=[('set',)] if obj.is_set() else [])
    if t is _LOCK_TYPE and not obj.locked():
        return made('Lock')
    if t is _RLOCK_TYPE and repr(obj).startswith('<unlocked'):
        return made('RLock')
    if t is threading.BoundedSemaphore:
        taken = obj._initial_value - obj._value
        return made('BoundedSemaphore', obj._initial_value,
                    calls=[('acquire', (False,))] * taken)
    if t is threading.Semaphore:
        return made('Semaphore', obj._value)
    if t is threading.Condition and type(obj._lock) is _RLOCK_TYPE:
        return made('Condition')
    if t is threading.Barrier and obj._action is None:
        return made('Barrier', obj.parties, None, obj._timeout)
    if t is _mpm.Namespace:
        return made('Namespace', kwds=dict(obj.__dict__))
    if t is _mpm.Value:
        return made('Value', obj._typecode, obj._value)
    if t is array.array:
        return made('Array', obj.typecode, list(obj))
    return None


def _resolve(path):
    """The object a ``module.qualname`` names."""
    module, _, name = path.rpartition('.')
    obj = importlib.import_module(module)
    for part in name.split('.'):
        obj = getattr(obj, part)
    return obj


def _native_factories():
    """The stdlib callables SyncManager registers, and the built-in kind
    each makes, as the extension lists them (``KIND_FACTORIES``): a typeid
    registered with one of them is served by Rust directly, without
    calling Python at all. A callable several kinds share (``queue.Queue``
    for Queue and JoinableQueue) makes the first kind listed."""
    factories = {}
    for kind in _native.KINDS:
        path = _native.KIND_FACTORIES.get(kind)
        if path is not None:
            factories.setdefault(_resolve(path), kind)
    return factories


NATIVE_FACTORIES = _native_factories()


def _native_methods(kind):
    return frozenset(_native.KIND_METHODS.get(kind, ()))


def _dumps(msg):
    try:
        return bytes(ForkingPickler.dumps(msg))
    except Exception:
        return bytes(ForkingPickler.dumps(
            ('#UNSERIALIZABLE', traceback.format_exc())))


class Host:
    """Answers the Rust server's requests; see the module docstring."""

    def __init__(self, native, registry, kept_objects_in_rust=True):
        self.native = native
        self.registry = registry
        self.kept_objects_in_rust = kept_objects_in_rust
        self.objects = {}      # key -> (obj, exposed, method_to_typeid)
        self.pinned = {}       # id(obj) -> obj: shared objects made native
        self.lock = threading.Lock()
        self.next_key = 1

    def run(self):
        """The dispatcher: hands every request to a thread of its own."""
        while True:
            try:
                request = self.native.next_request(0.5)
            except EOFError:
                return
            if request is None:
                continue
            if request[0] == 'release':
                with self.lock:
                    self.objects.pop(request[1], None)
                continue
            t = threading.Thread(target=self.handle, args=(request,),
                                 name='fastmanager-host')
            t.daemon = True
            t.start()

    def handle(self, request):
        kind, ticket = request[0], request[1]
        try:
            if kind == 'create':
                self.create(ticket, request[2], request[3])
            else:
                self.call(ticket, request[2], request[3])
        except EOFError:
            pass    # the server stopped meanwhile

    # -- create ---------------------------------------------------------
    def create(self, ticket, typeid, frame):
        try:
            _, _, args, kwds = pickle.loads(frame)
            callable_, exposed, method_to_typeid, _ = self.registry[typeid]
            args = args[1:]
            if callable_ is None:
                if kwds or len(args) != 1:
                    raise ValueError('Without callable, must have one '
                                     'non-keyword argument')
                obj = args[0]
            else:
                obj = callable_(*args, **kwds)
            del args, kwds
        except Exception:
            self.native.answer_reply(
                ticket, _dumps(('#TRACEBACK', traceback.format_exc())))
            return
        # References now: `obj` here and getrefcount's argument. Any
        # other means the program keeps the object.
        self.serve(ticket, typeid, obj, exposed, method_to_typeid,
                   sys.getrefcount(obj) > 2)

    def serve(self, ticket, typeid, obj, exposed, method_to_typeid, kept):
        """Answers with a Rust-native recipe, or keeps ``obj`` here.
        ``kept``: the program holds ``obj`` too (the queue a ``lambda: q``
        closes over), so every create returning it must mean the same
        Rust object, which then lives as long as the server."""
        recipe = native_recipe(obj) if not method_to_typeid else None
        if exposed is None:
            exposed = _mpm.public_methods(obj)
        if recipe is not None and not set(exposed) <= _native_methods(recipe[0]):
            # CPython would expose a method the Rust type lacks (a list's
            # copy(), an Event's isSet()): serve the Python object instead.
            recipe = None
        if kept and not self.kept_objects_in_rust:
            recipe = None
        if recipe is not None:
            create, calls = recipe[1]()
            identity = None
            if kept:
                identity = id(obj)
                self.pinned[identity] = obj
            self.native.answer_native(ticket, typeid, identity, create, calls)
            return
        with self.lock:
            key = self.next_key
            self.next_key += 1
            self.objects[key] = (obj, frozenset(exposed),
                                 method_to_typeid or {})
        self.native.answer_hosted(ticket, typeid, key, list(exposed))

    # -- calls, as Server.serve_client ----------------------------------
    def call(self, ticket, key, frame):
        methodname = obj = None
        try:
            ident, methodname, args, kwds = pickle.loads(frame)
            with self.lock:
                obj, exposed, gettypeid = self.objects[key]
            if methodname not in exposed:
                raise AttributeError(
                    'method %r of %r object is not in exposed=%r'
                    % (methodname, type(obj), exposed))
            function = getattr(obj, methodname)
            try:
                res = function(*args, **kwds)
            except Exception as e:
                msg = ('#ERROR', e)
            else:
                typeid = gettypeid and gettypeid.get(methodname, None)
                if typeid:
                    self.create_for_result(ticket, typeid, res)
                    return
                msg = ('#RETURN', res)
        except AttributeError:
            if methodname is None:
                msg = ('#TRACEBACK', traceback.format_exc())
            else:
                try:
                    msg = ('#RETURN', self.fallback(methodname, obj))
                except Exception:
                    msg = ('#TRACEBACK', traceback.format_exc())
        except Exception:
            msg = ('#TRACEBACK', traceback.format_exc())
        self.native.answer_reply(ticket, _dumps(msg))

    @staticmethod
    def fallback(methodname, obj):
        if methodname == '__str__':
            return str(obj)
        if methodname == '__repr__':
            return repr(obj)
        if methodname == '#GETVALUE':
            return obj
        raise KeyError(methodname)

    def create_for_result(self, ticket, typeid, res):
        """`method_to_typeid`: serve the result as a new object."""
        try:
            callable_, exposed, method_to_typeid, _ = self.registry[typeid]
            obj = res if callable_ is None else callable_(res)
        except Exception:
            self.native.answer_reply(
                ticket, _dumps(('#TRACEBACK', traceback.format_exc())))
            return
        # A method's result is taken as new (a Pool's AsyncResult).
        self.serve(ticket, typeid, obj, exposed, method_to_typeid, False)
