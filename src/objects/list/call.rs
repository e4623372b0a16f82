//! Reading a `list` call: the method and its arguments, checked with
//! CPython's signatures and messages, into a [`ListCall`] (before the
//! object is touched, and outside the core lock: `TypeInfo::parse`).

use crate::objects::sequence::*;
use crate::objects::value::{PyValue, StoredValue};
use crate::objects::{CallError, PendingCall};
use crate::pickle::NodeId;
use crate::protocol::{bind, is_truthy, PyException, Request};

/// A parsed list call. Values from the request are already cut out as
/// stored values (or views, for values only compared). `Clone`: the Redis
/// backend runs a call again on a newer copy when the list changed under
/// it (`backend/redis/list.rs`).
#[derive(Debug, Clone)]
pub enum ListCall {
    Add(Vec<StoredValue>),
    Contains(PyValue),
    DelItem(Index),
    GetItem(Index),
    Len,
    Mul(Repeat),
    IMul(Repeat),
    Reversed,
    SetItem(Index, Vec<StoredValue>),
    Append(Option<StoredValue>),
    Count(PyValue),
    Extend(Vec<StoredValue>),
    Index { value: PyValue, start: i64, stop: i64 },
    Insert(i64, Option<StoredValue>),
    Pop(Index),
    Remove(PyValue),
    Reverse,
    Sort { reverse: bool },
}


impl PendingCall for ListCall {}

/// The methods Python 2.7's ListProxy calls for `l[i:j]` and `del l[i:j]`,
/// served beside the exposed ones (not listed in `exposed`, which Python 3
/// clients see). `__setslice__` is not served: it stores, and storing
/// methods are the exposed ones.
pub const PYTHON2_SLICE_METHODS: &[&str] = &["__getslice__", "__delslice__"];

/// Reads `method(args, kwds)` with `list`'s signatures.
pub fn parse_call(req: &Request<'_, '_>) -> Result<ListCall, CallError> {
    let d = req.pickle;
    let mut budget = budget(d);
    let one = |name: &str| -> Result<NodeId, PyException> {
        let b = bind(req, name, ["value"], 1)?;
        Ok(b.0[0].expect("required"))
    };
    // Methods of C types take positional arguments only.
    let positional = |name: &str| -> Result<(), PyException> {
        if req.kwds.is_empty() { Ok(()) } else { Err(PyException::type_error(format!("{name}() takes no keyword arguments"))) }
    };
    let none = |name: &str| -> Result<(), PyException> {
        positional(name)?;
        if req.args.is_empty() {
            Ok(())
        } else {
            Err(PyException::type_error(format!("{name}() takes no arguments ({} given)", req.args.len())))
        }
    };
    let exactly = |name: &str, n: usize| -> Result<&[NodeId], PyException> {
        positional(name)?;
        if req.args.len() == n {
            Ok(req.args)
        } else {
            Err(PyException::type_error(format!(
                "expected {n} argument{}, got {}",
                if n == 1 { "" } else { "s" },
                req.args.len()
            )))
        }
    };
    Ok(match req.method {
        "__add__" => {
            let v = exactly("__add__", 1)?[0];
            match d.as_list(v) {
                Some(ids) => ListCall::Add(ids.iter().map(|&c| StoredValue::from_node_in(d, c, &mut budget)).collect()),
                None => {
                    return Err(PyException::type_error(format!(
                        "can only concatenate list (not \"{}\") to list",
                        node_type_name(d, v)
                    ))
                    .into());
                }
            }
        }
        "__contains__" => ListCall::Contains(PyValue::from_node(d, exactly("__contains__", 1)?[0])),
        "__delitem__" => ListCall::DelItem(index_arg(d, exactly("__delitem__", 1)?[0])?),
        "__getitem__" => ListCall::GetItem(index_arg(d, exactly("__getitem__", 1)?[0])?),
        // Python 2.7's ListProxy: `l[i:j]` and `del l[i:j]` (see PYTHON2_SLICE_METHODS).
        "__getslice__" => ListCall::GetItem(python2_slice(d, exactly("__getslice__", 2)?)?),
        "__delslice__" => ListCall::DelItem(python2_slice(d, exactly("__delslice__", 2)?)?),
        "__len__" => {
            exactly("__len__", 0)?;
            ListCall::Len
        }
        "__mul__" | "__rmul__" => ListCall::Mul(repeat_arg(d, exactly(req.method, 1)?[0])?),
        "__imul__" => ListCall::IMul(repeat_arg(d, exactly("__imul__", 1)?[0])?),
        "__reversed__" => {
            none("__reversed__")?;
            ListCall::Reversed
        }
        "__setitem__" => {
            let args = exactly("__setitem__", 2)?;
            let index = index_arg(d, args[0])?;
            let values = match index {
                Index::Slice(s) => match iterate(d, args[1], &mut budget) {
                    Ok(v) => v,
                    Err(_) if s.step.is_some_and(|x| x != 1) => {
                        return Err(PyException::type_error("must assign iterable to extended slice").into());
                    }
                    Err(_) => return Err(PyException::type_error("can only assign an iterable").into()),
                },
                _ => vec![StoredValue::from_node_in(d, args[1], &mut budget)],
            };
            ListCall::SetItem(index, values)
        }
        "append" => {
            positional("list.append")?;
            if req.args.len() != 1 {
                return Err(PyException::type_error(format!(
                    "list.append() takes exactly one argument ({} given)",
                    req.args.len()
                ))
                .into());
            }
            ListCall::Append(Some(StoredValue::from_node(d, req.args[0])))
        }
        "count" => {
            positional("list.count")?;
            ListCall::Count(PyValue::from_node(d, one("count")?))
        }
        "extend" => {
            positional("list.extend")?;
            ListCall::Extend(iterate(d, one("extend")?, &mut budget)?)
        }
        "index" => {
            positional("list.index")?;
            let n = req.args.len();
            if !(1..=3).contains(&n) {
                return Err(PyException::type_error(if n == 0 {
                    "index expected at least 1 argument, got 0".to_string()
                } else {
                    format!("index expected at most 3 arguments, got {n}")
                })
                .into());
            }
            let start = req.args.get(1).map(|&a| clamped_arg(d, a)).transpose()?.unwrap_or(0);
            let stop = req.args.get(2).map(|&a| clamped_arg(d, a)).transpose()?.unwrap_or(i64::MAX);
            ListCall::Index { value: PyValue::from_node(d, req.args[0]), start, stop }
        }
        "insert" => {
            positional("list.insert")?;
            if req.args.len() != 2 {
                return Err(PyException::type_error(format!("insert expected 2 arguments, got {}", req.args.len())).into());
            }
            ListCall::Insert(ssize_arg(d, req.args[0])?, Some(StoredValue::from_node(d, req.args[1])))
        }
        "pop" => {
            positional("list.pop")?;
            match req.args {
                [] => ListCall::Pop(Index::Int(-1)),
                [i] => match int_arg(d, *i) {
                    Some(Ok(i)) => ListCall::Pop(Index::Int(i)),
                    Some(Err(_)) => ListCall::Pop(Index::Huge),
                    None => {
                        return Err(PyException::type_error(format!(
                            "'{}' object cannot be interpreted as an integer",
                            node_type_name(d, *i)
                        ))
                        .into());
                    }
                },
                _ => {
                    return Err(
                        PyException::type_error(format!("pop expected at most 1 argument, got {}", req.args.len())).into()
                    );
                }
            }
        }
        "remove" => {
            positional("list.remove")?;
            ListCall::Remove(PyValue::from_node(d, one("remove")?))
        }
        "reverse" => {
            none("list.reverse")?;
            ListCall::Reverse
        }
        "sort" => {
            if !req.args.is_empty() {
                return Err(PyException::type_error("sort() takes no positional arguments").into());
            }
            let b = bind(req, "sort", ["key", "reverse"], 0)?;
            if let Some(key) = b.0[0].filter(|&k| !d.is_none(k)) {
                // The server cannot call functions: a key function would
                // run in CPython's server; here it is refused.
                let name = match d.as_global(key) {
                    Some((m, n)) => format!("{m}.{n}"),
                    None => node_type_name(d, key),
                };
                return Err(PyException::type_error(format!(
                    "sort() with a key function is not supported by fastmanager (the server cannot call {name}); \
                     sort a copy in the client instead"
                ))
                .into());
            }
            let reverse = match b.0[1] {
                None => false,
                Some(r) => match int_arg(d, r) {
                    Some(Ok(i)) => i != 0,
                    Some(Err(_)) => true,
                    None if d.is_none(r) => {
                        return Err(PyException::type_error("'NoneType' object cannot be interpreted as an integer").into());
                    }
                    None => is_truthy(d, r),
                },
            };
            ListCall::Sort { reverse }
        }
        _ => return Err(CallError::NotExposed),
    })
}
