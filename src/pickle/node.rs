//! The decoded form of a pickle: an arena of [`Node`]s addressed by
//! [`NodeId`].
//!
//! An arena (rather than a tree of owned values) is what lets the decoder
//! represent what pickles really contain: shared references (`[a, a]` is one
//! node referenced twice, so `x[0] is x[1]` survives a round trip) and cycles
//! (a list that contains itself). Nothing here is ever imported or called:
//! globals, REDUCE and BUILD are recorded as data.

use std::borrow::Cow;

use super::text;

/// Index of a node in [`Decoded`]'s arena.
pub type NodeId = u32;

/// The children of a tuple, list or set. Up to four are held inline: a
/// request is a 4-tuple and its arguments are usually a short tuple, so
/// decoding one allocates nothing for them (two allocations per request
/// were these). Inline or not, it is 24 bytes, so `Node` stays 32.
pub type Items = smallvec::SmallVec<[NodeId; 4]>;

// The arena's size per node, checked when compiling.
const _: () = assert!(std::mem::size_of::<Node>() == 32);

/// One Python value as the pickle described it.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    None,
    Bool(bool),
    Int(i64),
    /// An int that does not fit in `i64`: minimal little-endian two's complement.
    BigInt(Box<[u8]>),
    Float(f64),
    Str(Cow<'a, str>),
    /// A `str` with lone surrogates, as UTF-8 bytes with the surrogates
    /// encoded like CPython's `surrogatepass` (not valid Rust UTF-8).
    StrSurrogates(Cow<'a, [u8]>),
    Bytes(Cow<'a, [u8]>),
    ByteArray(Cow<'a, [u8]>),
    /// A Python 2 `str` (STRING / BINSTRING / SHORT_BINSTRING). Python 3
    /// readers decode it with their `encoding` (ASCII by default).
    ByteString(Cow<'a, [u8]>),
    Tuple(Items),
    List(Items),
    /// Items in pickle order; duplicates are kept (a later one wins in Python).
    Dict(Vec<(NodeId, NodeId)>),
    Set(Items),
    FrozenSet(Items),
    /// A module attribute referenced by name (class, function...).
    Global(Box<Global<'a>>),
    /// Anything built by calling: REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST.
    Object(Box<Object>),
}

/// `module.name`, as GLOBAL / STACK_GLOBAL / INST named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global<'a> {
    pub module: Cow<'a, str>,
    pub name: Cow<'a, str>,
}

/// How an [`Object`] is created when unpickled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `callable(*args)` (REDUCE).
    Reduce,
    /// `cls.__new__(cls, *args)` (NEWOBJ).
    NewObj,
    /// `cls.__new__(cls, *args, **kwargs)` (NEWOBJ_EX).
    NewObjEx,
    /// `cls(*args)`, or `cls.__new__(cls)` for a class and no args (OBJ, INST).
    Instantiate,
}

/// What happens to an object after it is created, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectOp {
    /// APPEND: `obj.append(x)`.
    Append(NodeId),
    /// APPENDS: `obj.extend(xs)` (or `append` each, if there is no `extend`).
    Extend(Vec<NodeId>),
    /// SETITEM / SETITEMS: `obj[k] = v`.
    SetItem(NodeId, NodeId),
    /// ADDITEMS: `obj.add(x)` for each.
    AddItems(Vec<NodeId>),
    /// BUILD: `obj.__setstate__(state)` or `__dict__` update.
    Build(NodeId),
}

/// A constructed object: the call that creates it and what is done to it after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub kind: ObjectKind,
    /// The class or function (usually a [`Node::Global`]).
    pub callable: NodeId,
    /// The positional arguments (a tuple node for every kind the decoder makes).
    pub args: NodeId,
    /// NEWOBJ_EX's keyword arguments.
    pub kwargs: Option<NodeId>,
    pub ops: Vec<ObjectOp>,
}

impl Object {
    /// The state of the last BUILD, if any (what `__setstate__` receives).
    pub fn state(&self) -> Option<NodeId> {
        self.ops.iter().rev().find_map(|op| match op {
            ObjectOp::Build(s) => Some(*s),
            _ => None,
        })
    }
}

/// A decoded pickle. Borrows the source so strings and bytes are not copied,
/// and so items can be cut out of it verbatim ([`Decoded::standalone`]).
#[derive(Debug)]
pub struct Decoded<'a> {
    pub(crate) src: &'a [u8],
    pub(crate) nodes: Vec<Node<'a>>,
    pub(crate) root: NodeId,
    pub(crate) protocol: u8,
    /// Where in `src` a node was built: opcodes `[start, end)` that, run on an
    /// empty stack, push exactly this node (given the memo entries they PUT
    /// themselves). Only recorded for nodes worth splicing.
    /// Indexed by node; `NO_SPAN` where nothing was recorded.
    pub(crate) spans: Vec<(u32, u32)>,
    /// The memo index each MEMOIZE assigned, by opcode offset (ascending).
    pub(crate) memoize_at: Vec<(usize, u32)>,
}

/// The arena's vectors serve the next decode on this thread.
impl Drop for Decoded<'_> {
    fn drop(&mut self) {
        super::workspace::Workspace::give_arena(
            std::mem::take(&mut self.nodes),
            std::mem::take(&mut self.spans),
            std::mem::take(&mut self.memoize_at),
        );
    }
}

impl<'a> Decoded<'a> {
    /// The value the pickle's STOP returned.
    pub fn root(&self) -> NodeId {
        self.root
    }

    pub fn node(&self, id: NodeId) -> &Node<'a> {
        &self.nodes[id as usize]
    }

    /// Number of nodes in the arena.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The PROTO the pickle declared (0 if it had none: protocols 0 and 1).
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// The source bytes this was decoded from.
    pub fn source(&self) -> &'a [u8] {
        self.src
    }

    /// `str` value. A Python 2 string counts when it is ASCII, since that is
    /// what a Python 3 reader turns it into by default.
    pub fn as_str(&self, id: NodeId) -> Option<&str> {
        match self.node(id) {
            Node::Str(s) => Some(s),
            Node::ByteString(b) if b.is_ascii() => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// `int` value that fits in `i64`; `bool` counts, as in Python.
    pub fn as_int(&self, id: NodeId) -> Option<i64> {
        match self.node(id) {
            Node::Int(i) => Some(*i),
            Node::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// `float` value; ints (and bools) convert like Python's `float(x)`.
    pub fn as_float(&self, id: NodeId) -> Option<f64> {
        match self.node(id) {
            Node::Float(f) => Some(*f),
            Node::Int(i) => Some(*i as f64),
            Node::Bool(b) => Some(*b as i64 as f64),
            Node::BigInt(b) => Some(text::bigint_to_f64(b)),
            _ => None,
        }
    }

    /// Only a real `bool`; see [`Decoded::truthy`] for Python truthiness.
    pub fn as_bool(&self, id: NodeId) -> Option<bool> {
        match self.node(id) {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Python truthiness where it does not depend on running code: `None`
    /// for objects (their `__bool__`/`__len__` is unknown).
    pub fn truthy(&self, id: NodeId) -> Option<bool> {
        Some(match self.node(id) {
            Node::None => false,
            Node::Bool(b) => *b,
            Node::Int(i) => *i != 0,
            Node::BigInt(_) => true,
            Node::Float(f) => *f != 0.0,
            Node::Str(s) => !s.is_empty(),
            Node::StrSurrogates(b) | Node::Bytes(b) | Node::ByteArray(b) | Node::ByteString(b) => {
                !b.is_empty()
            }
            Node::Tuple(v) | Node::List(v) | Node::Set(v) | Node::FrozenSet(v) => !v.is_empty(),
            Node::Dict(v) => !v.is_empty(),
            Node::Global(_) => true,
            Node::Object(_) => return None,
        })
    }

    pub fn is_none(&self, id: NodeId) -> bool {
        matches!(self.node(id), Node::None)
    }

    pub fn as_tuple(&self, id: NodeId) -> Option<&[NodeId]> {
        match self.node(id) {
            Node::Tuple(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_list(&self, id: NodeId) -> Option<&[NodeId]> {
        match self.node(id) {
            Node::List(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_dict(&self, id: NodeId) -> Option<&[(NodeId, NodeId)]> {
        match self.node(id) {
            Node::Dict(v) => Some(v),
            _ => None,
        }
    }

    /// `bytes` value (not bytearray).
    pub fn as_bytes(&self, id: NodeId) -> Option<&[u8]> {
        match self.node(id) {
            Node::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// `(module, name)` of a global reference, under the canonical name the
    /// server interprets (`multiprocess.managers.RebuildProxy` and
    /// `dill._dill._load_type('slice')` answer as the standard globals; see
    /// `known_globals.rs`).
    pub fn as_global(&self, id: NodeId) -> Option<(&str, &str)> {
        super::known_globals::canonical_global(&self.nodes, id)
    }

    /// The bounds of a `range` built by node `id` (`builtins.range(...)` or
    /// dill's `_eval_repr('range(...)')`), if it is one.
    pub fn as_range(&self, id: NodeId) -> Option<super::RangeCall> {
        super::known_globals::range_bounds(&self.nodes, id)
    }

    /// Whether the pickle names the global `module.name` anywhere (a
    /// walk over the nodes, not a scan of the bytes: a large `bytes`
    /// value costs nothing and cannot match by chance).
    pub fn names_global(&self, module: &str, name: &str) -> bool {
        (0..self.nodes.len() as NodeId)
            .filter(|&id| matches!(self.nodes[id as usize], Node::Global(_)))
            .any(|id| self.as_global(id) == Some((module, name)))
    }

    pub fn as_object(&self, id: NodeId) -> Option<&Object> {
        match self.node(id) {
            Node::Object(o) => Some(o),
            _ => None,
        }
    }
}
