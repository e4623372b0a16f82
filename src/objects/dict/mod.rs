//! `dict`, as SyncManager's `dict` typeid serves it to a `DictProxy`:
//! insertion order, Python's key equality (`1 == 1.0 == True`), the first
//! key object kept when a value is replaced, `KeyError(key)` carrying the
//! client's own key object, and `__iter__` answered with a new `Iterator`
//! object (`method_to_typeid = {'__iter__': 'Iterator'}`).
//!
//! `keys()`, `values()` and `items()` return lists: CPython's manager
//! pickles dict views as lists (`rebuild_as_list` in managers.py).
//!
//! Differences from CPython: keys that are class instances are compared by
//! their pickled content (see [`PyValue::key`]); `update(x)` reads `x` from
//! the pickle (a dict, a mapping pickled with SETITEMS such as an
//! `OrderedDict`, or an iterable of pairs): an object that is a mapping
//! only by its methods, or a proxy passed to `update`, is refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::protocol::{PyException, Reply, Request, ReplyValue};

mod call;

pub use call::{parse_call, DictCall};
use call::update_pairs;

use super::iterator::KeyIterator;
use super::sequence::{dict_pickle, list_pickle, tuple_pickle};
use super::value::{DictKey, StoredValue};
use super::{Attempt, Change, Changes, CallContext, CallError, Item, ObjectTable, SharedObject, SharedType, TypeInfo};

/// What CPython's `create` answers for a dict: `DictProxy._exposed_` (3.7
/// to 3.13; 3.6 also lists `has_key`, which no Python 3 dict has) followed
/// by the keys of its `method_to_typeid`, so `__iter__` appears twice
/// (`Server.create`: `exposed = list(exposed) + list(method_to_typeid)`).
pub const EXPOSED: &[&str] = &[
    "__contains__", "__delitem__", "__getitem__", "__iter__", "__len__", "__setitem__", "clear", "copy", "get",
    "items", "keys", "pop", "popitem", "setdefault", "update", "values", "__iter__",
];

/// SyncManager's `dict` typeid.
pub const INFO: TypeInfo = TypeInfo {
    typeid: "dict",
    construct,
    from_cli,
    exposed: EXPOSED,
    storing: &["__setitem__", "update", "setdefault"],
    iterating: &[],
    factory: Some("builtins.dict"),
    parse: Some(|req, _| parse_call(req).map(super::ObjectCall::Dict)),
};

/// One entry: the key's hash identity, the key and the value.
#[derive(Debug, Clone)]
struct Entry {
    key: DictKey,
    k: StoredValue,
    v: StoredValue,
}

#[derive(Debug, Default)]
pub struct SharedDict {
    /// Insertion order, with holes where entries were deleted.
    entries: Vec<Option<Entry>>,
    index: HashMap<DictKey, usize>,
    /// The live size, shared with iterators so that they can raise
    /// "dictionary changed size during iteration" as CPython's do.
    size: Arc<AtomicUsize>,
    /// Changes for the store, if durable: a key set or deleted is one
    /// record, so a large dict is never rewritten whole on a change.
    changes: Changes,
}

/// A key looked up: its identity, and its pickle for `KeyError(key)`.
#[derive(Debug)]
pub struct Lookup {
    key: DictKey,
    item: Item,
}

impl Lookup {
    /// The key's identity (Python's `hash`/`==`).
    pub fn key(&self) -> &DictKey {
        &self.key
    }

    /// The key object as the client sent it, for `KeyError(key)`.
    pub fn item(&self) -> &Item {
        &self.item
    }
}

fn ret(item: Item) -> Reply {
    Reply::Return(ReplyValue::Item(item))
}

impl SharedType for SharedDict {
    fn for_each_item(&self, f: &mut dyn FnMut(&Item)) {
        for e in self.iter() {
            f(e.k.pickle());
            f(e.v.pickle());
        }
    }

    type Call = DictCall;

    fn class_name(&self) -> &'static str {
        "dict"
    }

    fn info(&self) -> &'static TypeInfo {
        &INFO
    }

    fn repr(&self, _ident: &str) -> Result<String, PyException> {
        let mut out = String::from("{");
        for (i, e) in self.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            e.k.view().write_repr(&mut out)?;
            out.push_str(": ");
            e.v.view().write_repr(&mut out)?;
        }
        out.push('}');
        Ok(out)
    }

    fn getvalue(&self) -> Reply {
        ret(self.to_pickle())
    }

    fn parse_call(&self, req: &Request<'_, '_>, _ctx: &CallContext) -> Result<DictCall, CallError> {
        parse_call(req)
    }

    fn attempt(&mut self, call: &mut DictCall, _ctx: &CallContext) -> Attempt {
        if let DictCall::Iter = call {
            let keys = self.iter().map(|e| e.k.pickle().clone()).collect();
            return Attempt::NewObject {
                typeid: "Iterator",
                object: SharedObject::Iterator(KeyIterator::new(keys, self.size.clone())),
            };
        }
        let reply = self.call(call);
        self.size.store(self.index.len(), Ordering::Relaxed);
        Attempt::reply(reply)
    }

    fn timed_out(&mut self, _call: &mut DictCall, _ctx: &CallContext) -> Attempt {
        unreachable!("dict calls never block")
    }

    fn changes(&mut self) -> Option<&mut Changes> {
        Some(&mut self.changes)
    }

    /// Its pairs in order, a thousand to a record.
    fn snapshot(&self, out: &mut Vec<Change>) {
        let pairs: Vec<(Item, Item)> = self.iter().map(|e| (e.k.pickle().clone(), e.v.pickle().clone())).collect();
        out.extend(pairs.chunks(1000).map(|c| Change::DictSet(c.to_vec())));
    }

    fn replay(&mut self, change: Change) -> Result<(), String> {
        let key = |k: Item| -> Result<(DictKey, StoredValue), String> {
            let k = StoredValue::from_pickle(k)?;
            Ok((k.key().map_err(|e| e.traceback_line())?, k))
        };
        match change {
            Change::DictSet(pairs) => {
                for (k, v) in pairs {
                    let (dk, k) = key(k)?;
                    self.insert(dk, k, StoredValue::from_pickle(v)?);
                }
            }
            Change::DictDel(k) => {
                self.remove(&key(k)?.0);
            }
            Change::Clear => {
                self.entries.clear();
                self.index.clear();
            }
            other => return Err(super::change::unfit(&other, self.class_name())),
        }
        self.size.store(self.index.len(), Ordering::Relaxed);
        Ok(())
    }
}

impl SharedDict {
    /// A dict of `pairs`, in order; a repeated key keeps its first key
    /// object and its last value.
    fn from_pairs(pairs: Vec<(DictKey, StoredValue, StoredValue)>) -> SharedDict {
        let mut d = SharedDict::default();
        d.update(pairs);
        d.size.store(d.index.len(), Ordering::Relaxed);
        d
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().flatten()
    }

    fn get(&self, key: &DictKey) -> Option<&Entry> {
        self.index.get(key).and_then(|&i| self.entries[i].as_ref())
    }

    /// Sets `key`; returns the key object and value as the dict now
    /// holds them (the first key object stays), for the store.
    fn insert(&mut self, key: DictKey, k: StoredValue, v: StoredValue) -> (Item, Item) {
        let e = match self.index.get(&key) {
            Some(&i) => {
                let e = self.entries[i].as_mut().expect("indexed entries exist");
                e.v = v;
                e
            }
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push(Some(Entry { key, k, v }));
                self.entries.last_mut().expect("pushed").as_mut().expect("some")
            }
        };
        (e.k.pickle().clone(), e.v.pickle().clone())
    }

    fn remove(&mut self, key: &DictKey) -> Option<Entry> {
        let i = self.index.remove(key)?;
        let e = self.entries[i].take();
        if let Some(e) = &e {
            self.changes.record(|| Change::DictDel(e.k.pickle().clone()));
        }
        self.compact();
        e
    }

    /// Drops the holes once they are most of the table.
    fn compact(&mut self) {
        if self.entries.len() > 16 && self.index.len() * 2 < self.entries.len() {
            self.entries.retain(Option::is_some);
            for (i, e) in self.entries.iter().enumerate() {
                let e = e.as_ref().expect("retained");
                *self.index.get_mut(&e.key).expect("indexed") = i;
            }
        }
        while matches!(self.entries.last(), Some(None)) {
            self.entries.pop();
        }
    }

    /// Sets every pair, in order: one change for the store.
    fn update(&mut self, pairs: Vec<(DictKey, StoredValue, StoredValue)>) {
        let mut set = Vec::with_capacity(if self.changes.is_kept() { pairs.len() } else { 0 });
        for (key, k, v) in pairs {
            let kv = self.insert(key, k, v);
            if self.changes.is_kept() {
                set.push(kv);
            }
        }
        if !set.is_empty() {
            self.changes.record(|| Change::DictSet(set));
        }
    }

    /// A standalone pickle of a plain dict copy.
    pub fn to_pickle(&self) -> Item {
        let pairs: Vec<(&Item, &Item)> = self.iter().map(|e| (e.k.pickle(), e.v.pickle())).collect();
        dict_pickle(&pairs)
    }

    fn call(&mut self, call: &mut DictCall) -> Reply {
        let missing = |l: &Lookup| Reply::ErrorItem { module: "builtins", name: "KeyError", arg: l.item.clone() };
        match call {
            DictCall::Contains(key) => Reply::Return(ReplyValue::Bool(self.index.contains_key(key))),
            DictCall::GetItem(l) => match self.get(&l.key) {
                Some(e) => ret(e.v.pickle().clone()),
                None => missing(l),
            },
            DictCall::DelItem(l) => match self.remove(&l.key) {
                Some(_) => Reply::none(),
                None => missing(l),
            },
            DictCall::Iter => unreachable!("answered in attempt"),
            DictCall::Len => Reply::Return(ReplyValue::Int(self.len() as i64)),
            DictCall::SetItem(entry) => {
                self.update(vec![entry.take().expect("attempted once")]);
                Reply::none()
            }
            DictCall::Clear => {
                self.entries.clear();
                self.index.clear();
                self.changes.record(|| Change::Clear);
                Reply::none()
            }
            DictCall::Copy => ret(self.to_pickle()),
            DictCall::Get(key, default) => match (self.get(key), default) {
                (Some(e), _) => ret(e.v.pickle().clone()),
                (None, Some(d)) => ret(d.clone()),
                (None, None) => Reply::none(),
            },
            DictCall::Keys => {
                let refs: Vec<&Item> = self.iter().map(|e| e.k.pickle()).collect();
                ret(list_pickle(&refs))
            }
            DictCall::Values => {
                let refs: Vec<&Item> = self.iter().map(|e| e.v.pickle()).collect();
                ret(list_pickle(&refs))
            }
            DictCall::Items => {
                let pairs: Vec<Item> = self.iter().map(|e| tuple_pickle(&[e.k.pickle(), e.v.pickle()])).collect();
                let refs: Vec<&Item> = pairs.iter().collect();
                ret(list_pickle(&refs))
            }
            DictCall::Pop(l, default) => match (self.remove(&l.key), default) {
                (Some(e), _) => ret(e.v.pickle().clone()),
                (None, Some(d)) => ret(d.clone()),
                (None, None) => missing(l),
            },
            DictCall::PopItem => {
                let last = self.entries.iter().rposition(Option::is_some);
                match last {
                    Some(i) => {
                        let key = self.entries[i].as_ref().expect("some").key.clone();
                        let e = self.remove(&key).expect("present");
                        ret(tuple_pickle(&[e.k.pickle(), e.v.pickle()]))
                    }
                    None => Reply::Error(PyException::key_error("popitem(): dictionary is empty")),
                }
            }
            DictCall::SetDefault(key, k, default) => {
                if let Some(e) = self.get(key) {
                    return ret(e.v.pickle().clone());
                }
                let v = default.take().unwrap_or_else(|| super::sequence::synthesized(|w| w.none()));
                let out = v.pickle().clone();
                self.update(vec![(key.clone(), k.clone(), v)]);
                ret(out)
            }
            DictCall::Update(pairs) => {
                self.update(std::mem::take(pairs));
                Reply::none()
            }
        }
    }
}

/// `dict(*args, **kwds)`, as `SyncManager.dict(...)` sends it.
pub fn construct(req: &Request<'_, '_>, table: &ObjectTable) -> Result<SharedObject, PyException> {
    Ok(SharedObject::Dict(SharedDict::from_pairs(update_pairs(req, "dict", Some(table))?)))
}

/// `--register NAME=dict`: an empty dict.
pub fn from_cli(args: &str) -> Result<SharedObject, String> {
    if !args.trim().is_empty() {
        return Err("dict takes no arguments on the command line".into());
    }
    Ok(SharedObject::Dict(SharedDict::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::sequence::synthesized;

    fn int(i: i64) -> (DictKey, StoredValue) {
        let s = synthesized(|w| w.int(i));
        (s.key().unwrap(), s)
    }

    fn float(f: f64) -> (DictKey, StoredValue) {
        let s = synthesized(|w| w.float(f));
        (s.key().unwrap(), s)
    }

    #[test]
    fn equal_keys_keep_the_first_key_object() {
        let (k1, s1) = float(1.0);
        let (k2, s2) = int(1);
        let (_, v) = int(5);
        let mut d = SharedDict::default();
        d.call(&mut DictCall::SetItem(Some((k1, s1.clone(), s2.clone()))));
        d.call(&mut DictCall::SetItem(Some((k2, s2, v))));
        assert_eq!(d.repr("").unwrap(), "{1.0: 5}");
    }

    #[test]
    fn order_and_popitem() {
        let mut d = SharedDict::default();
        for i in 0..40 {
            let (k, s) = int(i);
            d.call(&mut DictCall::SetItem(Some((k, s.clone(), s))));
        }
        for i in 0..30 {
            d.remove(&int(i).0);
        }
        assert_eq!(d.repr("").unwrap(), "{30: 30, 31: 31, 32: 32, 33: 33, 34: 34, 35: 35, 36: 36, 37: 37, 38: 38, 39: 39}");
        let (k, s) = int(3);
        d.call(&mut DictCall::SetItem(Some((k, s.clone(), s))));
        assert!(matches!(d.call(&mut DictCall::PopItem), Reply::Return(_)));
        assert_eq!(d.len(), 10);
        assert!(d.get(&int(3).0).is_none());
    }
}
