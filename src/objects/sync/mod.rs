//! The synchronization primitives of `threading`, as SyncManager's `Lock`,
//! `RLock`, `Semaphore`, `BoundedSemaphore`, `Condition`, `Event` and
//! `Barrier` typeids serve them, with CPython's semantics, return values,
//! exception messages and reprs (3.13's where versions differ).
//!
//! Every wait is a parked call: `acquire` on a held lock, `Condition.wait`,
//! `Event.wait`, `Barrier.wait` answer [`Attempt::Block`] and are retried
//! when their wait key is woken; nothing blocks the event loop.
//!
//! Policies where a server hosting objects for separate processes must
//! decide what threads in one process never face (the README lists them):
//!
//! - Ownership belongs to the client connection ([`CallContext::client`]):
//!   each client thread has its own connection, as in CPython, so an
//!   `RLock`'s owner and recursion count are per connection. A `Lock` may
//!   be released by any client, as `threading.Lock` by any thread.
//! - **RLocks owned by a client whose connection closes are released**
//!   (an `RLock`, and the `RLock` of a `Condition`), and their waiters are
//!   woken: no other client could ever release them. CPython's server
//!   leaves them held forever. A plain `Lock` has no owner, as
//!   `threading.Lock`: any client may release it, so it stays held (CPython's
//!   own tests acquire one in a process that exits, then release it from
//!   another); the same goes for a `Condition` built on a `Lock`.
//! - Semaphores have no owner (as in `threading`): a client that dies
//!   after `acquire` does not give its unit back.
//! - A client that dies while waiting at a `Barrier` keeps its place (as
//!   the server thread of a dead client does in CPython), but its own
//!   timeout no longer runs; a client that dies in `Condition.wait` or
//!   `Event.wait` stops waiting (a later `notify(1)` goes to a live waiter).
//! - `Barrier(action=...)` is refused: the server cannot run client code.
//! - `Condition(rlock_proxy)` works: `wait`/`notify` see that the calling
//!   client owns the `RLock`. CPython's server wraps the proxy in a
//!   `threading.Condition` whose ownership check (`acquire(False)` from a
//!   server thread) fails for an `RLock`, so there they raise
//!   `RuntimeError('cannot wait on un-acquired lock')`.
//!
//! Reprs follow 3.13 (`<threading.Semaphore at 0x...: value=1>`); Python
//! 3.10 and older print `<threading.Semaphore object at 0x...>` for
//! `Semaphore`, `BoundedSemaphore`, `Event` and `Barrier`. An `RLock`'s
//! `owner=` is the owning connection's number where CPython prints a
//! thread id.

pub mod barrier;
pub mod condition;
pub mod event;
pub mod lock;
pub mod semaphore;

use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use crate::pickle::{Decoded, Node, NodeId};
use crate::protocol::PyException;

pub use barrier::SharedBarrier;
pub use condition::SharedCondition;
pub use event::SharedEvent;
pub use lock::{LockKind, LockState, SharedLock};
pub use semaphore::SharedSemaphore;

/// State shared by two objects: a `Lock`/`RLock` and the `Condition`s built
/// on it. The server is single-threaded, so the mutex is never contended;
/// it (rather than `Rc<RefCell>`) keeps `SharedObject` `Send`, so a server
/// can still be built on one thread and run on another.
#[derive(Debug, Default)]
pub struct Shared<T>(Arc<Mutex<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T> Shared<T> {
    pub fn new(value: T) -> Shared<T> {
        Shared(Arc::new(Mutex::new(value)))
    }

    /// The state. Only the event loop's thread touches it, so a guard
    /// still held means a second borrow in the same call chain: panic (as
    /// `RefCell` would) rather than deadlock the server.
    pub fn get(&self) -> MutexGuard<'_, T> {
        match self.0.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => panic!("sync state borrowed twice"),
        }
    }
}

/// One rule for every timeout, the queue's included (`objects`).
pub(crate) use super::deadline_after;

/// Python's `type(x).__name__` for the error messages of bad arguments.
pub(crate) fn type_name(p: &Decoded<'_>, id: NodeId) -> String {
    match p.node(id) {
        Node::None => "NoneType",
        Node::Bool(_) => "bool",
        Node::Int(_) | Node::BigInt(_) => "int",
        Node::Float(_) => "float",
        Node::Str(_) | Node::StrSurrogates(_) | Node::ByteString(_) => "str",
        Node::Bytes(_) => "bytes",
        Node::ByteArray(_) => "bytearray",
        Node::Tuple(_) => "tuple",
        Node::List(_) => "list",
        Node::Dict(_) => "dict",
        Node::Set(_) => "set",
        Node::FrozenSet(_) => "frozenset",
        Node::Global(_) => "type",
        Node::Object(o) => return p.as_global(o.callable).map_or("object", |(_, name)| name).to_string(),
    }
    .to_string()
}

/// A number argument (`int`, `float`, `bool`) as a float. NaN passes: each
/// caller treats it as its CPython method does (`Lock.acquire` refuses it,
/// `Event.wait` does not wait, `Semaphore.acquire` waits forever).
pub(crate) fn number(p: &Decoded<'_>, id: NodeId) -> Option<f64> {
    p.as_float(id)
}

/// An integer argument (`int` or `bool`).
pub(crate) fn integer(p: &Decoded<'_>, id: NodeId) -> Option<i64> {
    p.as_int(id)
}

/// A `timeout` as `Condition.wait`, `Event.wait` and `Barrier.wait` take
/// it: `None` waits forever; zero or less does not wait at all. The
/// comparison CPython makes first (`timeout > 0`) fails for non-numbers.
pub(crate) fn wait_timeout(p: &Decoded<'_>, id: Option<NodeId>, cmp: &str) -> Result<Option<f64>, PyException> {
    let Some(id) = id.filter(|&id| !p.is_none(id)) else { return Ok(None) };
    match number(p, id) {
        Some(t) if t.is_nan() => Ok(Some(0.0)),
        Some(t) => Ok(Some(t)),
        None => Err(PyException::type_error(cmp.replace("{}", &type_name(p, id)))),
    }
}

/// Reads an integer from `--register NAME=KIND(N)`.
pub(crate) fn cli_int(args: &str, what: &str, default: Option<i64>) -> Result<i64, String> {
    match (args.trim(), default) {
        ("", Some(d)) => Ok(d),
        ("", None) => Err(format!("{what} is required, e.g. Barrier(3)")),
        (a, _) => a.parse::<i64>().map_err(|_| format!("{what} must be an integer, got {a:?}")),
    }
}

/// `--register` kinds that take no arguments.
pub(crate) fn cli_no_args(args: &str, kind: &str) -> Result<(), String> {
    if args.trim().is_empty() { Ok(()) } else { Err(format!("{kind} takes no arguments, got {args:?}")) }
}

#[cfg(test)]
mod tests {
    use crate::objects::SharedObject;
    use crate::registry::Registration;

    #[test]
    fn register_kinds_from_the_command_line() {
        for ok in ["l=Lock", "r=RLock", "e=Event", "c=Condition", "s=Semaphore", "s=Semaphore(3)", "b=BoundedSemaphore(2)", "b=Barrier(3)"] {
            assert!(ok.parse::<Registration>().is_ok(), "{ok}");
        }
        for bad in ["l=Lock(1)", "s=Semaphore(-1)", "s=Semaphore(x)", "b=Barrier", "b=Barrier(0)", "e=Event(1)"] {
            assert!(bad.parse::<Registration>().is_err(), "{bad}");
        }
        let repr = |o: SharedObject| o.repr("10").unwrap();
        assert_eq!(repr(super::semaphore::bounded_semaphore_from_cli("2").unwrap()), "<threading.BoundedSemaphore at 0x10: value=2/2>");
        assert_eq!(repr(super::barrier::barrier_from_cli("3").unwrap()), "<threading.Barrier at 0x10: waiters=0/3>");
        assert_eq!(repr(super::lock::rlock_from_cli("").unwrap()), "<unlocked _thread.RLock object owner=0 count=0 at 0x10>");
    }
}
