//! Building a [`PyValue`] view from a decoded pickle node.
//!
//! The arena is a graph; the view is a tree. Walking the graph from the
//! item, a container already on the current path is a cycle and becomes
//! [`PyValue::Recursive`]; anything else is copied, so shared nodes appear
//! once per path that reaches them. That copying is what [`ViewBudget`]
//! bounds, together with [`MAX_DEPTH`] (memo GETs let a pickle nest far
//! deeper than its stack ever was). Past either, the view is an [`Opaque`]
//! marker for the whole value.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pickle::{Decoded, Node, NodeId, Object, ObjectKind, ObjectOp};

use super::{Container, DictKey, Opaque, OpaqueKind, PyStr, PyValue};

/// Nodes one view may visit, at least (see [`ViewBudget::for_request`]).
pub const DEFAULT_BUDGET: usize = 1_000_000;

/// Deepest container nesting a view follows. CPython's own pickler cannot
/// write deeper values (its recursion limit is 1000), and its `repr` and
/// comparisons of deeper ones raise `RecursionError`.
pub const MAX_DEPTH: usize = 1000;

/// How many more nodes views may visit. Each node reached (once per path
/// that reaches it) costs one; fingerprinting opaque objects counts too.
#[derive(Debug, Clone)]
pub struct ViewBudget {
    remaining: usize,
}

impl ViewBudget {
    pub fn new(nodes: usize) -> ViewBudget {
        ViewBudget { remaining: nodes }
    }

    /// [`DEFAULT_BUDGET`], or the request's arena size when larger: a value
    /// without shared references costs about one visit per node, and the
    /// decoder has already paid for the arena, so only expansion by sharing
    /// is refused.
    pub fn for_request(d: &Decoded) -> ViewBudget {
        ViewBudget::new(DEFAULT_BUDGET.max(d.len()))
    }

    pub fn remaining(&self) -> usize {
        self.remaining
    }

    fn take(&mut self) -> Result<(), Stop> {
        self.remaining = self.remaining.checked_sub(1).ok_or(Stop::TooLarge)?;
        Ok(())
    }
}

/// Why a view could not be built.
#[derive(Debug, Clone, Copy)]
enum Stop {
    TooLarge,
    TooDeep,
}

/// Identity tags (NaNs, recursion targets), unique in the process.
static NEXT_TAG: AtomicU64 = AtomicU64::new(1);

/// A quiet NaN whose payload is `tag` (51 bits): the NaN's identity.
pub(super) fn tagged_nan(tag: u64) -> f64 {
    f64::from_bits(0x7ff8_0000_0000_0000 | (tag & 0x0007_ffff_ffff_ffff))
}

/// The view of node `id`. `pickle` is its standalone pickle when the caller
/// already has it (the fingerprint of a value too large to view).
pub(super) fn build_view(
    d: &Decoded,
    id: NodeId,
    budget: &mut ViewBudget,
    pickle: Option<&[u8]>,
) -> PyValue {
    let mut b = Builder { d, budget, path: HashMap::new(), tags: HashMap::new() };
    match b.value(id) {
        Ok(v) => v,
        Err(stop) => fallback(d, id, stop, pickle),
    }
}

/// The marker that stands for a whole value that could not be viewed.
fn fallback(d: &Decoded, id: NodeId, stop: Stop, pickle: Option<&[u8]>) -> PyValue {
    let (module, name): (Box<str>, Box<str>) = match d.node(id) {
        Node::Object(o) => object_class(d, o),
        n => ("builtins".into(), node_type_name(n).into()),
    };
    let mut fingerprint = vec![b'P'];
    match pickle {
        Some(p) => fingerprint.extend_from_slice(p),
        None => fingerprint.extend(d.standalone_max(id, 4)),
    }
    let kind = match stop {
        Stop::TooLarge => OpaqueKind::TooLarge,
        Stop::TooDeep => OpaqueKind::TooDeep,
    };
    PyValue::Opaque(Box::new(Opaque { kind, module, name, fingerprint: fingerprint.into(), typeid: None }))
}

fn node_type_name(n: &Node) -> &'static str {
    match n {
        Node::Tuple(_) => "tuple",
        Node::List(_) => "list",
        Node::Dict(_) => "dict",
        Node::Set(_) => "set",
        Node::FrozenSet(_) => "frozenset",
        _ => "object",
    }
}

/// The class an object is an instance of, as far as the pickle says:
/// the NEWOBJ/OBJ class, or the REDUCE callable (`copyreg._reconstructor`
/// and `copyreg.__newobj__` name the class in their first argument).
/// `builtins.object` when the callable is not a global.
fn object_class(d: &Decoded, o: &Object) -> (Box<str>, Box<str>) {
    let callable = d.as_global(o.callable);
    let class = match (o.kind, callable) {
        (ObjectKind::Reduce, Some(("copyreg", "_reconstructor" | "__newobj__" | "__newobj_ex__"))) => {
            d.as_tuple(o.args).and_then(|a| a.first()).and_then(|&c| d.as_global(c))
        }
        (_, c) => c,
    };
    match class {
        Some((m, n)) => (m.into(), n.into()),
        None => ("builtins".into(), "object".into()),
    }
}

struct Builder<'r, 'a> {
    d: &'r Decoded<'a>,
    budget: &'r mut ViewBudget,
    /// Containers (and objects, when fingerprinting) on the current path,
    /// with their depth: reaching one again is a cycle.
    path: HashMap<NodeId, usize>,
    /// Identity tags given to nodes so far (NaNs, recursion targets).
    tags: HashMap<NodeId, u64>,
}

impl Builder<'_, '_> {
    fn tag(&mut self, id: NodeId) -> u64 {
        *self.tags.entry(id).or_insert_with(|| NEXT_TAG.fetch_add(1, Ordering::Relaxed))
    }

    /// Runs `f` with `id` on the path, unless that makes the path too deep.
    fn enter<T>(&mut self, id: NodeId, f: impl FnOnce(&mut Self) -> Result<T, Stop>) -> Result<T, Stop> {
        let depth = self.path.len();
        if depth >= MAX_DEPTH {
            return Err(Stop::TooDeep);
        }
        self.path.insert(id, depth);
        let r = f(self);
        self.path.remove(&id);
        r
    }

    fn value(&mut self, id: NodeId) -> Result<PyValue, Stop> {
        self.budget.take()?;
        let d = self.d;
        let kind = match d.node(id) {
            Node::Tuple(_) => Container::Tuple,
            Node::List(_) => Container::List,
            Node::Dict(_) => Container::Dict,
            Node::Set(_) => Container::Set,
            Node::FrozenSet(_) => Container::FrozenSet,
            leaf => return self.leaf(id, leaf),
        };
        if self.path.contains_key(&id) {
            return Ok(PyValue::Recursive { kind, id: self.tag(id) });
        }
        self.enter(id, |b| {
            Ok(match d.node(id) {
                Node::Tuple(v) => PyValue::Tuple(b.values(v)?),
                Node::List(v) => PyValue::List(b.values(v)?),
                Node::Dict(v) => PyValue::Dict(b.dict(v)?),
                Node::Set(v) => PyValue::Set(b.set(v)?),
                Node::FrozenSet(v) => PyValue::FrozenSet(b.set(v)?),
                _ => unreachable!("containers only"),
            })
        })
    }

    fn leaf(&mut self, id: NodeId, node: &Node) -> Result<PyValue, Stop> {
        Ok(match node {
            Node::None => PyValue::None,
            Node::Bool(b) => PyValue::Bool(*b),
            Node::Int(i) => PyValue::Int(*i),
            Node::BigInt(b) => PyValue::BigInt(b.clone()),
            Node::Float(f) if f.is_nan() => PyValue::Float(tagged_nan(self.tag(id))),
            Node::Float(f) => PyValue::Float(*f),
            Node::Str(s) => PyValue::Str(PyStr::new(s)),
            Node::StrSurrogates(b) => PyValue::Str(PyStr::from_wtf8(b)),
            Node::Bytes(b) => PyValue::Bytes(b.as_ref().into()),
            Node::ByteArray(b) => PyValue::ByteArray(b.as_ref().into()),
            // A Python 3 reader decodes Python 2 strings as ASCII; other
            // bytes only load with encoding='bytes' (or 'latin1', not modelled).
            Node::ByteString(b) => match std::str::from_utf8(b) {
                Ok(s) if b.is_ascii() => PyValue::Str(PyStr::new(s)),
                _ => PyValue::Bytes(b.as_ref().into()),
            },
            Node::Global(g) => {
                let mut fp = vec![b'G'];
                put_bytes(&mut fp, g.module.as_bytes());
                put_bytes(&mut fp, g.name.as_bytes());
                PyValue::Opaque(Box::new(Opaque {
                    kind: OpaqueKind::Global,
                    module: g.module.as_ref().into(),
                    name: g.name.as_ref().into(),
                    fingerprint: fp.into(),
                    typeid: None,
                }))
            }
            Node::Object(o) => {
                let mut fp = vec![b'I'];
                let base = self.path.len();
                self.fingerprint(id, base, &mut fp)?;
                // A stored proxy prints as the proxy CPython's server would
                // rebuild from it, not as a `RebuildProxy` instance.
                let (kind, (module, name), typeid) = match crate::protocol::token::proxy_class(self.d, id) {
                    Some((class, typeid)) => {
                        (OpaqueKind::Proxy, ("multiprocessing.managers".into(), class.into()), Some(typeid.into()))
                    }
                    None => (OpaqueKind::Instance, object_class(self.d, o), None),
                };
                PyValue::Opaque(Box::new(Opaque { kind, module, name, fingerprint: fp.into(), typeid }))
            }
            _ => unreachable!("containers are not leaves"),
        })
    }

    fn values(&mut self, ids: &[NodeId]) -> Result<Box<[PyValue]>, Stop> {
        ids.iter().map(|&i| self.value(i)).collect()
    }

    /// Entries merged as the unpickler's SETITEMS would: `d[k] = v` keeps
    /// the first equal key object and the last value. Unhashable keys
    /// (which CPython would refuse to unpickle) are kept as they are.
    fn dict(&mut self, entries: &[(NodeId, NodeId)]) -> Result<Box<[(PyValue, PyValue)]>, Stop> {
        let mut out: Vec<(PyValue, PyValue)> = Vec::with_capacity(entries.len());
        let mut index: HashMap<DictKey, usize> = HashMap::with_capacity(entries.len());
        for &(k, v) in entries {
            let (k, v) = (self.value(k)?, self.value(v)?);
            match k.key() {
                Ok(key) => match index.entry(key) {
                    Entry::Occupied(e) => out[*e.get()].1 = v,
                    Entry::Vacant(e) => {
                        e.insert(out.len());
                        out.push((k, v));
                    }
                },
                Err(_) => out.push((k, v)),
            }
        }
        Ok(out.into())
    }

    /// Elements merged as `set.add` would: the first equal element stays.
    fn set(&mut self, ids: &[NodeId]) -> Result<Box<[PyValue]>, Stop> {
        let mut out = Vec::with_capacity(ids.len());
        let mut seen: std::collections::HashSet<DictKey> = Default::default();
        for &i in ids {
            let v = self.value(i)?;
            let duplicate = v.key().is_ok_and(|key| !seen.insert(key));
            if !duplicate {
                out.push(v);
            }
        }
        Ok(out.into())
    }

    /// Appends a canonical encoding of node `id` and everything it refers
    /// to: the same for equal pickled content whatever the protocol, memo
    /// layout or framing. Back-references are encoded by distance on the
    /// path (`R`) when they stay inside the fingerprinted object (entered
    /// at depth `base`), and as `X` when they leave it.
    fn fingerprint(&mut self, id: NodeId, base: usize, out: &mut Vec<u8>) -> Result<(), Stop> {
        self.budget.take()?;
        let d = self.d;
        let node = d.node(id);
        let compound = matches!(
            node,
            Node::Tuple(_) | Node::List(_) | Node::Dict(_) | Node::Set(_) | Node::FrozenSet(_) | Node::Object(_)
        );
        if !compound {
            Self::fingerprint_leaf(node, out);
            return Ok(());
        }
        if let Some(&depth) = self.path.get(&id) {
            if depth >= base {
                out.push(b'R');
                put_len(out, self.path.len() - depth);
            } else {
                out.push(b'X');
            }
            return Ok(());
        }
        self.enter(id, |b| b.fingerprint_compound(node, base, out))
    }

    fn fingerprint_leaf(node: &Node, out: &mut Vec<u8>) {
        match node {
            Node::None => out.push(b'N'),
            Node::Bool(b) => out.push(if *b { b'T' } else { b'F' }),
            Node::Int(i) => {
                out.push(b'i');
                out.extend(i.to_le_bytes());
            }
            Node::BigInt(b) => tagged_bytes(out, b'l', b),
            Node::Float(f) => {
                out.push(b'f');
                out.extend(f.to_bits().to_le_bytes());
            }
            Node::Str(s) => tagged_bytes(out, b's', s.as_bytes()),
            Node::StrSurrogates(b) => tagged_bytes(out, b's', b),
            Node::Bytes(b) => tagged_bytes(out, b'b', b),
            Node::ByteArray(b) => tagged_bytes(out, b'a', b),
            Node::ByteString(b) => tagged_bytes(out, b'S', b),
            Node::Global(g) => {
                out.push(b'G');
                put_bytes(out, g.module.as_bytes());
                put_bytes(out, g.name.as_bytes());
            }
            _ => unreachable!("compound nodes are fingerprinted on the path"),
        }
    }

    fn fingerprint_compound(&mut self, node: &Node, base: usize, out: &mut Vec<u8>) -> Result<(), Stop> {
        let seq = |b: &mut Self, tag: u8, ids: &[NodeId], out: &mut Vec<u8>| {
            out.push(tag);
            put_len(out, ids.len());
            ids.iter().try_for_each(|&i| b.fingerprint(i, base, out))
        };
        match node {
            Node::Tuple(v) => seq(self, b't', v, out),
            Node::List(v) => seq(self, b'[', v, out),
            Node::Set(v) => seq(self, b'{', v, out),
            Node::FrozenSet(v) => seq(self, b'z', v, out),
            Node::Dict(v) => {
                out.push(b'd');
                put_len(out, v.len());
                v.iter().try_for_each(|&(k, x)| {
                    self.fingerprint(k, base, out)?;
                    self.fingerprint(x, base, out)
                })
            }
            Node::Object(o) => {
                out.push(b'O');
                out.push(o.kind as u8);
                self.fingerprint(o.callable, base, out)?;
                self.fingerprint(o.args, base, out)?;
                match o.kwargs {
                    None => out.push(b'-'),
                    Some(k) => self.fingerprint(k, base, out)?,
                }
                put_len(out, o.ops.len());
                for op in &o.ops {
                    match op {
                        ObjectOp::Append(x) => {
                            out.push(b'A');
                            self.fingerprint(*x, base, out)?;
                        }
                        ObjectOp::Extend(xs) => seq(self, b'E', xs, out)?,
                        ObjectOp::AddItems(xs) => seq(self, b'D', xs, out)?,
                        ObjectOp::SetItem(k, x) => {
                            out.push(b'S');
                            self.fingerprint(*k, base, out)?;
                            self.fingerprint(*x, base, out)?;
                        }
                        ObjectOp::Build(s) => {
                            out.push(b'B');
                            self.fingerprint(*s, base, out)?;
                        }
                    }
                }
                Ok(())
            }
            _ => unreachable!("leaves are fingerprinted directly"),
        }
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend((n as u64).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

fn tagged_bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    out.push(tag);
    put_bytes(out, b);
}
