//! SyncManager's `Iterator` typeid: what `dict.__iter__` returns through a
//! `#PROXY` reply (DictProxy's `method_to_typeid = {'__iter__': 'Iterator'}`).
//! CPython hosts the `dict_keyiterator` itself; an `IteratorProxy` calls
//! `__next__` until `StopIteration`.
//!
//! The keys are a snapshot taken by `__iter__`. Like CPython's iterator, it
//! raises `RuntimeError: dictionary changed size during iteration` (for
//! good) once the dict's size differs from what it was. Unlike CPython, a
//! dict changed without changing size (one key deleted, another added)
//! still yields the snapshot's keys, where CPython would yield the new
//! layout or raise "dictionary keys changed during iteration".

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::pickle::PickleWriter;
use crate::protocol::reply::format_traceback;
use crate::protocol::{PyException, Reply, Request, ReplyValue};

use super::sequence::{protocol_for, write_list};
use super::{Attempt, CallContext, CallError, Item, ObjectTable, PendingCall, SharedObject, SharedType, TypeInfo};

/// `IteratorProxy._exposed_`. A dict's key iterator only has `__next__`:
/// `send`, `throw` and `close` fail in the server, as in CPython.
pub const EXPOSED: &[&str] = &["__next__", "send", "throw", "close"];

/// SyncManager's `Iterator` typeid (registered without a callable: only a
/// dict's `__iter__` makes one here).
pub const INFO: TypeInfo = TypeInfo {
    typeid: "Iterator",
    construct,
    from_cli,
    exposed: EXPOSED,
    storing: &[],
    iterating: &[],
    factory: None,
    parse: None,
};

#[derive(Debug)]
pub struct KeyIterator {
    keys: Vec<Item>,
    pos: usize,
    /// The dict's size when iteration began; `None` once it changed.
    expected: Option<usize>,
    /// The dict's live size.
    size: Arc<AtomicUsize>,
    exhausted: bool,
}

#[derive(Debug)]
pub enum IteratorCall {
    Next,
    /// A method the iterator does not have.
    Missing(&'static str),
}

impl PendingCall for IteratorCall {}

impl KeyIterator {
    pub fn new(keys: Vec<Item>, size: Arc<AtomicUsize>) -> KeyIterator {
        let expected = Some(keys.len());
        KeyIterator { keys, pos: 0, expected, size, exhausted: false }
    }

    fn next(&mut self) -> Reply {
        if self.exhausted {
            return Reply::Error(PyException::stop_iteration());
        }
        if self.expected != Some(self.size.load(Ordering::Relaxed)) {
            self.expected = None;
            return Reply::Error(PyException::runtime_error("dictionary changed size during iteration"));
        }
        match self.keys.get(self.pos) {
            Some(k) => {
                self.pos += 1;
                Reply::Return(ReplyValue::Item(k.clone()))
            }
            None => {
                self.exhausted = true;
                Reply::Error(PyException::stop_iteration())
            }
        }
    }
}

impl SharedType for KeyIterator {
    type Call = IteratorCall;

    fn class_name(&self) -> &'static str {
        "dict_keyiterator"
    }

    fn info(&self) -> &'static TypeInfo {
        &INFO
    }

    /// CPython pickles a key iterator as `iter([remaining keys])`.
    fn getvalue(&self) -> Reply {
        let rest: &[Item] = if self.exhausted { &[] } else { &self.keys[self.pos.min(self.keys.len())..] };
        let mut w = PickleWriter::new(protocol_for(rest));
        w.global("builtins", "iter");
        write_list(&mut w, rest);
        w.tuple1();
        w.reduce();
        Reply::Return(ReplyValue::Item(w.finish().into()))
    }

    fn parse_call(&self, req: &Request<'_, '_>, _ctx: &CallContext) -> Result<IteratorCall, CallError> {
        Ok(match req.method {
            "__next__" => {
                if !req.kwds.is_empty() {
                    return Err(PyException::type_error("__next__() takes no keyword arguments").into());
                }
                if !req.args.is_empty() {
                    return Err(PyException::type_error(format!("expected 0 arguments, got {}", req.args.len())).into());
                }
                IteratorCall::Next
            }
            "send" => IteratorCall::Missing("send"),
            "throw" => IteratorCall::Missing("throw"),
            "close" => IteratorCall::Missing("close"),
            _ => return Err(CallError::NotExposed),
        })
    }

    fn attempt(&mut self, call: &mut IteratorCall, _ctx: &CallContext) -> Attempt {
        Attempt::reply(match call {
            IteratorCall::Next => self.next(),
            // CPython's getattr fails, then the fallback lookup fails too.
            IteratorCall::Missing(name) => {
                let first = format_traceback(&format!(
                    "AttributeError: 'dict_keyiterator' object has no attribute '{name}'"
                ));
                let second = format_traceback(&format!("KeyError: '{name}'"));
                Reply::Traceback(format!(
                    "{first}\nDuring handling of the above exception, another exception occurred:\n\n{second}"
                ))
            }
        })
    }

    fn timed_out(&mut self, _call: &mut IteratorCall, _ctx: &CallContext) -> Attempt {
        unreachable!("iterator calls never block")
    }
}

/// `create('Iterator')`: CPython registers the typeid with no callable and
/// `create_method=False`; a direct create fails its `len(args) == 1` check.
pub fn construct(_req: &Request<'_, '_>, _table: &ObjectTable) -> Result<SharedObject, PyException> {
    Err(PyException::assertion_error())
}

pub fn from_cli(_args: &str) -> Result<SharedObject, String> {
    Err("an Iterator is only made by dict.__iter__".into())
}
