//! SyncManager's `Namespace` typeid: `multiprocessing.managers.Namespace`,
//! an object whose attributes are set and read through a `NamespaceProxy`
//! (`__getattribute__`, `__setattr__`, `__delattr__`).
//!
//! `repr` is `Namespace.__repr__`: the public attributes (not starting with
//! `_`) as `name=repr(value)`, sorted as strings. `_getvalue()` returns a
//! `Namespace` instance, pickled as CPython pickles it (`NEWOBJ` + `BUILD`
//! with its `__dict__`).
//!
//! Only instance attributes exist here: `__getattribute__('__dict__')` or
//! names of `object`'s own attributes (which a proxy never forwards, since
//! it forwards no `_` names) raise `AttributeError`.

use std::collections::HashMap;

use crate::pickle::{Decoded, NodeId, PickleWriter};
use crate::protocol::{PyException, Reply, Request, ReplyValue};

use super::sequence::{node_type_name, protocol_for, stored_str, write_dict};
use super::value::{StoredValue, ViewBudget};
use super::{Attempt, Change, Changes, CallContext, CallError, ObjectTable, PendingCall, SharedObject, SharedType, TypeInfo};

/// `NamespaceProxy._exposed_`.
pub const EXPOSED: &[&str] = &["__getattribute__", "__setattr__", "__delattr__"];

/// SyncManager's `Namespace` typeid.
pub const INFO: TypeInfo = TypeInfo {
    typeid: "Namespace",
    construct,
    from_cli,
    exposed: EXPOSED,
    storing: &["__setattr__"],
    iterating: &[],
    factory: Some("multiprocessing.managers.Namespace"),
    parse: None,
};

#[derive(Debug, Default)]
pub struct SharedNamespace {
    /// name -> (insertion sequence, name as a stored str, value)
    attrs: HashMap<String, (u64, StoredValue, StoredValue)>,
    next_seq: u64,
    /// Changes for the store, if durable: a set or delete logs the whole
    /// namespace (a handful of attributes, as namespaces are used).
    changes: Changes,
}

#[derive(Debug)]
pub enum NamespaceCall {
    Get(String),
    Set(String, StoredValue),
    Del(String),
}

impl PendingCall for NamespaceCall {}

fn attribute_name(d: &Decoded, id: NodeId) -> Result<String, PyException> {
    d.as_str(id).map(str::to_string).ok_or_else(|| {
        PyException::type_error(format!("attribute name must be string, not '{}'", node_type_name(d, id)))
    })
}

/// Reads a call; a namespace's state does not change how (the Redis
/// backend reads calls with no object at hand).
pub fn parse_call(req: &Request<'_, '_>) -> Result<NamespaceCall, CallError> {
    let d = req.pickle;
    Ok(match req.method {
        "__getattribute__" => NamespaceCall::Get(attribute_name(d, args(req, 1)?[0])?),
        "__setattr__" => {
            let a = args(req, 2)?;
            NamespaceCall::Set(attribute_name(d, a[0])?, StoredValue::from_node(d, a[1]))
        }
        "__delattr__" => NamespaceCall::Del(attribute_name(d, args(req, 1)?[0])?),
        _ => return Err(CallError::NotExposed),
    })
}

pub fn no_attribute(name: &str) -> PyException {
    PyException::attribute_error(format!("'Namespace' object has no attribute '{name}'"))
}

fn args<'r>(req: &'r Request<'_, '_>, n: usize) -> Result<&'r [NodeId], PyException> {
    if !req.kwds.is_empty() {
        return Err(PyException::type_error(format!("{}() takes no keyword arguments", req.method)));
    }
    if req.args.len() != n {
        return Err(PyException::type_error(format!(
            "expected {n} argument{}, got {}",
            if n == 1 { "" } else { "s" },
            req.args.len()
        )));
    }
    Ok(req.args)
}

impl SharedNamespace {
    /// Attributes set.
    pub fn len(&self) -> usize {
        self.attrs.len()
    }

    fn set(&mut self, name: String, value: StoredValue) {
        match self.attrs.get_mut(&name) {
            Some(slot) => slot.2 = value,
            None => {
                let key = stored_str(name.as_bytes());
                self.attrs.insert(name, (self.next_seq, key, value));
                self.next_seq += 1;
            }
        }
    }

    /// `__dict__` in insertion order.
    fn ordered(&self) -> Vec<(&String, &(u64, StoredValue, StoredValue))> {
        let mut v: Vec<_> = self.attrs.iter().collect();
        v.sort_by_key(|(_, (seq, ..))| *seq);
        v
    }
}

impl SharedType for SharedNamespace {
    fn for_each_item(&self, f: &mut dyn FnMut(&super::Item)) {
        self.attrs.values().for_each(|(_, _, v)| f(v.pickle()));
    }

    type Call = NamespaceCall;

    fn class_name(&self) -> &'static str {
        "multiprocessing.managers.Namespace"
    }

    fn info(&self) -> &'static TypeInfo {
        &INFO
    }

    fn repr(&self, _ident: &str) -> Result<String, PyException> {
        let mut parts = Vec::new();
        for (name, (_, _, v)) in self.ordered() {
            if !name.starts_with('_') {
                parts.push(format!("{name}={}", v.repr()?));
            }
        }
        parts.sort();
        Ok(format!("Namespace({})", parts.join(", ")))
    }

    fn getvalue(&self) -> Reply {
        let ordered = self.ordered();
        let mut w = PickleWriter::new(protocol_for(ordered.iter().map(|(_, (_, _, v))| v.pickle())));
        w.global("multiprocessing.managers", "Namespace");
        w.empty_tuple();
        w.newobj();
        write_dict(&mut w, ordered.iter().map(|(_, (_, k, v))| (k.pickle(), v.pickle())));
        w.build();
        Reply::Return(ReplyValue::Item(w.finish().into()))
    }

    fn parse_call(&self, req: &Request<'_, '_>, _ctx: &CallContext) -> Result<NamespaceCall, CallError> {
        parse_call(req)
    }

    fn attempt(&mut self, call: &mut NamespaceCall, _ctx: &CallContext) -> Attempt {
        match call {
            NamespaceCall::Get(name) => match self.attrs.get(name.as_str()) {
                Some((_, _, v)) => Attempt::reply(Reply::Return(ReplyValue::Item(v.pickle().clone()))),
                None => Attempt::error(no_attribute(name)),
            },
            NamespaceCall::Set(name, value) => {
                let value = std::mem::replace(value, super::sequence::synthesized(|w| w.none()));
                self.set(std::mem::take(name), value);
                self.changes.dirty();
                Attempt::reply(Reply::none())
            }
            NamespaceCall::Del(name) => match self.attrs.remove(name.as_str()) {
                Some(_) => {
                    self.changes.dirty();
                    Attempt::reply(Reply::none())
                }
                None => Attempt::error(no_attribute(name)),
            },
        }
    }

    fn timed_out(&mut self, _call: &mut NamespaceCall, _ctx: &CallContext) -> Attempt {
        unreachable!("namespace calls never block")
    }

    fn changes(&mut self) -> Option<&mut Changes> {
        Some(&mut self.changes)
    }

    /// Every attribute in insertion order: name (UTF-8), value's pickle.
    fn snapshot(&self, out: &mut Vec<Change>) {
        let ordered = self.ordered();
        let parts = ordered.iter().flat_map(|(name, (_, _, v))| [name.as_bytes(), &v.pickle()[..]]);
        out.push(Change::Whole(super::change::join_parts(parts)));
    }

    fn replay(&mut self, change: Change) -> Result<(), String> {
        let Change::Whole(data) = change else { return Err(super::change::unfit(&change, self.class_name())) };
        let parts = super::change::split_parts(&data).filter(|p| p.len() % 2 == 0).ok_or("a logged namespace is malformed")?;
        self.attrs.clear();
        for pair in parts.chunks(2) {
            let name = std::str::from_utf8(pair[0]).map_err(|_| "a logged attribute name is not UTF-8")?;
            self.set(name.to_string(), StoredValue::from_pickle(pair[1].into())?);
        }
        Ok(())
    }
}

/// `Namespace(**kwds)`.
pub fn construct(req: &Request<'_, '_>, _table: &ObjectTable) -> Result<SharedObject, PyException> {
    if !req.args.is_empty() {
        return Err(PyException::type_error(format!(
            "Namespace.__init__() takes 1 positional argument but {} were given",
            req.args.len() + 1
        )));
    }
    let mut ns = SharedNamespace::default();
    let mut budget = ViewBudget::for_request(req.pickle);
    for &(name, v) in &req.kwds {
        ns.set(name.to_string(), StoredValue::from_node_in(req.pickle, v, &mut budget));
    }
    Ok(SharedObject::Namespace(ns))
}

/// `--register NAME=Namespace`: an empty namespace.
pub fn from_cli(args: &str) -> Result<SharedObject, String> {
    if !args.trim().is_empty() {
        return Err("Namespace takes no arguments on the command line".into());
    }
    Ok(SharedObject::Namespace(SharedNamespace::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::sequence::synthesized;

    #[test]
    fn repr_sorts_public_attributes() {
        let mut ns = SharedNamespace::default();
        ns.set("b".into(), synthesized(|w| w.int(2)));
        ns.set("a".into(), synthesized(|w| w.str("x")));
        ns.set("_c".into(), synthesized(|w| w.int(3)));
        assert_eq!(ns.repr("").unwrap(), "Namespace(a='x', b=2)");
    }
}
