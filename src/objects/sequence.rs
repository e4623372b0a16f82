//! Sequence arguments and container pickles, shared by `list`, `dict`,
//! `Namespace` and `Array`: reading indices, slices, repeat counts and
//! iterables out of a request, and writing list/tuple/dict pickles that
//! embed stored items ([`list_pickle`], [`tuple_pickle`], [`dict_pickle`]).
//!
//! Iterables are read from what the pickle says (lists, tuples, sets,
//! frozensets, dict keys, `str`, `bytes`, `bytearray`, `range`, and
//! `list(...)`-style reductions): the server cannot call `__iter__`.

use crate::pickle::{DecodeLimits, Decoded, Node, NodeId, ObjectKind, PickleWriter, RangeCall, declared_protocol};
use crate::protocol::PyException;

use super::list::MAX_REPEAT;
use super::value::{type_name, PyStr, PyValue, StoredValue, ViewBudget};
use super::{Item, ObjectTable, SharedObject};

/// An index argument: an int, or a slice.
#[derive(Debug, Clone, Copy)]
pub enum Index {
    Int(i64),
    /// An int beyond `i64`: never a valid index.
    Huge,
    Slice(Slice),
}

/// `slice(start, stop, step)` with ints beyond `i64` clamped, as CPython's
/// `PySlice_Unpack` clamps them to `Py_ssize_t`.
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    pub start: Option<i64>,
    pub stop: Option<i64>,
    pub step: Option<i64>,
}

impl Slice {
    /// `(start, stop, step, length)` for a sequence of `len` elements
    /// (`PySlice_AdjustIndices`); the step is never 0.
    pub fn indices(&self, len: usize) -> Result<(i64, i64, i64, usize), PyException> {
        let len = len as i64;
        let step = self.step.unwrap_or(1);
        if step == 0 {
            return Err(PyException::value_error("slice step cannot be zero"));
        }
        let step = step.max(-i64::MAX);
        let adjust = |v: Option<i64>, default_neg: i64, default_pos: i64| match v {
            None => {
                if step < 0 {
                    default_neg
                } else {
                    default_pos
                }
            }
            Some(mut v) => {
                if v < 0 {
                    v = v.saturating_add(len);
                    if v < 0 {
                        v = if step < 0 { -1 } else { 0 };
                    }
                } else if v >= len {
                    v = if step < 0 { len - 1 } else { len };
                }
                v
            }
        };
        let start = adjust(self.start, len - 1, 0);
        let stop = adjust(self.stop, -1, len);
        let length = if step < 0 {
            if stop < start { ((start - stop - 1) / (-step) + 1) as usize } else { 0 }
        } else if start < stop {
            ((stop - start - 1) / step + 1) as usize
        } else {
            0
        };
        Ok((start, stop, step, length))
    }

    /// The positions the slice selects, in order.
    pub fn positions(&self, len: usize) -> Result<Vec<usize>, PyException> {
        let (start, _, step, n) = self.indices(len)?;
        Ok((0..n as i64).map(|i| (start + i * step) as usize).collect())
    }
}


/// A repeat count for `*`: ints beyond `i64` are either empty (negative) or
/// too large.
#[derive(Debug, Clone, Copy)]
pub enum Repeat {
    Times(i64),
    TooMany,
}

// ---------------------------------------------------------------------------
// Reading arguments

/// A fresh budget for all stored values of one request.
pub(crate) fn budget(d: &Decoded) -> ViewBudget {
    ViewBudget::for_request(d)
}

/// The type name CPython's messages use for node `id`.
pub(crate) fn node_type_name(d: &Decoded, id: NodeId) -> String {
    type_name(&PyValue::from_node(d, id)).to_string()
}

/// An int node: `Some(Ok(i))`, `Some(Err(negative))` for ints beyond `i64`,
/// `None` for anything else. Bools are ints.
pub(crate) fn int_arg(d: &Decoded, id: NodeId) -> Option<Result<i64, bool>> {
    match d.node(id) {
        Node::Int(i) => Some(Ok(*i)),
        Node::Bool(b) => Some(Ok(*b as i64)),
        Node::BigInt(b) => Some(Err(b.last().is_some_and(|x| x & 0x80 != 0))),
        _ => None,
    }
}

/// A pickled `slice(start, stop, step)`, if node `id` is one.
pub(crate) fn slice_arg(d: &Decoded, id: NodeId) -> Option<Result<Slice, PyException>> {
    let o = d.as_object(id)?;
    if o.kind != ObjectKind::Reduce || d.as_global(o.callable) != Some(("builtins", "slice")) {
        return None;
    }
    let args = d.as_tuple(o.args)?;
    let field = |i: usize| -> Result<Option<i64>, PyException> {
        let Some(&n) = args.get(i) else { return Ok(None) };
        if d.is_none(n) {
            return Ok(None);
        }
        match int_arg(d, n) {
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(negative)) => Ok(Some(if negative { i64::MIN } else { i64::MAX })),
            None => Err(PyException::type_error(
                "slice indices must be integers or None or have an __index__ method",
            )),
        }
    };
    Some((|| {
        // slice(stop) pickles as slice(None, stop, None): always 3 args.
        let (start, stop, step) = match args.len() {
            1 => (None, field(0)?, None),
            2 => (field(0)?, field(1)?, None),
            _ => (field(0)?, field(1)?, field(2)?),
        };
        Ok(Slice { start, stop, step })
    })())
}

/// An index for `__getitem__`/`__setitem__`/`__delitem__`; `what` is the
/// sequence type in the error (`list indices must be integers or slices,
/// not str`).
pub(crate) fn index_arg(d: &Decoded, id: NodeId) -> Result<Index, PyException> {
    if let Some(s) = slice_arg(d, id) {
        return Ok(Index::Slice(s?));
    }
    match int_arg(d, id) {
        Some(Ok(i)) => Ok(Index::Int(i)),
        Some(Err(_)) => Ok(Index::Huge),
        None => Err(PyException::type_error(format!(
            "list indices must be integers or slices, not {}",
            node_type_name(d, id)
        ))),
    }
}

/// An int argument that CPython reads with `__index__` (`insert`, `pop`).
pub(crate) fn ssize_arg(d: &Decoded, id: NodeId) -> Result<i64, PyException> {
    match int_arg(d, id) {
        Some(Ok(i)) => Ok(i),
        Some(Err(_)) => Err(PyException::overflow_error("Python int too large to convert to C ssize_t")),
        None => Err(PyException::type_error(format!(
            "'{}' object cannot be interpreted as an integer",
            node_type_name(d, id)
        ))),
    }
}

/// Like [`ssize_arg`], clamping big ints (`list.index`'s start/stop).
pub(crate) fn clamped_arg(d: &Decoded, id: NodeId) -> Result<i64, PyException> {
    match int_arg(d, id) {
        Some(Ok(i)) => Ok(i),
        Some(Err(negative)) => Ok(if negative { i64::MIN } else { i64::MAX }),
        None => Err(PyException::type_error(
            "slice indices must be integers or have an __index__ method",
        )),
    }
}

/// The count of `__mul__`/`__rmul__`/`__imul__`. The server calls the
/// method itself (not the `*` operator), so a non-int fails as the method
/// does: `'str' object cannot be interpreted as an integer`.
pub(crate) fn repeat_arg(d: &Decoded, id: NodeId) -> Result<Repeat, PyException> {
    match int_arg(d, id) {
        Some(Ok(n)) => Ok(Repeat::Times(n)),
        Some(Err(true)) => Ok(Repeat::Times(0)),
        Some(Err(false)) => Ok(Repeat::TooMany),
        None => Err(PyException::type_error(format!(
            "'{}' object cannot be interpreted as an integer",
            node_type_name(d, id)
        ))),
    }
}

/// A standalone pickle written by the server, stored like a client's item.
pub(crate) fn synthesized(write: impl FnOnce(&mut PickleWriter)) -> StoredValue {
    let mut w = PickleWriter::new(4);
    write(&mut w);
    let bytes = w.finish();
    let d = crate::pickle::decode(&bytes, &DecodeLimits::default()).expect("the server's own pickle decodes");
    StoredValue::from_node(&d, d.root())
}

/// A `str` value as a stored value (a keyword name, one character of a str).
pub(crate) fn stored_str(utf8: &[u8]) -> StoredValue {
    synthesized(|w| w.utf8_bytes(utf8))
}

/// The elements of an iterable argument, as `list(x)` would produce them;
/// `TypeError: 'int' object is not iterable` for what cannot be iterated
/// without running code (see the module docs).
pub(crate) fn iterate(d: &Decoded, id: NodeId, budget: &mut ViewBudget) -> Result<Vec<StoredValue>, PyException> {
    let children = |ids: &[NodeId], budget: &mut ViewBudget| {
        ids.iter().map(|&c| StoredValue::from_node_in(d, c, budget)).collect::<Vec<_>>()
    };
    if let Some(range) = d.as_range(id) {
        return range_elements(range);
    }
    Ok(match d.node(id) {
        Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v) => children(v, budget),
        Node::Dict(pairs) => {
            // Duplicate keys in the pickle are one key in the dict.
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::new();
            for &(k, _) in pairs {
                let s = StoredValue::from_node_in(d, k, budget);
                if s.key().map(|key| seen.insert(key)).unwrap_or(true) {
                    out.push(s);
                }
            }
            out
        }
        Node::Str(s) => {
            check_size(s.chars().count() as u128)?;
            let mut buf = [0u8; 4];
            s.chars().map(|c| stored_str(c.encode_utf8(&mut buf).as_bytes())).collect()
        }
        Node::ByteString(b) if b.is_ascii() => b.iter().map(|&c| stored_str(&[c])).collect(),
        Node::StrSurrogates(b) => {
            let s = PyStr::from_wtf8(b);
            s.code_points().map(|c| stored_str(&wtf8(c))).collect()
        }
        Node::Bytes(b) | Node::ByteArray(b) => b.iter().map(|&c| synthesized(|w| w.int(c as i64))).collect(),
        Node::Object(o) if o.kind == ObjectKind::Reduce && o.ops.is_empty() => {
            let args = d.as_tuple(o.args).unwrap_or(&[]);
            match d.as_global(o.callable) {
                Some(("builtins", "list" | "tuple" | "set" | "frozenset" | "iter" | "reversed")) if args.is_empty() => {
                    Vec::new()
                }
                Some(("builtins", "list" | "tuple" | "set" | "frozenset" | "iter")) if args.len() == 1 => {
                    iterate(d, args[0], budget)?
                }
                _ => return Err(not_iterable(d, id)),
            }
        }
        _ => return Err(not_iterable(d, id)),
    })
}

pub(crate) fn not_iterable(d: &Decoded, id: NodeId) -> PyException {
    PyException::type_error(format!("'{}' object is not iterable", node_type_name(d, id)))
}

/// Generalized UTF-8 of one code point (surrogates as 3 bytes).
pub(crate) fn wtf8(c: u32) -> Vec<u8> {
    match char::from_u32(c) {
        Some(ch) => ch.to_string().into_bytes(),
        None => vec![0xe0 | (c >> 12) as u8, 0x80 | ((c >> 6) & 0x3f) as u8, 0x80 | (c & 0x3f) as u8],
    }
}

pub(crate) fn check_size(n: u128) -> Result<(), PyException> {
    if n > MAX_REPEAT {
        return Err(PyException::memory_error("too many elements for the server"));
    }
    Ok(())
}

/// The elements of a `range` (as `range.__reduce__` or dill writes it).
pub(crate) fn range_elements(range: RangeCall) -> Result<Vec<StoredValue>, PyException> {
    let RangeCall::Bounds(start, _, step) = range else {
        return Err(PyException::type_error("'range' object is not iterable by the server"));
    };
    let n = range.len();
    check_size(n)?;
    let (start, step) = (start as i128, step as i128);
    Ok((0..n as i128).map(|i| synthesized(|w| w.int((start + i * step) as i64))).collect())
}

/// `__getslice__(i, j)`'s bounds as a slice: Python 2 has already added
/// `len` to negative bounds, so what is still negative means 0, and an
/// omitted stop is `sys.maxsize`.
pub(crate) fn python2_slice(d: &Decoded, args: &[NodeId]) -> Result<Index, PyException> {
    let bound = |n: NodeId| match int_arg(d, n) {
        Some(Ok(v)) => Ok(v.max(0)),
        Some(Err(negative)) => Ok(if negative { 0 } else { i64::MAX }),
        None => Err(PyException::type_error("slice indices must be integers")),
    };
    Ok(Index::Slice(Slice { start: Some(bound(args[0])?), stop: Some(bound(args[1])?), step: None }))
}

/// If node `id` is a proxy for an object of this server (`RebuildProxy`),
/// that object. CPython rebuilds such arguments as the referent (3.6/3.7)
/// or a proxy to it; constructors use this to copy from it.
pub(crate) fn proxied<'t>(d: &Decoded, id: NodeId, table: &'t ObjectTable) -> Option<&'t SharedObject> {
    let ident = crate::protocol::token::proxy_ident(d, id)?;
    let oid = table.parse_ident(ident)?;
    Some(&table.get(oid)?.object)
}

// ---------------------------------------------------------------------------
// Writing container pickles

/// The PROTO of a pickle embedding `items`: 4 (readable by 3.6 and 3.7),
/// unless an item itself declares more.
pub(crate) fn protocol_for<'a>(items: impl IntoIterator<Item = &'a Item>) -> u8 {
    items.into_iter().map(|i| declared_protocol(i)).max().unwrap_or(0).max(4)
}

/// Writes `[a, b, ...]` embedding the items.
pub(crate) fn write_list<'a>(w: &mut PickleWriter, items: impl IntoIterator<Item = &'a Item>) {
    w.empty_list();
    let mut n = 0;
    for item in items {
        if n % 1000 == 0 {
            if n > 0 {
                w.appends_from_mark();
            }
            w.mark();
        }
        w.embed(item);
        n += 1;
    }
    if n > 0 {
        w.appends_from_mark();
    }
}

/// A standalone pickle of the list of `items`.
pub(crate) fn list_pickle(items: &[&Item]) -> Item {
    let mut w = PickleWriter::new(protocol_for(items.iter().copied()));
    write_list(&mut w, items.iter().copied());
    w.finish().into()
}

/// A standalone pickle of the tuple of `items`.
pub(crate) fn tuple_pickle(items: &[&Item]) -> Item {
    let mut w = PickleWriter::new(protocol_for(items.iter().copied()));
    w.mark();
    for item in items {
        w.embed(item);
    }
    w.tuple_from_mark();
    w.finish().into()
}

/// Writes `{k: v, ...}` embedding the items.
pub(crate) fn write_dict<'a>(w: &mut PickleWriter, pairs: impl IntoIterator<Item = (&'a Item, &'a Item)>) {
    w.empty_dict();
    let mut n = 0;
    for (k, v) in pairs {
        if n % 1000 == 0 {
            if n > 0 {
                w.setitems_from_mark();
            }
            w.mark();
        }
        w.embed(k);
        w.embed(v);
        n += 1;
    }
    if n > 0 {
        w.setitems_from_mark();
    }
}

/// A standalone pickle of the dict of `pairs`.
pub(crate) fn dict_pickle(pairs: &[(&Item, &Item)]) -> Item {
    let mut w = PickleWriter::new(protocol_for(pairs.iter().flat_map(|(k, v)| [*k, *v])));
    write_dict(&mut w, pairs.iter().copied());
    w.finish().into()
}

