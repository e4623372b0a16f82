//! The one table of globals the server interprets (slices, ranges, sets,
//! proxies, exceptions, arrays), under every name real picklers emit.
//!
//! The server reads a few globals in requests to do its job: `slice` to
//! index a list, `range` to extend one, `RebuildProxy` to keep a stored
//! proxy's referent alive. CPython 3 writes them as `builtins.slice` and
//! `multiprocessing.managers.RebuildProxy`, but real clients also send:
//! - CPython 2.7: `__builtin__.*`, `exceptions.*` (renamed by [`super::compat`]
//!   at decode time, as Python 3's unpickler does);
//! - dill (and so `multiprocess`, pathos): `dill._dill._load_type('slice')`
//!   for a builtin type and `dill._dill._eval_repr('range(0, 3)')` for a range;
//! - `multiprocess` (dill's fork of multiprocessing) and billiard (Celery's
//!   fork): their own `managers.RebuildProxy`, `AutoProxy` and `Token`;
//! - cloudpickle: the standard names (nothing to alias; tested all the same).
//!
//! Nodes keep the names the client wrote, so that an item re-encoded into a
//! reply still names the client's own classes (a `multiprocess` proxy stays
//! one); only [`Decoded::as_global`](super::Decoded::as_global) answers with
//! the canonical name, and that is what every interpreting caller uses.

use super::node::{Node, NodeId, ObjectKind};

/// `(name as emitted) -> (name the server interprets)`, for names that are
/// plain globals. Entries are tested one by one against the real library
/// (compat-tests/test_picklers.py).
static ALIASES: &[((&str, &str), (&str, &str))] = &[
    (("multiprocess.managers", "RebuildProxy"), ("multiprocessing.managers", "RebuildProxy")),
    (("multiprocess.managers", "AutoProxy"), ("multiprocessing.managers", "AutoProxy")),
    (("multiprocess.managers", "Token"), ("multiprocessing.managers", "Token")),
    (("billiard.managers", "RebuildProxy"), ("multiprocessing.managers", "RebuildProxy")),
    (("billiard.managers", "AutoProxy"), ("multiprocessing.managers", "AutoProxy")),
    (("billiard.managers", "Token"), ("multiprocessing.managers", "Token")),
];

/// dill's `_load_type(name)`: the builtin types it names this way that the
/// server interprets or prints (its table has more: those resolve to
/// `types.<name>`, which is what dill's `_reverse_typemap` holds for them).
const DILL_BUILTIN_TYPES: &[&str] = &[
    "slice", "range", "set", "frozenset", "bytearray", "bytes", "complex", "dict", "list", "tuple",
    "int", "float", "str", "bool", "object", "type", "memoryview", "property", "staticmethod",
    "classmethod", "super", "enumerate", "reversed", "zip", "map", "filter",
];

const DILL: &str = "dill._dill";

/// The canonical `(module, name)` that node `id` stands for, if it is a
/// global: a plain global (aliased through [`ALIASES`]), or a call that
/// only looks a global up (`dill._dill._load_type('slice')`).
pub(super) fn canonical_global<'n>(nodes: &'n [Node<'_>], id: NodeId) -> Option<(&'n str, &'n str)> {
    match nodes.get(id as usize)? {
        Node::Global(g) => {
            let key = (&*g.module, &*g.name);
            Some(ALIASES.iter().find(|(from, _)| *from == key).map_or(key, |(_, to)| *to))
        }
        Node::Object(o) if o.kind == ObjectKind::Reduce && o.ops.is_empty() => {
            let Node::Global(f) = nodes.get(o.callable as usize)? else { return None };
            if f.module != DILL || f.name != "_load_type" {
                return None;
            }
            let Node::Tuple(args) = nodes.get(o.args as usize)? else { return None };
            let [arg] = args.as_slice() else { return None };
            let Node::Str(name) = nodes.get(*arg as usize)? else { return None };
            let builtin = DILL_BUILTIN_TYPES.contains(&&**name)
                || name.ends_with("Error")
                || name.ends_with("Exception")
                || name.ends_with("Warning")
                || matches!(&**name, "StopIteration" | "KeyboardInterrupt" | "SystemExit" | "GeneratorExit");
            Some((if builtin { "builtins" } else { "types" }, name))
        }
        _ => None,
    }
}

/// `range(start, stop, step)` arguments if node `id` builds a range: a
/// REDUCE of `builtins.range` (as `range.__reduce__` writes it) or dill's
/// `_eval_repr('range(0, 3)')`. `None` for anything else, or for arguments
/// that are not small ints (the caller reports those).
pub(super) fn range_bounds(nodes: &[Node<'_>], id: NodeId) -> Option<RangeCall> {
    let Node::Object(o) = nodes.get(id as usize)? else { return None };
    if o.kind != ObjectKind::Reduce || !o.ops.is_empty() {
        return None;
    }
    let Node::Tuple(args) = nodes.get(o.args as usize)? else { return None };
    match canonical_global(nodes, o.callable)? {
        ("builtins", "range") => {
            let int = |i: usize| match nodes.get(*args.get(i)? as usize)? {
                Node::Int(v) => Some(*v),
                Node::Bool(b) => Some(*b as i64),
                _ => None,
            };
            Some(match (args.len(), int(0), int(1), int(2)) {
                (1, Some(stop), ..) => RangeCall::Bounds(0, stop, 1),
                (2, Some(a), Some(b), _) => RangeCall::Bounds(a, b, 1),
                (3, Some(a), Some(b), Some(c)) if c != 0 => RangeCall::Bounds(a, b, c),
                _ => RangeCall::Unreadable,
            })
        }
        (DILL, "_eval_repr") => {
            let [arg] = args.as_slice() else { return None };
            let Node::Str(text) = nodes.get(*arg as usize)? else { return None };
            let inner = text.strip_prefix("range(")?.strip_suffix(')')?;
            let parts: Option<Vec<i64>> = inner.split(',').map(|p| p.trim().parse().ok()).collect();
            Some(match parts.as_deref() {
                Some([stop]) => RangeCall::Bounds(0, *stop, 1),
                Some([a, b]) => RangeCall::Bounds(*a, *b, 1),
                Some([a, b, c]) if *c != 0 => RangeCall::Bounds(*a, *b, *c),
                _ => RangeCall::Unreadable,
            })
        }
        _ => None,
    }
}

/// What [`range_bounds`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeCall {
    /// `start, stop, step` (step is never 0).
    Bounds(i64, i64, i64),
    /// A range whose arguments the server cannot read (big ints, a bad repr).
    Unreadable,
}

impl RangeCall {
    /// How many elements the range has (0 for an unreadable one).
    pub fn len(self) -> u128 {
        let RangeCall::Bounds(start, stop, step) = self else { return 0 };
        let (start, stop, step) = (start as i128, stop as i128, step as i128);
        if step > 0 && start < stop {
            ((stop - start - 1) / step + 1) as u128
        } else if step < 0 && start > stop {
            ((start - stop - 1) / -step + 1) as u128
        } else {
            0
        }
    }
}
