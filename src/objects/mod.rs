//! The shared objects, one file per type, and the table that owns them.
//!
//! Every type implements [`SharedType`]: it parses calls to the methods it
//! exposes, attempts them, and prints its repr. The server never looks
//! inside a type, so another store could take a type's place later. A call
//! that cannot complete now answers [`Attempt::Block`]; parking, waking and
//! timers are the server's business (`server::blocking`), as Redis keeps
//! blocked clients in `blocking.c`.
//!
//! To add a type: write `objects/<type>.rs` with a struct implementing
//! [`SharedType`] and its [`TypeInfo`] record (constructors, exposed and
//! storing methods), list the struct in the `shared_types!` invocation
//! below and the record in `type_info::TYPES`.

// One line per type module.
pub mod array;
pub mod change;
pub mod depth;
pub mod dict;
pub mod hosted;
pub mod iterator;
pub mod list;
pub mod namespace;
pub mod queue;
pub mod sequence;
pub mod shared_value;
pub mod sync;
pub mod table;
pub mod type_info;
pub mod value;

use std::fmt::Debug;
use std::time::Instant;

use crate::protocol::{PyException, Reply, Request};

pub use change::{Change, Changes};
pub use depth::Depth;
pub use queue::{QueueCall, SharedQueue};
pub use table::{Entry, ObjectId, ObjectTable};
pub use type_info::{type_info, TypeInfo, TYPES};

/// A client's item: a standalone pickle (`pickle::Item`), named here too
/// because every type stores them.
pub use crate::pickle::Item;

/// One client connection, as objects see it: lock ownership belongs to the
/// connection, because each client thread has its own, as in CPython.
/// Never reused while the server runs.
pub type ClientId = u64;

/// What a blocked call waits on. An object's own key is its [`ObjectId`];
/// a state shared by several objects (a lock used by a `Condition`) waits
/// under the id of the object that owns the state.
pub type WaitKey = u64;

/// The wait keys a call wakes: none or one almost always, so kept
/// inline (a `put` allocated a vector for its one key).
pub type Wakes = smallvec::SmallVec<[WaitKey; 2]>;

/// Who is calling, on what, and when.
#[derive(Debug, Clone, Copy)]
pub struct CallContext {
    pub client: ClientId,
    /// The called object's id: its default wait key.
    pub this: ObjectId,
    pub now: Instant,
}

/// A deadline `seconds` from `now`, for every call that waits. Zero or less
/// (a negative `timeout` the type let through) is now; past ~30 years, or
/// NaN, a timeout is as good as none (and would overflow `Instant`).
pub(crate) fn deadline_after(now: Instant, seconds: f64) -> Option<Instant> {
    (seconds < 1e9).then(|| now + std::time::Duration::from_secs_f64(seconds.max(0.0)))
}

/// What happened when a call was tried.
#[derive(Debug)]
pub enum Attempt {
    /// The call completed. Requests parked on the `wake` keys are retried.
    Done { reply: Reply, wake: Wakes },
    /// The call must wait until something wakes key `on` (or its deadline).
    Block { on: WaitKey },
    /// Like `Block`, after a change other waiters must see first:
    /// `Condition.wait` releases its lock, then waits for a notify.
    BlockWaking { on: WaitKey, wake: Wakes },
    /// The call returns a new shared object, sent as a `#PROXY` (for
    /// methods listed in CPython's `method_to_typeid`, e.g. `dict.__iter__`).
    NewObject { typeid: &'static str, object: SharedObject },
}

impl Attempt {
    /// Completed; nothing for waiters.
    pub fn reply(reply: Reply) -> Attempt {
        Attempt::Done { reply, wake: Wakes::new() }
    }

    /// Completed, and the object changed: its waiters should retry.
    pub fn changed(reply: Reply, ctx: &CallContext) -> Attempt {
        Attempt::Done { reply, wake: smallvec::smallvec![ctx.this] }
    }

    pub fn error(e: PyException) -> Attempt {
        Attempt::reply(Reply::Error(e))
    }
}

/// Why a call could not even start.
#[derive(Debug)]
pub enum CallError {
    /// The method is not exposed: the server answers as CPython does.
    NotExposed,
    /// Bad arguments: raised in the client as this exception.
    Raise(PyException),
}

impl From<PyException> for CallError {
    fn from(e: PyException) -> Self {
        CallError::Raise(e)
    }
}

/// A parsed call that may wait.
pub trait PendingCall: Debug {
    /// When a blocked call gives up; `None` waits forever.
    fn deadline(&self) -> Option<Instant> {
        None
    }
}

/// A shared type's behaviour.
pub trait SharedType: Debug {
    type Call: PendingCall;

    /// The Python class CPython would host, as `module.qualname`.
    fn class_name(&self) -> &'static str;

    /// The facts of this object's typeid (a JoinableQueue answers Queue's:
    /// one class, the same facts).
    fn info(&self) -> &'static TypeInfo;

    /// The public methods, as CPython's proxy type or `public_methods(obj)`
    /// lists them.
    fn exposed(&self) -> &'static [&'static str] {
        self.info().exposed
    }

    /// `repr(obj)` as CPython prints it; `ident` is the object's id in hex.
    fn repr(&self, ident: &str) -> Result<String, PyException> {
        Ok(format!("<{} object at 0x{ident}>", self.class_name()))
    }

    /// `str(obj)`; the same as repr unless the type says otherwise.
    fn str(&self, ident: &str) -> Result<String, PyException> {
        self.repr(ident)
    }

    /// `#GETVALUE`: a copy of the value, or why it cannot be pickled.
    fn getvalue(&self) -> Reply {
        Reply::Unserializable(crate::protocol::reply::format_traceback(&format!(
            "TypeError: cannot pickle '{}' object",
            self.class_name()
        )))
    }

    /// Reads a call to one of the exposed methods.
    fn parse_call(&self, req: &Request<'_, '_>, ctx: &CallContext) -> Result<Self::Call, CallError>;

    /// Tries the call once; called again each time its wait key is woken.
    fn attempt(&mut self, call: &mut Self::Call, ctx: &CallContext) -> Attempt;

    /// The call's deadline passed while it was blocked. Most calls then
    /// fail with their timeout error; some must first reacquire a lock
    /// (`Condition.wait`) and may block again: such a call's `deadline()`
    /// must answer `None` from then on.
    fn timed_out(&mut self, call: &mut Self::Call, ctx: &CallContext) -> Attempt;

    /// Visits every stored item, so the server can find proxies pickled
    /// inside them and keep their referents alive.
    fn for_each_item(&self, _f: &mut dyn FnMut(&Item)) {}

    /// A client connection closed: release what it owned (locks). Returns
    /// the keys whose waiters should retry.
    fn client_gone(&mut self, _client: ClientId, _ctx: &CallContext) -> Vec<WaitKey> {
        Vec::new()
    }

    /// An item a completed call took out (a `get`'s result) never reached
    /// its client, who left while the call was parked: take it back as if
    /// it had never been taken. Returns whether it was taken back (its
    /// waiters should then retry); types that hand out no items do not.
    fn give_back(&mut self, _item: Item) -> bool {
        false
    }

    /// Durable types (issue 16): the recorder of this object's changes,
    /// which the store turns on for named objects under `--data-dir`.
    /// Types whose state is runtime coordination (locks, semaphores,
    /// barriers, conditions) have none: see README, "Durable data".
    fn changes(&mut self) -> Option<&mut Changes> {
        None
    }

    /// The changes that rebuild this object's contents from the object as
    /// `--register` makes it; a type whose changes mark it [`Change::Dirty`]
    /// answers one [`Change::Whole`] that replaces its contents.
    fn snapshot(&self, _out: &mut Vec<Change>) {}

    /// Applies one logged change at start-up (not recorded again).
    fn replay(&mut self, change: Change) -> Result<(), String> {
        Err(change::unfit(&change, self.class_name()))
    }
}

/// Declares the closed set of shared types: the `SharedObject` and
/// `ObjectCall` enums and their dispatch to each type's [`SharedType`] impl.
macro_rules! shared_types {
    ($($variant:ident($ty:ty)),+ $(,)?) => {
        /// Every shared type the server hosts.
        #[derive(Debug)]
        pub enum SharedObject {
            $($variant($ty),)+
        }

        /// A parsed call on one object, ready to be attempted (again).
        #[derive(Debug)]
        pub enum ObjectCall {
            $($variant(<$ty as SharedType>::Call),)+
        }

        impl SharedObject {
            pub fn class_name(&self) -> &'static str {
                match self { $(SharedObject::$variant(o) => o.class_name(),)+ }
            }

            pub fn info(&self) -> &'static TypeInfo {
                match self { $(SharedObject::$variant(o) => o.info(),)+ }
            }

            pub fn exposed(&self) -> &'static [&'static str] {
                match self { $(SharedObject::$variant(o) => o.exposed(),)+ }
            }

            pub fn repr(&self, ident: &str) -> Result<String, PyException> {
                match self { $(SharedObject::$variant(o) => o.repr(ident),)+ }
            }

            pub fn str(&self, ident: &str) -> Result<String, PyException> {
                match self { $(SharedObject::$variant(o) => o.str(ident),)+ }
            }

            pub fn getvalue(&self) -> Reply {
                match self { $(SharedObject::$variant(o) => o.getvalue(),)+ }
            }

            pub fn parse_call(&self, req: &Request<'_, '_>, ctx: &CallContext) -> Result<ObjectCall, CallError> {
                match self { $(SharedObject::$variant(o) => o.parse_call(req, ctx).map(ObjectCall::$variant),)+ }
            }

            pub fn attempt(&mut self, call: &mut ObjectCall, ctx: &CallContext) -> Attempt {
                match (self, call) {
                    $((SharedObject::$variant(o), ObjectCall::$variant(c)) => o.attempt(c, ctx),)+
                    #[allow(unreachable_patterns)]
                    _ => unreachable!("a call is parsed by the object it is attempted on"),
                }
            }

            pub fn timed_out(&mut self, call: &mut ObjectCall, ctx: &CallContext) -> Attempt {
                match (self, call) {
                    $((SharedObject::$variant(o), ObjectCall::$variant(c)) => o.timed_out(c, ctx),)+
                    #[allow(unreachable_patterns)]
                    _ => unreachable!("a call is parsed by the object it is attempted on"),
                }
            }

            pub fn for_each_item(&self, f: &mut dyn FnMut(&Item)) {
                match self { $(SharedObject::$variant(o) => o.for_each_item(f),)+ }
            }

            pub fn client_gone(&mut self, client: ClientId, ctx: &CallContext) -> Vec<WaitKey> {
                match self { $(SharedObject::$variant(o) => o.client_gone(client, ctx),)+ }
            }

            pub fn give_back(&mut self, item: Item) -> bool {
                match self { $(SharedObject::$variant(o) => o.give_back(item),)+ }
            }

            pub fn changes(&mut self) -> Option<&mut Changes> {
                match self { $(SharedObject::$variant(o) => o.changes(),)+ }
            }

            pub fn snapshot(&self, out: &mut Vec<Change>) {
                match self { $(SharedObject::$variant(o) => o.snapshot(out),)+ }
            }

            pub fn replay(&mut self, change: Change) -> Result<(), String> {
                match self { $(SharedObject::$variant(o) => o.replay(change),)+ }
            }
        }

        impl ObjectCall {
            pub fn deadline(&self) -> Option<Instant> {
                match self { $(ObjectCall::$variant(c) => c.deadline(),)+ }
            }
        }
    };
}

impl SharedObject {
    /// The changes a durable object made since the last call, as the log
    /// takes them: a [`Change::Dirty`] step becomes its whole value.
    pub fn take_changes(&mut self) -> Vec<Change> {
        let Some(c) = self.changes() else { return Vec::new() };
        let mut taken = c.take();
        if taken.first() == Some(&Change::Dirty) {
            taken.clear();
            self.snapshot(&mut taken);
        }
        taken
    }
}

// One line per type; keep the list sorted by file.
shared_types! {
    Array(array::SharedArray),
    Dict(dict::SharedDict),
    Iterator(iterator::KeyIterator),
    List(list::SharedList),
    Namespace(namespace::SharedNamespace),
    Value(shared_value::SharedValue),
    Queue(SharedQueue),
    Barrier(sync::SharedBarrier),
    Condition(sync::SharedCondition),
    Event(sync::SharedEvent),
    Hosted(hosted::HostedObject),
    Lock(sync::SharedLock),
    Semaphore(sync::SharedSemaphore),
}
