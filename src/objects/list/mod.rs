//! `list`, as SyncManager's `list` typeid serves it to a `ListProxy`, with
//! CPython's results and error messages (3.11 wording).
//!
//! Elements are [`StoredValue`]s: the client's pickle bytes, returned
//! verbatim, plus the decoded view used for `==` (`in`, `index`, `count`,
//! `remove`), `<` (`sort`) and `repr`.
//!
//! Reading sequence arguments and writing container pickles, shared with
//! the other container types, is in `sequence.rs`.
//!
//! Differences from CPython that cannot be helped without running code:
//! - `sort(key=f)` with any `key` other than `None` raises `TypeError`: the
//!   server cannot call functions (with a lambda the CPython client already
//!   fails to pickle the call; `key=len` or `key=str.lower` would work there).
//! - Iterables are read from what the pickle says: lists, tuples, sets,
//!   frozensets, dicts (their keys), `str`, `bytes`, `bytearray`, `range`
//!   and `list(...)`/`tuple(...)`-style reductions. Other objects (a class
//!   with `__iter__`, numpy arrays, a proxy passed as an argument to a
//!   method) raise `TypeError: 'X' object is not iterable`.
//! - Indices must be real ints (or bools): objects with `__index__` (numpy
//!   integers) are refused as CPython refuses floats.

use crate::pickle::PickleWriter;
use crate::protocol::{PyException, Reply, Request, ReplyValue};

mod call;

pub use call::{parse_call, ListCall, PYTHON2_SLICE_METHODS};

use super::value::{py_eq, sort_by_key, StoredValue};
use super::sequence::*;
use super::{Attempt, Change, Changes, CallContext, CallError, Item, ObjectTable, SharedObject, SharedType, TypeInfo};

/// `ListProxy._exposed_` (the same in every version from 3.6 to 3.13).
pub const EXPOSED: &[&str] = &[
    "__add__", "__contains__", "__delitem__", "__getitem__", "__len__", "__mul__", "__reversed__", "__rmul__",
    "__setitem__", "append", "count", "extend", "index", "insert", "pop", "remove", "reverse", "sort", "__imul__",
];

/// SyncManager's `list` typeid; a slice assignment and `extend` store each
/// element of their argument (ListProxy's `+=` calls `extend`: the list
/// exposes no `__iadd__`).
pub const INFO: TypeInfo = TypeInfo {
    typeid: "list",
    construct,
    from_cli,
    exposed: EXPOSED,
    storing: &["append", "extend", "insert", "__setitem__", "__imul__"],
    iterating: &["extend", "__setitem__"],
    factory: Some("builtins.list"),
    parse: Some(|req, _| parse_call(req).map(super::ObjectCall::List)),
};

/// Most elements a `*` or `*=` may produce; beyond, `MemoryError` (CPython
/// would try, and fail or exhaust the host).
pub(crate) const MAX_REPEAT: u128 = 1 << 28;

#[derive(Debug, Default)]
pub struct SharedList {
    items: Vec<StoredValue>,
    /// Changes for the store, if durable: appends, single-item sets,
    /// inserts and removals are deltas; slice assignment and deletion,
    /// `*=`, `reverse` and `sort` log the whole list (README, "Durable
    /// data").
    changes: Changes,
}


fn ret_item(item: Item) -> Reply {
    Reply::Return(ReplyValue::Item(item))
}

impl SharedType for SharedList {
    fn for_each_item(&self, f: &mut dyn FnMut(&Item)) {
        self.items.iter().for_each(|v| f(v.pickle()));
    }

    type Call = ListCall;

    fn class_name(&self) -> &'static str {
        "list"
    }

    fn info(&self) -> &'static TypeInfo {
        &INFO
    }

    fn repr(&self, _ident: &str) -> Result<String, PyException> {
        let mut out = String::from("[");
        for (i, v) in self.items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            v.view().write_repr(&mut out)?;
        }
        out.push(']');
        Ok(out)
    }

    fn getvalue(&self) -> Reply {
        ret_item(self.to_pickle())
    }

    fn parse_call(&self, req: &Request<'_, '_>, _ctx: &CallContext) -> Result<ListCall, CallError> {
        parse_call(req)
    }

    fn attempt(&mut self, call: &mut ListCall, _ctx: &CallContext) -> Attempt {
        match self.call(call) {
            Ok(reply) => Attempt::reply(reply),
            Err(e) => Attempt::error(e),
        }
    }

    fn timed_out(&mut self, _call: &mut ListCall, _ctx: &CallContext) -> Attempt {
        unreachable!("list calls never block")
    }

    fn changes(&mut self) -> Option<&mut Changes> {
        Some(&mut self.changes)
    }

    /// The whole list, one record (its items' pickles, each with its
    /// length).
    fn snapshot(&self, out: &mut Vec<Change>) {
        out.push(Change::Whole(super::change::join_parts(self.items.iter().map(|v| &v.pickle()[..]))));
    }

    fn replay(&mut self, change: Change) -> Result<(), String> {
        let value = |i: Item| StoredValue::from_pickle(i);
        let bad = |p: u64| format!("a logged list change at position {p} is past the list's end");
        match change {
            Change::ListExtend(items) => {
                for i in items {
                    self.items.push(value(i)?);
                }
            }
            Change::ListSet(p, i) => *self.items.get_mut(p as usize).ok_or_else(|| bad(p))? = value(i)?,
            Change::ListInsert(p, i) if p as usize <= self.items.len() => self.items.insert(p as usize, value(i)?),
            Change::ListDel(p) if (p as usize) < self.items.len() => {
                self.items.remove(p as usize);
            }
            Change::ListInsert(p, _) | Change::ListDel(p) => return Err(bad(p)),
            Change::Whole(data) => {
                let parts = super::change::split_parts(&data).ok_or("a logged list is malformed")?;
                self.items = parts.into_iter().map(|p| value(Item::from(p))).collect::<Result<_, _>>()?;
            }
            other => return Err(super::change::unfit(&other, self.class_name())),
        }
        Ok(())
    }
}

impl SharedList {
    pub fn new(items: Vec<StoredValue>) -> SharedList {
        SharedList { items, changes: Changes::default() }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> &[StoredValue] {
        &self.items
    }

    /// A standalone pickle of the whole list.
    pub fn to_pickle(&self) -> Item {
        let refs: Vec<&Item> = self.items.iter().map(|s| s.pickle()).collect();
        list_pickle(&refs)
    }

    fn remove_at(&mut self, p: usize) {
        self.changes.record(|| Change::ListDel(p as u64));
        self.items.remove(p);
    }

    /// A position from a Python index, or `None` when out of range.
    fn position(&self, i: i64) -> Option<usize> {
        let len = self.items.len() as i64;
        let i = if i < 0 { i + len } else { i };
        (0..len).contains(&i).then_some(i as usize)
    }

    fn repeat(&self, n: &Repeat) -> Result<Vec<&StoredValue>, PyException> {
        let n = match n {
            Repeat::Times(n) => (*n).max(0) as u128,
            Repeat::TooMany if self.items.is_empty() => 0,
            Repeat::TooMany => return Err(PyException::memory_error("")),
        };
        if self.items.len() as u128 * n > MAX_REPEAT {
            return Err(PyException::memory_error(""));
        }
        Ok((0..n).flat_map(|_| self.items.iter()).collect())
    }

    /// Runs one call (also on a copy the Redis backend read, `backend/redis/list.rs`).
    pub(crate) fn call(&mut self, call: &mut ListCall) -> Result<Reply, PyException> {
        Ok(match call {
            ListCall::Add(other) => {
                let refs: Vec<&Item> = self.items.iter().chain(other.iter()).map(|s| s.pickle()).collect();
                ret_item(list_pickle(&refs))
            }
            ListCall::Contains(x) => Reply::Return(ReplyValue::Bool(self.items.iter().any(|s| py_eq(s.view(), x)))),
            ListCall::Len => Reply::Return(ReplyValue::Int(self.items.len() as i64)),
            ListCall::GetItem(index) => match *index {
                Index::Int(i) => match self.position(i) {
                    Some(p) => ret_item(self.items[p].pickle().clone()),
                    None => return Err(PyException::index_error("list index out of range")),
                },
                Index::Huge => return Err(PyException::index_error("cannot fit 'int' into an index-sized integer")),
                Index::Slice(s) => {
                    let refs: Vec<&Item> =
                        s.positions(self.items.len())?.into_iter().map(|p| self.items[p].pickle()).collect();
                    ret_item(list_pickle(&refs))
                }
            },
            ListCall::DelItem(index) => {
                match *index {
                    Index::Int(i) => match self.position(i) {
                        Some(p) => self.remove_at(p),
                        None => return Err(PyException::index_error("list assignment index out of range")),
                    },
                    Index::Huge => return Err(PyException::index_error("cannot fit 'int' into an index-sized integer")),
                    Index::Slice(s) => {
                        let (start, stop, step, n) = s.indices(self.items.len())?;
                        if n > 0 {
                            self.changes.dirty();
                        }
                        if step == 1 {
                            if n > 0 {
                                self.items.drain(start as usize..stop as usize);
                            }
                        } else {
                            let mut drop = vec![false; self.items.len()];
                            for i in 0..n as i64 {
                                drop[(start + i * step) as usize] = true;
                            }
                            let mut k = 0;
                            self.items.retain(|_| {
                                k += 1;
                                !drop[k - 1]
                            });
                        }
                    }
                }
                Reply::none()
            }
            ListCall::SetItem(index, values) => {
                match *index {
                    Index::Int(i) => match self.position(i) {
                        Some(p) => {
                            let v = values.pop().expect("one value");
                            self.changes.record(|| Change::ListSet(p as u64, v.pickle().clone()));
                            self.items[p] = v;
                        }
                        None => return Err(PyException::index_error("list assignment index out of range")),
                    },
                    Index::Huge => return Err(PyException::index_error("cannot fit 'int' into an index-sized integer")),
                    Index::Slice(s) => {
                        let (start, stop, step, n) = s.indices(self.items.len())?;
                        self.changes.dirty();
                        if step == 1 {
                            let start = start as usize;
                            let stop = (stop.max(start as i64)) as usize;
                            self.items.splice(start..stop, values.drain(..));
                        } else {
                            if values.len() != n {
                                return Err(PyException::value_error(format!(
                                    "attempt to assign sequence of size {} to extended slice of size {n}",
                                    values.len()
                                )));
                            }
                            for (i, v) in values.drain(..).enumerate() {
                                self.items[(start + i as i64 * step) as usize] = v;
                            }
                        }
                    }
                }
                Reply::none()
            }
            ListCall::Mul(n) => {
                let refs: Vec<&Item> = self.repeat(n)?.into_iter().map(|s| s.pickle()).collect();
                ret_item(list_pickle(&refs))
            }
            ListCall::IMul(n) => {
                let repeated: Vec<StoredValue> = self.repeat(n)?.into_iter().cloned().collect();
                self.items = repeated;
                self.changes.dirty();
                // CPython returns the list itself, pickled.
                ret_item(self.to_pickle())
            }
            ListCall::Reversed => {
                // `reversed(list)` pickles as `reversed(copy)` with its
                // position as state: the client gets a reverse iterator.
                let refs: Vec<&Item> = self.items.iter().map(|s| s.pickle()).collect();
                let mut w = PickleWriter::new(protocol_for(refs.iter().copied()));
                w.global("builtins", "reversed");
                write_list(&mut w, refs.iter().copied());
                w.tuple1();
                w.reduce();
                if !refs.is_empty() {
                    w.int(refs.len() as i64 - 1);
                    w.build();
                }
                ret_item(w.finish().into())
            }
            ListCall::Append(v) => {
                let v = v.take().expect("attempted once");
                self.changes.record(|| Change::ListExtend(vec![v.pickle().clone()]));
                self.items.push(v);
                Reply::none()
            }
            ListCall::Count(x) => {
                Reply::Return(ReplyValue::Int(self.items.iter().filter(|s| py_eq(s.view(), x)).count() as i64))
            }
            ListCall::Extend(values) => {
                if !values.is_empty() {
                    self.changes.record(|| Change::ListExtend(values.iter().map(|v| v.pickle().clone()).collect()));
                }
                self.items.append(values);
                Reply::none()
            }
            ListCall::Index { value, start, stop } => {
                let len = self.items.len() as i64;
                let clamp = |i: i64| if i < 0 { (i.saturating_add(len)).max(0) } else { i.min(len) };
                let (start, stop) = (clamp(*start) as usize, clamp(*stop) as usize);
                match (start..stop.max(start)).find(|&i| py_eq(self.items[i].view(), value)) {
                    Some(i) => Reply::Return(ReplyValue::Int(i as i64)),
                    None => return Err(PyException::value_error(format!("{} is not in list", value.repr()?))),
                }
            }
            ListCall::Insert(i, v) => {
                let len = self.items.len() as i64;
                let at = if *i < 0 { (i.saturating_add(len)).max(0) } else { (*i).min(len) };
                let v = v.take().expect("attempted once");
                self.changes.record(|| Change::ListInsert(at as u64, v.pickle().clone()));
                self.items.insert(at as usize, v);
                Reply::none()
            }
            ListCall::Pop(index) => {
                if self.items.is_empty() {
                    return Err(PyException::index_error("pop from empty list"));
                }
                let p = match *index {
                    Index::Int(i) => self.position(i),
                    _ => None,
                };
                match p {
                    Some(p) => {
                        let out = self.items[p].pickle().clone();
                        self.remove_at(p);
                        ret_item(out)
                    }
                    None => return Err(PyException::index_error("pop index out of range")),
                }
            }
            ListCall::Remove(x) => match self.items.iter().position(|s| py_eq(s.view(), x)) {
                Some(p) => {
                    self.remove_at(p);
                    Reply::none()
                }
                None => return Err(PyException::value_error("list.remove(x): x not in list")),
            },
            ListCall::Reverse => {
                self.items.reverse();
                self.changes.dirty();
                Reply::none()
            }
            ListCall::Sort { reverse } => {
                // Marked first: a sort that fails midway (an uncomparable
                // pair) may have moved items already.
                self.changes.dirty();
                sort_by_key(&mut self.items, |s| s.view(), *reverse)?;
                Reply::none()
            }
        })
    }
}

// ---------------------------------------------------------------------------
// Construction

/// `list(iterable=())`, as `SyncManager.list(...)` sends it.
pub fn construct(req: &Request<'_, '_>, table: &ObjectTable) -> Result<SharedObject, PyException> {
    if !req.kwds.is_empty() {
        return Err(PyException::type_error("list() takes no keyword arguments"));
    }
    let items = match req.args {
        [] => Vec::new(),
        [x] => match proxied(req.pickle, *x, table) {
            Some(SharedObject::List(l)) => l.items.clone(),
            _ => iterate(req.pickle, *x, &mut budget(req.pickle))?,
        },
        _ => {
            return Err(PyException::type_error(format!("list expected at most 1 argument, got {}", req.args.len())));
        }
    };
    Ok(SharedObject::List(SharedList::new(items)))
}

/// `--register NAME=list`: an empty list.
pub fn from_cli(args: &str) -> Result<SharedObject, String> {
    if !args.trim().is_empty() {
        return Err("list takes no arguments on the command line".into());
    }
    Ok(SharedObject::List(SharedList::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::value::PyValue;

    fn ints(v: &[i64]) -> Vec<StoredValue> {
        v.iter().map(|&i| synthesized(|w| w.int(i))).collect()
    }

    fn repr(l: &SharedList) -> String {
        l.repr("").unwrap()
    }

    #[test]
    fn slices_follow_python_indices() {
        let s = |a, b, c| Slice { start: a, stop: b, step: c };
        assert_eq!(s(None, None, None).positions(5).unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(s(None, None, Some(-1)).positions(3).unwrap(), vec![2, 1, 0]);
        assert_eq!(s(Some(-2), None, None).positions(5).unwrap(), vec![3, 4]);
        assert_eq!(s(Some(i64::MAX), Some(i64::MIN), Some(-1)).positions(3).unwrap(), vec![2, 1, 0]);
        assert_eq!(s(Some(1), Some(100), Some(2)).positions(6).unwrap(), vec![1, 3, 5]);
        assert!(s(None, None, Some(0)).positions(3).is_err());
    }

    #[test]
    fn mutations_match_python() {
        let mut l = SharedList::new(ints(&[3, 1, 2]));
        l.call(&mut ListCall::Sort { reverse: false }).unwrap();
        assert_eq!(repr(&l), "[1, 2, 3]");
        let slice = Slice { start: Some(0), stop: Some(2), step: None };
        l.call(&mut ListCall::SetItem(Index::Slice(slice), ints(&[7, 8, 9]))).unwrap();
        assert_eq!(repr(&l), "[7, 8, 9, 3]");
        l.call(&mut ListCall::DelItem(Index::Slice(Slice { start: None, stop: None, step: Some(2) }))).unwrap();
        assert_eq!(repr(&l), "[8, 3]");
        l.call(&mut ListCall::Insert(-100, Some(ints(&[0]).remove(0)))).unwrap();
        assert_eq!(repr(&l), "[0, 8, 3]");
        let e = l.call(&mut ListCall::GetItem(Index::Int(3))).unwrap_err();
        assert_eq!(e.traceback_line(), "IndexError: list index out of range");
        let e = l.call(&mut ListCall::Remove(PyValue::Int(5))).unwrap_err();
        assert_eq!(e.traceback_line(), "ValueError: list.remove(x): x not in list");
        let e = l.call(&mut ListCall::Index { value: PyValue::str("x"), start: 0, stop: i64::MAX }).unwrap_err();
        assert_eq!(e.traceback_line(), "ValueError: 'x' is not in list");
    }
}
