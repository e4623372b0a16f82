//! Python values held by the server: the model behind `dict`, `list`,
//! `Namespace`, `Value` and `Array`.
//!
//! A stored value is two things ([`StoredValue`]):
//! - the client's pickle bytes, cut out of the request as a standalone pickle
//!   ([`Item`]) and sent back verbatim: whatever the value is (a class
//!   instance, a numpy array), the client gets back exactly what it sent;
//! - a small decoded view ([`PyValue`]), built once at storage time, used for
//!   what the server itself must compute: dict keys ([`PyValue::key`]),
//!   comparisons ([`py_eq`], [`py_lt`], [`py_cmp`], [`sort_by_key`]) and
//!   `repr` ([`PyValue::repr`]), with CPython's semantics and wording.
//!
//! The view is an owned tree. Pickles are graphs, so two things need care:
//! - **Cycles.** A reference back to a container that encloses it (a list
//!   that contains itself) becomes [`PyValue::Recursive`], which prints as
//!   `[...]`/`{...}` the way CPython's reprs do for recursive containers.
//! - **Sharing.** A node referenced twice is copied twice, so a "billion
//!   laughs" pickle (lists of lists sharing one child) would expand
//!   exponentially. Building visits at most a budget of nodes (1,000,000,
//!   or the request's arena size if larger, see [`ViewBudget`]) and nesting
//!   at most [`MAX_DEPTH`] levels. Past either bound the whole value's view
//!   is an [`Opaque`] marker of kind [`OpaqueKind::TooLarge`] or
//!   [`OpaqueKind::TooDeep`]: still a key (by its pickle bytes, when its type
//!   is hashable) and still comparable for equality (same pickle bytes), but
//!   its `repr` and ordering raise `MemoryError` / `RecursionError`, which is
//!   what CPython would end up doing with such a value.
//!
//! Identity: CPython compares container elements with an identity shortcut
//! (`x is y or x == y`), which is visible for NaN (`[n] == [n]` is true for
//! one NaN object). Pickle preserves identity only for shared (memoized)
//! objects inside one pickle, so the view tags each NaN node and each
//! recursion target with an id unique to the stored object (see
//! [`PyValue::Float`], [`PyValue::Recursive`]); two values that came in
//! separately never share an id, as two unpickled objects never share
//! identity in CPython's server.
//!
//! What cannot be modelled without running code is [`Opaque`]: class
//! instances, REDUCE results and globals. They are compared and hashed by a
//! canonical fingerprint of what the pickle says about them (see
//! [`PyValue::key`]) and print as CPython's default `object.__repr__`.

mod build;
mod compare;
mod key;
mod printable;
mod repr;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::pickle::{Decoded, NodeId};
use crate::protocol::PyException;

use super::Item;

pub use build::{DEFAULT_BUDGET, MAX_DEPTH, ViewBudget};
pub use compare::{py_cmp, py_eq, py_lt, sort_by_key, type_name};
pub use key::DictKey;
pub use repr::{bytes_repr, float_repr, str_repr};

/// A value as the server holds it: the client's pickle plus a decoded view.
#[derive(Debug, Clone)]
pub struct StoredValue {
    pickle: Item,
    view: PyValue,
}

impl StoredValue {
    /// Stores node `id` of a request: cuts it out as a standalone pickle
    /// (protocol 4 at most, so 3.6/3.7 clients can read it back) and builds
    /// its view with a fresh [`ViewBudget::for_request`].
    pub fn from_node(d: &Decoded, id: NodeId) -> StoredValue {
        StoredValue::from_node_in(d, id, &mut ViewBudget::for_request(d))
    }

    /// Like [`StoredValue::from_node`], charging the view to `budget`, so
    /// that all items of one request share a single bound (a request whose
    /// items all reference one shared structure cannot cost `items × budget`).
    pub fn from_node_in(d: &Decoded, id: NodeId, budget: &mut ViewBudget) -> StoredValue {
        let pickle: Item = d.standalone_max(id, 4).into();
        let view = build::build_view(d, id, budget, Some(&pickle));
        StoredValue { pickle, view }
    }

    /// A value read back from the data dir (issue 16): the pickle the
    /// object held, with its view built again. The limits are generous:
    /// the pickle passed the server's own when a client sent it.
    pub fn from_pickle(pickle: Item) -> Result<StoredValue, String> {
        let limits = crate::pickle::DecodeLimits { max_depth: 100_000, max_memo: usize::MAX, max_nodes: usize::MAX };
        let view = {
            let d = crate::pickle::decode(&pickle, &limits).map_err(|e| format!("a logged value does not unpickle: {e}"))?;
            build::build_view(&d, d.root(), &mut ViewBudget::for_request(&d), Some(&pickle))
        };
        Ok(StoredValue { pickle, view })
    }

    /// The standalone pickle, to be embedded in replies as is.
    pub fn pickle(&self) -> &Item {
        &self.pickle
    }

    /// The decoded view.
    pub fn view(&self) -> &PyValue {
        &self.view
    }

    pub fn into_parts(self) -> (Item, PyValue) {
        (self.pickle, self.view)
    }

    /// `hash`/`==` identity of the value as a dict key (see [`PyValue::key`]).
    pub fn key(&self) -> Result<DictKey, PyException> {
        self.view.key()
    }

    /// `repr(value)` (see [`PyValue::repr`]).
    pub fn repr(&self) -> Result<String, PyException> {
        self.view.repr()
    }
}

/// A Python `str`: UTF-8 that may also hold lone surrogates, encoded as
/// 3-byte sequences the way CPython's `surrogatepass` writes them
/// (generalized UTF-8). Byte order is code point order, as Python compares
/// strings, and equal strings have equal bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PyStr(Box<[u8]>);

impl PyStr {
    /// A string without surrogates.
    pub fn new(s: &str) -> PyStr {
        PyStr(s.as_bytes().into())
    }

    /// Generalized UTF-8 bytes, as `Node::StrSurrogates` holds them. The
    /// caller guarantees validity (the decoder checked them).
    pub(crate) fn from_wtf8(b: &[u8]) -> PyStr {
        PyStr(b.into())
    }

    /// The text, if it has no lone surrogates.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Generalized UTF-8 bytes (what pickle's BINUNICODE carries).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The code points, surrogates included.
    pub fn code_points(&self) -> impl Iterator<Item = u32> + '_ {
        let b = &self.0;
        let mut i = 0;
        std::iter::from_fn(move || {
            let first = *b.get(i)? as u32;
            let (len, init) = match first {
                0x00..=0x7f => (1, first),
                0xc0..=0xdf => (2, first & 0x1f),
                0xe0..=0xef => (3, first & 0x0f),
                _ => (4, first & 0x07),
            };
            let end = (i + len).min(b.len());
            let c = b[i + 1..end].iter().fold(init, |acc, &x| (acc << 6) | (x as u32 & 0x3f));
            i = end;
            Some(c)
        })
    }
}

/// The container kinds a [`PyValue::Recursive`] marker can point back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Container {
    Tuple,
    List,
    Dict,
    Set,
    FrozenSet,
}

impl Container {
    /// The Python type name.
    pub fn name(self) -> &'static str {
        match self {
            Container::Tuple => "tuple",
            Container::List => "list",
            Container::Dict => "dict",
            Container::Set => "set",
            Container::FrozenSet => "frozenset",
        }
    }
}

/// A decoded Python value: the server's view of a stored item.
///
/// Deliberately not `PartialEq`: Python's `==` is [`py_eq`] (`1 == 1.0`,
/// NaN unequal to itself), and dict-key identity is [`PyValue::key`].
#[derive(Debug, Clone)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    /// An int outside `i64`: minimal little-endian two's complement (never
    /// a value that fits in `i64`, as `Node::BigInt`).
    BigInt(Box<[u8]>),
    /// A float. A NaN's payload bits are replaced by an identity tag unique
    /// to that NaN object (see the module docs): bit-equal NaNs are the same
    /// Python object. The payload of a NaN never shows in `repr` (`nan`).
    Float(f64),
    Str(PyStr),
    Bytes(Box<[u8]>),
    ByteArray(Box<[u8]>),
    Tuple(Box<[PyValue]>),
    List(Box<[PyValue]>),
    /// Entries in insertion order, keys unique (duplicates in the pickle are
    /// merged as CPython's SETITEMS would: first key object, last value;
    /// "duplicate" as [`PyValue::key`] decides, so instances with equal
    /// content merge where CPython, comparing them by identity, would not).
    Dict(Box<[(PyValue, PyValue)]>),
    /// Elements in the order the pickle listed them (the client's iteration
    /// order), unique.
    Set(Box<[PyValue]>),
    FrozenSet(Box<[PyValue]>),
    /// A reference back to an enclosing container of kind `kind`; `id`
    /// identifies that container object (equal ids: the same object).
    Recursive { kind: Container, id: u64 },
    /// Something that cannot be evaluated without running code, or a value
    /// too large or deep to view.
    Opaque(Box<Opaque>),
}

/// A value the server does not interpret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Opaque {
    pub kind: OpaqueKind,
    /// The class (for instances) or the global's module and qualified name.
    /// For [`OpaqueKind::TooLarge`]/[`OpaqueKind::TooDeep`] the type of the
    /// value (`builtins`, `list`...).
    pub module: Box<str>,
    pub name: Box<str>,
    /// What makes two opaque values equal: a canonical encoding of
    /// everything the pickle says about the object (tag `I`), the global's
    /// name (tag `G`), or the standalone pickle bytes (tag `P`) for values
    /// too large to view.
    pub fingerprint: Arc<[u8]>,
    /// For [`OpaqueKind::Proxy`], the token's typeid (`'list'`), which
    /// CPython's proxy repr shows; `None` otherwise.
    pub typeid: Option<Box<str>>,
}

/// Why a value is [`Opaque`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpaqueKind {
    /// A module attribute by name: a class, a function, `Ellipsis`...
    Global,
    /// An object made by calling something (REDUCE, NEWOBJ, OBJ, INST).
    Instance,
    /// A proxy to a shared object (`RebuildProxy(...)`); `name` is its
    /// class as CPython names it (`ListProxy`, `AutoProxy[get_task]`).
    Proxy,
    /// Viewing it would visit more nodes than the budget allows.
    TooLarge,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl PyValue {
    /// The view of node `id`, with a fresh [`ViewBudget::for_request`]. For
    /// values that are looked at but not stored (a lookup key, the argument
    /// of `list.index`).
    pub fn from_node(d: &Decoded, id: NodeId) -> PyValue {
        build::build_view(d, id, &mut ViewBudget::for_request(d), None)
    }

    /// Like [`PyValue::from_node`], charging `budget`.
    pub fn from_node_in(d: &Decoded, id: NodeId, budget: &mut ViewBudget) -> PyValue {
        build::build_view(d, id, budget, None)
    }

    /// A `str` value.
    pub fn str(s: &str) -> PyValue {
        PyValue::Str(PyStr::new(s))
    }

    /// The opaque marker, if this is one.
    pub fn as_opaque(&self) -> Option<&Opaque> {
        match self {
            PyValue::Opaque(o) => Some(o),
            _ => None,
        }
    }
}

