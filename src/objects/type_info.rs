//! What the rest of the program knows about each shared type, in one
//! record per typeid: how to make one (from `create` and from the command
//! line), what it exposes, which calls can store items, and which Python
//! callable the Python package recognises as making it. Each record lives
//! in its type's own file; [`TYPES`] is the one table that lists them, so
//! the registry, the memory caps and the Python extension read the same
//! facts instead of keeping their own copies.

use crate::protocol::{PyException, Request};

use super::{CallContext, CallError, ObjectCall, ObjectTable, SharedObject};

/// One typeid's facts.
#[derive(Debug)]
pub struct TypeInfo {
    /// SyncManager's typeid, also the KIND name of `--register`.
    pub typeid: &'static str,
    /// `create(typeid, *args, **kwds)`: the constructor's arguments are in
    /// `req.args`/`req.kwds`; `table` resolves proxies passed as arguments.
    pub construct: fn(&Request<'_, '_>, &ObjectTable) -> Result<SharedObject, PyException>,
    /// `--register NAME=KIND(ARGS)`: `ARGS` is the text in parentheses
    /// (empty without them).
    pub from_cli: fn(&str) -> Result<SharedObject, String>,
    /// The public methods, as CPython's proxy type or `public_methods(obj)`
    /// lists them.
    pub exposed: &'static [&'static str],
    /// Methods that can store new items (and so grow the object): the
    /// memory caps check these before they run. Everything else only
    /// reads or removes, and is never refused.
    pub storing: &'static [&'static str],
    /// Of those, the ones that store each element of an iterable argument
    /// (`l.extend('abc')` stores three items, from one small argument).
    pub iterating: &'static [&'static str],
    /// The callable SyncManager registers for this typeid, as
    /// `module.qualname`: a typeid the Python package registers with it is
    /// served by this type (`fastmanager._native.KIND_FACTORIES`). `None`
    /// where SyncManager registers no callable (`Iterator`).
    pub factory: Option<&'static str>,
    /// Reads a call to an exposed method without the object itself, for
    /// types whose calls do not depend on the object's state: a worker
    /// parses those before it takes the lock the objects are behind, so
    /// the time under the lock is the call's effect alone.
    pub parse: Option<ParseCall>,
}

/// Reads a call from its request alone (see [`TypeInfo::parse`]).
pub type ParseCall = fn(&Request<'_, '_>, &CallContext) -> Result<ObjectCall, CallError>;

impl TypeInfo {
    /// Whether a call to `method` can store new items.
    pub fn stores(&self, method: &str) -> bool {
        self.storing.contains(&method)
    }

    /// Whether a call to `method` stores each element of its arguments.
    pub fn iterates(&self, method: &str) -> bool {
        self.iterating.contains(&method)
    }
}

/// Every typeid SyncManager registers that this server implements; a
/// type's record is in its own `objects/` file.
pub const TYPES: &[&TypeInfo] = &[
    &super::queue::QUEUE,
    // SyncManager's JoinableQueue is queue.Queue too.
    &super::queue::JOINABLE_QUEUE,
    &super::sync::lock::LOCK,
    &super::sync::lock::RLOCK,
    &super::sync::semaphore::SEMAPHORE,
    &super::sync::semaphore::BOUNDED_SEMAPHORE,
    &super::sync::condition::INFO,
    &super::sync::event::INFO,
    &super::sync::barrier::INFO,
    &super::dict::INFO,
    &super::list::INFO,
    &super::namespace::INFO,
    &super::shared_value::INFO,
    &super::array::INFO,
    &super::iterator::INFO,
];

/// The record of built-in `typeid`, if it is one.
pub fn type_info(typeid: &str) -> Option<&'static TypeInfo> {
    TYPES.iter().copied().find(|t| t.typeid == typeid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_and_iterated_calls_are_exposed() {
        for t in TYPES {
            for m in t.storing {
                assert!(t.exposed.contains(m), "{}.{m} stores but is not exposed", t.typeid);
            }
            for m in t.iterating {
                assert!(t.stores(m), "{}.{m} iterates but does not store", t.typeid);
            }
        }
    }

    #[test]
    fn an_object_answers_its_own_record() {
        // Each record's sample object (as `--register` makes it) says it is
        // of that record's type, except JoinableQueue, which is a Queue. An
        // Iterator is only ever made by a dict.
        for t in TYPES.iter().filter(|t| t.typeid != "Iterator") {
            let sample = ["", "i,0", "1"].iter().find_map(|a| (t.from_cli)(a).ok()).expect("some sample builds");
            let expected = if t.typeid == "JoinableQueue" { "Queue" } else { t.typeid };
            assert_eq!(sample.info().typeid, expected);
            assert_eq!(sample.exposed(), t.exposed);
        }
    }
}
