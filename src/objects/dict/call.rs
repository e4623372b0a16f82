//! Reading a `dict` call: the method and its arguments, checked with
//! CPython's signatures and messages, into a [`DictCall`] (before the
//! object is touched, and outside the core lock: `TypeInfo::parse`);
//! `dict(...)`'s and `update(...)`'s arguments as pairs.

use crate::objects::sequence::{iterate, proxied, stored_str};
use crate::objects::value::{DictKey, PyValue, StoredValue, ViewBudget};
use crate::objects::{CallError, Item, ObjectTable, PendingCall, SharedObject};
use crate::pickle::{Decoded, Node, NodeId, ObjectOp};
use crate::protocol::{PyException, Request};

use super::Lookup;
#[derive(Debug)]
pub enum DictCall {
    Contains(DictKey),
    DelItem(Lookup),
    GetItem(Lookup),
    Iter,
    Len,
    SetItem(Option<(DictKey, StoredValue, StoredValue)>),
    Clear,
    Copy,
    Get(DictKey, Option<Item>),
    Items,
    Keys,
    Pop(Lookup, Option<Item>),
    PopItem,
    SetDefault(DictKey, StoredValue, Option<StoredValue>),
    Update(Vec<(DictKey, StoredValue, StoredValue)>),
    Values,
}

impl PendingCall for DictCall {}

fn key_of(d: &Decoded, id: NodeId, budget: &mut ViewBudget) -> Result<(DictKey, StoredValue), PyException> {
    let s = StoredValue::from_node_in(d, id, budget);
    Ok((s.key()?, s))
}

fn lookup(d: &Decoded, id: NodeId) -> Result<Lookup, PyException> {
    let (key, s) = key_of(d, id, &mut ViewBudget::for_request(d))?;
    Ok(Lookup { key, item: s.pickle().clone() })
}

/// The pairs of `dict(x)` / `d.update(x)`, in order (duplicates included;
/// a later one wins, as in CPython).
pub(crate) fn pairs_of(
    d: &Decoded,
    x: NodeId,
    budget: &mut ViewBudget,
) -> Result<Vec<(DictKey, StoredValue, StoredValue)>, PyException> {
    let mut out = Vec::new();
    let pair = |k: NodeId, v: NodeId, budget: &mut ViewBudget| -> Result<_, PyException> {
        let (key, ks) = key_of(d, k, budget)?;
        Ok((key, ks, StoredValue::from_node_in(d, v, budget)))
    };
    match d.node(x) {
        Node::Dict(pairs) => {
            for &(k, v) in pairs {
                out.push(pair(k, v, budget)?);
            }
        }
        // A mapping pickled with SETITEMS (OrderedDict, defaultdict, dict
        // subclasses): its items are in the ops.
        Node::Object(o) if o.ops.iter().any(|op| matches!(op, ObjectOp::SetItem(..))) => {
            for op in &o.ops {
                if let ObjectOp::SetItem(k, v) = op {
                    out.push(pair(*k, *v, budget)?);
                }
            }
        }
        _ => {
            let elements: Vec<NodeId> = match d.node(x) {
                Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v) => v.to_vec(),
                _ => {
                    // Other iterables (range, str...) yield non-pairs: let
                    // `iterate` report what is not iterable, then refuse
                    // the first element as CPython would.
                    let items = iterate(d, x, budget)?;
                    if items.is_empty() {
                        return Ok(out);
                    }
                    let len_or_not = match items[0].view() {
                        PyValue::Str(s) => Some(s.code_points().count()),
                        _ => None,
                    };
                    return Err(match len_or_not {
                        Some(n) => PyException::value_error(format!(
                            "dictionary update sequence element #0 has length {n}; 2 is required"
                        )),
                        None => PyException::type_error(
                            "cannot convert dictionary update sequence element #0 to a sequence",
                        ),
                    });
                }
            };
            for (i, &e) in elements.iter().enumerate() {
                match d.node(e) {
                    Node::List(kv) | Node::Tuple(kv) if kv.len() == 2 => out.push(pair(kv[0], kv[1], budget)?),
                    Node::List(kv) | Node::Tuple(kv) => {
                        return Err(PyException::value_error(format!(
                            "dictionary update sequence element #{i} has length {}; 2 is required",
                            kv.len()
                        )));
                    }
                    _ => {
                        let items = iterate(d, e, budget).map_err(|_| {
                            PyException::type_error(format!(
                                "cannot convert dictionary update sequence element #{i} to a sequence"
                            ))
                        })?;
                        if items.len() != 2 {
                            return Err(PyException::value_error(format!(
                                "dictionary update sequence element #{i} has length {}; 2 is required",
                                items.len()
                            )));
                        }
                        let mut it = items.into_iter();
                        let (k, v) = (it.next().expect("2"), it.next().expect("2"));
                        out.push((k.key()?, k, v));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `dict(*args, **kwds)` / `update(*args, **kwds)` arguments as pairs.
pub(super) fn update_pairs(
    req: &Request<'_, '_>,
    name: &str,
    table: Option<&ObjectTable>,
) -> Result<Vec<(DictKey, StoredValue, StoredValue)>, PyException> {
    let d = req.pickle;
    let mut budget = ViewBudget::for_request(d);
    if req.args.len() > 1 {
        return Err(PyException::type_error(format!("{name} expected at most 1 argument, got {}", req.args.len())));
    }
    let mut out = Vec::new();
    if let Some(&x) = req.args.first() {
        match table.and_then(|t| proxied(d, x, t)) {
            Some(SharedObject::Dict(other)) => out.extend(other.iter().cloned().map(|e| (e.key, e.k, e.v))),
            _ => out = pairs_of(d, x, &mut budget)?,
        }
    }
    for &(name, v) in &req.kwds {
        let k = stored_str(name.as_bytes());
        out.push((k.key()?, k, StoredValue::from_node_in(d, v, &mut budget)));
    }
    Ok(out)
}

fn exactly<'r>(req: &'r Request<'_, '_>, name: &str, n: usize) -> Result<&'r [NodeId], PyException> {
    if !req.kwds.is_empty() {
        return Err(PyException::type_error(format!("{name}() takes no keyword arguments")));
    }
    if req.args.len() != n {
        return Err(PyException::type_error(match n {
            0 => format!("{name}() takes no arguments ({} given)", req.args.len()),
            _ => format!("expected {n} argument{}, got {}", if n == 1 { "" } else { "s" }, req.args.len()),
        }));
    }
    Ok(req.args)
}

/// `name(a[, b])`: one required and one optional positional argument.
fn one_or_two<'r>(req: &'r Request<'_, '_>, name: &str) -> Result<&'r [NodeId], PyException> {
    if !req.kwds.is_empty() {
        return Err(PyException::type_error(format!("{name}() takes no keyword arguments")));
    }
    match req.args.len() {
        1 | 2 => Ok(req.args),
        0 => Err(PyException::type_error(format!("{name} expected at least 1 argument, got 0"))),
        n => Err(PyException::type_error(format!("{name} expected at most 2 arguments, got {n}"))),
    }
}

pub fn parse_call(req: &Request<'_, '_>) -> Result<DictCall, CallError> {
    let d = req.pickle;
    let item = |id: NodeId| -> Item { d.standalone_max(id, 4).into() };
    Ok(match req.method {
        "__contains__" => DictCall::Contains(lookup(d, exactly(req, "__contains__", 1)?[0])?.key),
        "__delitem__" => DictCall::DelItem(lookup(d, exactly(req, "__delitem__", 1)?[0])?),
        "__getitem__" => DictCall::GetItem(lookup(d, exactly(req, "__getitem__", 1)?[0])?),
        "__iter__" => {
            exactly(req, "__iter__", 0)?;
            DictCall::Iter
        }
        "__len__" => {
            exactly(req, "__len__", 0)?;
            DictCall::Len
        }
        "__setitem__" => {
            let args = exactly(req, "__setitem__", 2)?;
            let mut budget = ViewBudget::for_request(d);
            let (key, k) = key_of(d, args[0], &mut budget)?;
            DictCall::SetItem(Some((key, k, StoredValue::from_node_in(d, args[1], &mut budget))))
        }
        "clear" => {
            exactly(req, "dict.clear", 0)?;
            DictCall::Clear
        }
        "copy" => {
            exactly(req, "dict.copy", 0)?;
            DictCall::Copy
        }
        "get" => {
            let args = one_or_two(req, "get")?;
            DictCall::Get(lookup(d, args[0])?.key, args.get(1).map(|&a| item(a)))
        }
        "items" => {
            exactly(req, "dict.items", 0)?;
            DictCall::Items
        }
        "keys" => {
            exactly(req, "dict.keys", 0)?;
            DictCall::Keys
        }
        "values" => {
            exactly(req, "dict.values", 0)?;
            DictCall::Values
        }
        "pop" => {
            let args = one_or_two(req, "pop")?;
            DictCall::Pop(lookup(d, args[0])?, args.get(1).map(|&a| item(a)))
        }
        "popitem" => {
            exactly(req, "dict.popitem", 0)?;
            DictCall::PopItem
        }
        "setdefault" => {
            let args = one_or_two(req, "setdefault")?;
            let mut budget = ViewBudget::for_request(d);
            let (key, k) = key_of(d, args[0], &mut budget)?;
            DictCall::SetDefault(key, k, args.get(1).map(|&a| StoredValue::from_node_in(d, a, &mut budget)))
        }
        "update" => DictCall::Update(update_pairs(req, "update", None)?),
        _ => return Err(CallError::NotExposed),
    })
}
