"""Type stubs for ``fastmanager._native``, the Rust extension module
(``pyo3-bindings/src/lib.rs``): the server bound and run from Python, and
the bridge that hands calls on Python-hosted objects to Python threads.

Kept by hand: when lib.rs exports something new, add it here.
"""
from typing import Dict, List, Literal, Optional, Sequence, Tuple, Union, final

__all__ = ['NativeServer', 'cli', 'KINDS', 'KIND_METHODS']

# The built-in kinds (SyncManager typeids) Rust creates without Python:
# ``Queue``, ``dict``, ``Lock``, ...
KINDS: List[str]

# kind -> the method names its Rust objects expose; a result whose CPython
# method list has a name missing here is hosted in Python instead.
KIND_METHODS: Dict[str, List[str]]

# What ``next_request`` returns:
#   ('create', ticket, typeid, frame)  a ``create`` of a hosted typeid;
#   ('call', ticket, key, frame)       a call on the object kept under key;
#   ('release', key)                   nobody refers to that object any more.
# ``frame`` is the client's request pickle, ``(ident, method, args, kwds)``.
_CreateRequest = Tuple[Literal['create'], int, str, bytes]
_CallRequest = Tuple[Literal['call'], int, int, bytes]
_ReleaseRequest = Tuple[Literal['release'], int]
_HostRequest = Union[_CreateRequest, _CallRequest, _ReleaseRequest]


@final
class NativeServer:
    """A bound server. ``serve()`` runs it (in the calling thread, GIL
    released) until ``stop()`` or a client's ``shutdown`` request."""

    def __new__(
        cls,
        address: str,
        authkey: bytes,
        registrations: Sequence[str] = ...,
        aliases: Sequence[Tuple[str, str, bool]] = ...,
        hosted: Sequence[Tuple[str, bool]] = ...,
        options: Sequence[str] = ...,
    ) -> "NativeServer":
        """``address``: ``HOST:PORT`` or ``unix:PATH``; ``registrations``:
        ``NAME=KIND`` named objects; ``aliases``: ``(typeid, kind,
        public_only)``, built-in kinds under another typeid; ``hosted``:
        ``(typeid, public_only)``, typeids Python creates; ``options``: the
        ``fastmanager serve`` options as flags (``['--max-connections',
        '100']``). Routes the server's log lines to ``logging`` (logger
        ``fastmanager``).

        Raises ValueError for a bad address, registration, kind or option,
        and OSError when the address cannot be bound."""

    @property
    def address(self) -> Union[Tuple[str, int], str]:
        """The bound address as multiprocessing takes it: ``(host, port)``
        (the real port when 0 was asked) or a Unix socket path."""

    def serve(self) -> None:
        """Runs the event loop until stopped. Only once: a second call
        raises RuntimeError."""

    def stop(self) -> None:
        """Stops ``serve()``; callable from any thread."""

    def next_request(self, timeout: float) -> Optional[_HostRequest]:
        """The next host request, or None after ``timeout`` seconds.
        Raises EOFError once the server is gone."""

    def answer_reply(self, ticket: int, message: bytes) -> None:
        """Answers with a whole pickled reply message (``('#RETURN', x)``,
        ``('#ERROR', e)``, ...). Raises EOFError once the server is gone."""

    def answer_hosted(self, ticket: int, typeid: str, key: int, exposed: List[str]) -> None:
        """Answers a ``create`` with a new object Python keeps under
        ``key`` and serves with the ``exposed`` method names."""

    def answer_native(
        self,
        ticket: int,
        typeid: str,
        shared: Optional[int],
        create: bytes,
        calls: List[bytes],
    ) -> None:
        """Answers a ``create`` with a recipe for a Rust-native object:
        ``create`` is a pickled ``(None, 'create', (kind, *args), kwds)``,
        each of ``calls`` a pickled ``(None, method, args, kwds)`` applied
        to it. ``shared`` names an object the program keeps: every answer
        with the same identity means the same object, which lives as long
        as the server; None makes a new, refcounted one."""


def cli(argv: List[str]) -> int:
    """``python -m fastmanager ARGS``: the ``fastmanager`` binary's command
    line (``argv[0]`` is the program name); returns the exit status."""
