//! An object that lives in the embedding program (the Python package's
//! master process), not in Rust: whatever a registered callable returns
//! that is not one of the built-in types (a custom class, a
//! `multiprocessing.Pool`). The server only keeps its ident, refcount and
//! exposed names; every call on it is handed to the host (`server::host`),
//! which runs it on a thread of its own and sends back the pickled reply,
//! so a slow method never stalls the event loop.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::protocol::{PyException, Request};

use super::{Attempt, CallContext, CallError, ObjectTable, PendingCall, SharedObject, SharedType, TypeInfo};

/// Not a typeid of its own (each hosted typeid is the program's) and not
/// in `type_info::TYPES`: the host makes these objects, and its calls never
/// reach the memory caps, so it stores nothing as far as the server knows.
pub const INFO: TypeInfo = TypeInfo {
    typeid: "hosted",
    construct,
    from_cli: |_| Err("hosted objects are created by their host".into()),
    exposed: &[],
    storing: &[],
    iterating: &[],
    factory: None,
    parse: None,
};

#[derive(Debug)]
pub struct HostedObject {
    /// The host's key for the object (unique per object the host serves).
    pub key: u64,
    exposed: &'static [&'static str],
}

impl HostedObject {
    pub fn new(key: u64, exposed: &[String]) -> HostedObject {
        HostedObject { key, exposed: intern(exposed) }
    }
}

/// `SharedType::exposed` hands out `'static` names. A hosted object's
/// names come at run time, so each distinct list is kept once for the life
/// of the server: there are as many as registered classes, not objects.
fn intern(names: &[String]) -> &'static [&'static str] {
    static LISTS: Mutex<Option<HashSet<&'static [&'static str]>>> = Mutex::new(None);
    let mut lists = LISTS.lock().unwrap_or_else(|e| e.into_inner());
    let lists = lists.get_or_insert_with(HashSet::new);
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    if let Some(&known) = lists.iter().find(|l| **l == wanted.as_slice()) {
        return known;
    }
    let leaked: Vec<&'static str> = names.iter().map(|n| &*Box::leak(n.clone().into_boxed_str())).collect();
    let leaked: &'static [&'static str] = Box::leak(leaked.into_boxed_slice());
    lists.insert(leaked);
    leaked
}

/// Never built: calls on hosted objects go to the host before parsing.
#[derive(Debug)]
pub enum HostedCall {}

impl PendingCall for HostedCall {}

impl SharedType for HostedObject {
    type Call = HostedCall;

    fn class_name(&self) -> &'static str {
        "hosted"
    }

    fn info(&self) -> &'static TypeInfo {
        &INFO
    }

    /// The host's list for this object's typeid, not a fixed one.
    fn exposed(&self) -> &'static [&'static str] {
        self.exposed
    }

    fn parse_call(&self, _req: &Request<'_, '_>, _ctx: &CallContext) -> Result<HostedCall, CallError> {
        Err(CallError::Raise(PyException::type_error("hosted objects are called through their host")))
    }

    fn attempt(&mut self, call: &mut HostedCall, _ctx: &CallContext) -> Attempt {
        match *call {}
    }

    fn timed_out(&mut self, call: &mut HostedCall, _ctx: &CallContext) -> Attempt {
        match *call {}
    }
}

pub fn construct(_req: &Request<'_, '_>, _table: &ObjectTable) -> Result<SharedObject, PyException> {
    Err(PyException::type_error("hosted objects are created by their host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_name_lists_are_kept_once() {
        let a = intern(&["get".to_string(), "set".to_string()]);
        let b = intern(&["get".to_string(), "set".to_string()]);
        assert!(std::ptr::eq(a, b));
        assert_eq!(a, &["get", "set"]);
        assert_ne!(intern(&["get".to_string()]), a);
    }
}
