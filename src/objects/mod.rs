//! The shared objects, one file per type, and the table that owns them.
//!
//! Each type keeps its state behind a small API (`attempt` a call, say what
//! it exposes, print its repr), so the server never looks inside and another
//! store could take a type's place later. A call that cannot complete now
//! answers [`Attempt::Block`]; parking and waking is the server's business
//! (`server::blocking`), as Redis keeps blocked clients in `blocking.c`.

pub mod queue;
pub mod table;
pub mod value;

use std::sync::Arc;
use std::time::Instant;

use crate::protocol::{PyException, Reply, Request};

pub use queue::{QueueCall, SharedQueue};
pub use table::{Entry, ObjectId, ObjectTable};

/// A client's item: a standalone pickle, kept as the bytes that arrived and
/// copied into replies without being decoded again.
pub type Item = Arc<[u8]>;

/// What happened when a call was tried.
#[derive(Debug)]
pub enum Attempt {
    /// The call completed; `changed` says whether waiters on the object
    /// should try again.
    Done { reply: Reply, changed: bool },
    /// The call must wait for the object to change (or for its deadline).
    Block,
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

/// Every shared type the server hosts.
#[derive(Debug)]
pub enum SharedObject {
    Queue(SharedQueue),
}

/// A parsed method call for one object, ready to be attempted (again).
#[derive(Debug)]
pub enum ObjectCall {
    Queue(QueueCall),
}

impl SharedObject {
    /// The public methods, as CPython's `public_methods(obj)` lists them.
    pub fn exposed(&self) -> &'static [&'static str] {
        match self {
            SharedObject::Queue(_) => queue::EXPOSED,
        }
    }

    /// The Python class CPython would host, as `module.qualname`.
    pub fn class_name(&self) -> &'static str {
        match self {
            SharedObject::Queue(_) => "queue.Queue",
        }
    }

    /// `repr(obj)` as CPython prints it; `ident` is the object's id in hex.
    pub fn repr(&self, ident: &str) -> String {
        match self {
            SharedObject::Queue(_) => format!("<{} object at 0x{ident}>", self.class_name()),
        }
    }

    /// `#GETVALUE`: a copy of the value, or why it cannot be pickled.
    pub fn getvalue(&self) -> Reply {
        match self {
            SharedObject::Queue(_) => Reply::Unserializable(crate::protocol::reply::format_traceback(
                "TypeError: cannot pickle '_thread.lock' object",
            )),
        }
    }

    pub fn parse_call(&self, req: &Request<'_, '_>, now: Instant) -> Result<ObjectCall, CallError> {
        match self {
            SharedObject::Queue(_) => queue::parse_call(req, now).map(ObjectCall::Queue),
        }
    }

    pub fn attempt(&mut self, call: &mut ObjectCall) -> Attempt {
        match (self, call) {
            (SharedObject::Queue(q), ObjectCall::Queue(c)) => q.attempt(c),
        }
    }
}

impl ObjectCall {
    /// When a blocked call gives up; `None` waits forever.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            ObjectCall::Queue(c) => c.deadline(),
        }
    }

    /// The reply for a blocked call whose deadline passed.
    pub fn timeout_reply(&self) -> Reply {
        match self {
            ObjectCall::Queue(c) => c.timeout_reply(),
        }
    }
}
