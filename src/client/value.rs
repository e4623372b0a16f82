//! Python values as a Rust client sees them, and their pickles.
//!
//! Plain data (None, bool, int, float, str, bytes, list, tuple, dict)
//! becomes [`PyValue`] variants a Rust program can match on. Anything else
//! — class instances, sets, big ints, proxies — stays a [`RawPickle`]: a
//! standalone pickle cut out of the reply by the crate's own decoder, which
//! can be put back into any queue unchanged, so a Rust worker can move
//! values it does not understand between Python programs without losing
//! them. A value whose parts are shared or cyclic (`[x, x]`, a list that
//! contains itself) is kept whole as one raw pickle, since a Rust tree
//! would silently turn one object into copies.

use std::collections::HashSet;
use std::fmt;

use crate::pickle::{decode, DecodeLimits, Decoded, Node, NodeId, ObjectOp, PickleWriter};

use super::error::{ClientError, Result};

/// Items per APPENDS / SETITEMS batch, as pickle.py writes them.
const BATCH: usize = 1000;
/// Containers nested deeper than this in a reply are kept as raw pickles
/// rather than converted recursively.
const MAX_CONVERT_DEPTH: usize = 256;

/// A Python value.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<PyValue>),
    Tuple(Vec<PyValue>),
    /// Items in order (Python dicts keep insertion order); keys are not
    /// deduplicated here, the server or the receiving Python does that.
    Dict(Vec<(PyValue, PyValue)>),
    /// Any other object, as a standalone pickle.
    Raw(RawPickle),
}

/// A complete pickle (PROTO ... STOP) of one value, checked by the decoder.
#[derive(Clone, PartialEq, Eq)]
pub struct RawPickle(Vec<u8>);

impl RawPickle {
    /// Takes the bytes of `pickle.dumps(obj)` (any protocol from 2 to 5).
    /// The pickle is decoded (never run) to check it, and re-cut as a
    /// standalone item: no FRAMEs, compact memo indices.
    pub fn new(pickle: &[u8]) -> Result<RawPickle> {
        let decoded = decode(pickle, &DecodeLimits::default())?;
        Ok(RawPickle(decoded.standalone(decoded.root())))
    }

    /// The pickle bytes (`pickle.loads` in Python gives the object back).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The protocol the pickle declares (a request carrying it must declare at least this).
    fn protocol(&self) -> u8 {
        crate::pickle::declared_protocol(&self.0)
    }
}

impl fmt::Debug for RawPickle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawPickle({} bytes)", self.0.len())
    }
}

impl PyValue {
    pub fn bytes(b: impl Into<Vec<u8>>) -> PyValue {
        PyValue::Bytes(b.into())
    }

    pub fn tuple(items: impl IntoIterator<Item = PyValue>) -> PyValue {
        PyValue::Tuple(items.into_iter().collect())
    }

    pub fn list(items: impl IntoIterator<Item = PyValue>) -> PyValue {
        PyValue::List(items.into_iter().collect())
    }

    pub fn dict(items: impl IntoIterator<Item = (PyValue, PyValue)>) -> PyValue {
        PyValue::Dict(items.into_iter().collect())
    }

    /// A value given as `pickle.dumps(obj)` bytes.
    pub fn raw(pickle: &[u8]) -> Result<PyValue> {
        RawPickle::new(pickle).map(PyValue::Raw)
    }

    pub fn is_none(&self) -> bool {
        matches!(self, PyValue::None)
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            PyValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// An int; a bool counts, as in Python.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            PyValue::Int(i) => Some(*i),
            PyValue::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// A float; ints convert as Python's `float(x)` does.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            PyValue::Float(f) => Some(*f),
            other => other.as_int().map(|i| i as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            PyValue::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The items of a list or a tuple.
    pub fn as_seq(&self) -> Option<&[PyValue]> {
        match self {
            PyValue::List(v) | PyValue::Tuple(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&[(PyValue, PyValue)]> {
        match self {
            PyValue::Dict(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_raw(&self) -> Option<&RawPickle> {
        match self {
            PyValue::Raw(r) => Some(r),
            _ => None,
        }
    }

    /// The value for `key` in a dict (the last one, as Python keeps).
    pub fn get(&self, key: &PyValue) -> Option<&PyValue> {
        self.as_dict()?.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// This value as a standalone pickle (what `pickle.dumps` would give).
    pub fn to_pickle(&self) -> Vec<u8> {
        let mut w = PickleWriter::new(self.protocol().max(4));
        self.write(&mut w);
        w.finish()
    }

    /// Decodes a standalone pickle: plain data becomes variants, anything
    /// else [`PyValue::Raw`]. Nothing the pickle names is imported or called.
    pub fn from_pickle(pickle: &[u8]) -> Result<PyValue> {
        let decoded = decode(pickle, &DecodeLimits::default())?;
        Ok(PyValue::from_node(&decoded, decoded.root()))
    }

    /// The highest pickle protocol a raw value inside needs.
    pub(crate) fn protocol(&self) -> u8 {
        match self {
            PyValue::Raw(r) => r.protocol(),
            PyValue::List(v) | PyValue::Tuple(v) => v.iter().map(PyValue::protocol).max().unwrap_or(0),
            PyValue::Dict(v) => v.iter().map(|(k, x)| k.protocol().max(x.protocol())).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// Writes the opcodes that push this value (no memo: values are trees).
    pub(crate) fn write(&self, w: &mut PickleWriter) {
        match self {
            PyValue::None => w.none(),
            PyValue::Bool(b) => w.bool(*b),
            PyValue::Int(i) => w.int(*i),
            PyValue::Float(f) => w.float(*f),
            PyValue::Str(s) => w.str(s),
            PyValue::Bytes(b) => w.bytes(b),
            PyValue::Raw(r) => w.embed(r.as_bytes()),
            PyValue::Tuple(items) => write_tuple(w, items),
            PyValue::List(items) => {
                w.empty_list();
                for batch in items.chunks(BATCH) {
                    w.mark();
                    batch.iter().for_each(|v| v.write(w));
                    w.appends_from_mark();
                }
            }
            PyValue::Dict(items) => {
                w.empty_dict();
                for batch in items.chunks(BATCH) {
                    w.mark();
                    for (k, v) in batch {
                        k.write(w);
                        v.write(w);
                    }
                    w.setitems_from_mark();
                }
            }
        }
    }

    /// Converts one node of a decoded reply.
    pub(crate) fn from_node(d: &Decoded<'_>, id: NodeId) -> PyValue {
        if shares_references(d, id) { raw_node(d, id) } else { convert(d, id, 0) }
    }
}

pub(crate) fn write_tuple(w: &mut PickleWriter, items: &[PyValue]) {
    match items {
        [] => w.empty_tuple(),
        [a] => {
            a.write(w);
            w.tuple1();
        }
        [a, b] => {
            a.write(w);
            b.write(w);
            w.tuple2();
        }
        [a, b, c] => {
            a.write(w);
            b.write(w);
            c.write(w);
            w.tuple3();
        }
        many => {
            w.mark();
            many.iter().for_each(|v| v.write(w));
            w.tuple_from_mark();
        }
    }
}

/// Plain-data conversion, for a value whose graph is a tree (see
/// [`shares_references`]). Objects, sets and the like are kept raw one by one.
fn convert(d: &Decoded<'_>, id: NodeId, depth: usize) -> PyValue {
    let each = |ids: &[NodeId]| ids.iter().map(|&i| convert(d, i, depth + 1)).collect();
    match d.node(id) {
        Node::None => PyValue::None,
        Node::Bool(b) => PyValue::Bool(*b),
        Node::Int(i) => PyValue::Int(*i),
        Node::Float(f) => PyValue::Float(*f),
        Node::Str(s) => PyValue::Str(s.to_string()),
        Node::Bytes(b) => PyValue::Bytes(b.to_vec()),
        Node::Tuple(_) | Node::List(_) | Node::Dict(_) if depth >= MAX_CONVERT_DEPTH => raw_node(d, id),
        Node::Tuple(items) => PyValue::Tuple(each(items)),
        Node::List(items) => PyValue::List(each(items)),
        Node::Dict(pairs) => PyValue::Dict(
            pairs.iter().map(|&(k, v)| (convert(d, k, depth + 1), convert(d, v, depth + 1))).collect(),
        ),
        _ => match d.as_str(id) {
            // A Python 2 str that a Python 3 reader turns into str.
            Some(s) => PyValue::Str(s.to_string()),
            None => raw_node(d, id),
        },
    }
}

/// Whether the value at `root` reaches some container or object by two
/// paths: shared (`[x, x]`) or cyclic (`l.append(l)`). Plain Rust values
/// are trees, so converting such a value would copy what was one object;
/// it is kept whole as a raw pickle instead, which keeps the identities.
/// Scalars and globals (classes, functions) may be shared freely.
fn shares_references(d: &Decoded<'_>, root: NodeId) -> bool {
    let mut seen = HashSet::new();
    let mut todo = vec![root];
    while let Some(id) = todo.pop() {
        let node = d.node(id);
        if matches!(node, Node::Tuple(_) | Node::List(_) | Node::Set(_) | Node::FrozenSet(_) | Node::Dict(_) | Node::Object(_))
            && !seen.insert(id)
        {
            return true;
        }
        match node {
            Node::Tuple(v) | Node::List(v) | Node::Set(v) | Node::FrozenSet(v) => todo.extend(v),
            Node::Dict(pairs) => todo.extend(pairs.iter().flat_map(|&(k, v)| [k, v])),
            Node::Object(o) => {
                todo.extend([o.callable, o.args]);
                todo.extend(o.kwargs);
                for op in &o.ops {
                    match op {
                        ObjectOp::Append(x) | ObjectOp::Build(x) => todo.push(*x),
                        ObjectOp::Extend(xs) | ObjectOp::AddItems(xs) => todo.extend(xs),
                        ObjectOp::SetItem(k, v) => todo.extend([*k, *v]),
                    }
                }
            }
            _ => {} // scalars and globals
        }
    }
    false
}

fn raw_node(d: &Decoded<'_>, id: NodeId) -> PyValue {
    PyValue::Raw(RawPickle(d.standalone(id)))
}

impl fmt::Display for PyValue {
    /// Roughly Python's `repr()`, for messages and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn seq(f: &mut fmt::Formatter<'_>, items: &[PyValue], open: &str, close: &str) -> fmt::Result {
            f.write_str(open)?;
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{v}")?;
            }
            if close == ")" && items.len() == 1 {
                f.write_str(",")?;
            }
            f.write_str(close)
        }
        match self {
            PyValue::None => f.write_str("None"),
            PyValue::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
            PyValue::Int(i) => write!(f, "{i}"),
            PyValue::Float(x) => write!(f, "{x:?}"),
            PyValue::Str(s) => write!(f, "{s:?}"),
            PyValue::Bytes(b) => write!(f, "b{:?}", String::from_utf8_lossy(b)),
            PyValue::List(v) => seq(f, v, "[", "]"),
            PyValue::Tuple(v) => seq(f, v, "(", ")"),
            PyValue::Dict(v) => {
                f.write_str("{")?;
                for (i, (k, x)) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {x}")?;
                }
                f.write_str("}")
            }
            PyValue::Raw(r) => write!(f, "<pickled object, {} bytes>", r.0.len()),
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for PyValue {
            fn from(v: $t) -> PyValue {
                PyValue::Int(i64::from(v))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<bool> for PyValue {
    fn from(v: bool) -> PyValue {
        PyValue::Bool(v)
    }
}

impl From<f64> for PyValue {
    fn from(v: f64) -> PyValue {
        PyValue::Float(v)
    }
}

impl From<&str> for PyValue {
    fn from(v: &str) -> PyValue {
        PyValue::Str(v.to_string())
    }
}

impl From<String> for PyValue {
    fn from(v: String) -> PyValue {
        PyValue::Str(v)
    }
}

impl From<&[u8]> for PyValue {
    fn from(v: &[u8]) -> PyValue {
        PyValue::Bytes(v.to_vec())
    }
}

impl From<()> for PyValue {
    fn from(_: ()) -> PyValue {
        PyValue::None
    }
}

impl From<Vec<PyValue>> for PyValue {
    fn from(v: Vec<PyValue>) -> PyValue {
        PyValue::List(v)
    }
}

impl From<RawPickle> for PyValue {
    fn from(v: RawPickle) -> PyValue {
        PyValue::Raw(v)
    }
}

impl<T: Into<PyValue>> From<Option<T>> for PyValue {
    fn from(v: Option<T>) -> PyValue {
        v.map_or(PyValue::None, Into::into)
    }
}

/// Reads typed results out of replies, with a clear error when the server
/// sent something else.
pub(crate) fn expect<T>(value: PyValue, what: &str, get: impl FnOnce(&PyValue) -> Option<T>) -> Result<T> {
    get(&value).ok_or_else(|| ClientError::Value(format!("expected {what}, got {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: &PyValue) -> PyValue {
        PyValue::from_pickle(&v.to_pickle()).unwrap()
    }

    #[test]
    fn plain_values_round_trip() {
        let v = PyValue::dict([
            ("a".into(), PyValue::list([1.into(), (-70000).into(), i64::MIN.into(), 2.5.into()])),
            (PyValue::tuple([true.into(), ().into()]), PyValue::bytes(vec![0u8; 300])),
            ("long".into(), "é".repeat(300).into()),
            (PyValue::Tuple(vec![]), PyValue::list((0..2500).map(PyValue::from))),
        ]);
        assert_eq!(round_trip(&v), v);
    }

    #[test]
    fn objects_and_cycles_stay_raw() {
        // pickle.dumps(({1, 2}, l)) where l = [] ; l.append(l), protocol 4
        let mut w = PickleWriter::new(4);
        w.empty_set();
        w.mark();
        w.int(1);
        w.int(2);
        w.additems_from_mark();
        w.empty_list();
        w.put(0);
        w.get(0);
        w.append();
        w.tuple2();
        let pickle = w.finish();
        let v = PyValue::from_pickle(&pickle).unwrap();
        assert!(v.as_raw().is_some(), "a value holding a cycle is kept whole");
        // Raw values are embedded unchanged when sent back.
        assert_eq!(round_trip(&v), v);
        // pickle.dumps(({1},), 4)
        let mut w = PickleWriter::new(4);
        w.empty_set();
        w.mark();
        w.int(1);
        w.additems_from_mark();
        w.tuple1();
        let v = PyValue::from_pickle(&w.finish()).unwrap();
        assert!(v.as_seq().unwrap()[0].as_raw().is_some(), "a set is kept raw, inside a plain tuple");
        assert_eq!(round_trip(&v), v);
    }

    #[test]
    fn shared_references_keep_the_value_whole() {
        // x = [1]; pickle.dumps([x, x], 4) and pickle.dumps([C, C]) of a global C
        let mut w = PickleWriter::new(4);
        w.empty_list();
        w.mark();
        w.empty_list();
        w.put(0);
        w.int(1);
        w.append();
        w.get(0);
        w.appends_from_mark();
        let v = PyValue::from_pickle(&w.finish()).unwrap();
        assert!(v.as_raw().is_some(), "[x, x] would lose that both are x");
        let mut w = PickleWriter::new(4);
        w.mark();
        w.global("m", "C");
        w.put(0);
        w.get(0);
        w.str("s");
        w.put(1);
        w.get(1);
        w.tuple_from_mark();
        let v = PyValue::from_pickle(&w.finish()).unwrap();
        let items = v.as_seq().expect("shared globals and strings are fine");
        assert!(items[0].as_raw().is_some() && items[2] == "s".into() && items[3] == "s".into());
    }

    #[test]
    fn raw_pickles_are_checked() {
        assert!(PyValue::raw(b"\x80\x04K\x01.").is_ok());
        assert!(matches!(PyValue::raw(b"\x80\x04K"), Err(ClientError::Pickle(_))));
    }

    #[test]
    fn raw_values_of_any_protocol_load_in_python() {
        // pickle.dumps({1, 2}, 2) (py2 names, memo) and pickle.dumps(2**80, 4) (FRAME)
        let set = PyValue::raw(b"\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.").unwrap();
        let big = PyValue::raw(b"\x80\x04\x95\x0e\x00\x00\x00\x00\x00\x00\x00\x8a\x0b\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01.").unwrap();
        let v = PyValue::list([set, big, "end".into()]);
        let mut python = std::process::Command::new("python3")
            .args(["-c", "import pickle,sys; print(repr(pickle.loads(sys.stdin.buffer.read())))"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        use std::io::Write;
        python.stdin.take().unwrap().write_all(&v.to_pickle()).unwrap();
        let out = python.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[{1, 2}, 1208925819614629174706176, 'end']");
    }
}
