//! SyncManager's `Array` typeid: `array.array(typecode, sequence)` served
//! to an `ArrayProxy` (`__len__`, `__getitem__`, `__setitem__`), with the
//! typecode's range checks and CPython's (3.11) error messages.
//!
//! Arrays arrive as `array.array(typecode, bytes)` (managers.py registers
//! `reduce_array` for every pickle a client sends) or, pickled elsewhere,
//! as `array._array_reconstructor(...)`; both are read here.
//!
//! Differences from CPython: typecode `w` (3.13) is accepted whatever the
//! server version;
//! objects with `__index__`/`__float__` (numpy scalars) are refused.

use crate::pickle::{bigint_to_f64, Decoded, Node, NodeId, ObjectKind, PickleWriter};
use crate::protocol::{bind, PyException, Reply, Request, ReplyValue};

use super::sequence::{int_arg, iterate, node_type_name, slice_arg, Slice};
use super::value::{float_repr, str_repr, type_name, PyStr, PyValue, ViewBudget};
use super::{Attempt, Change, Changes, CallContext, CallError, ObjectTable, PendingCall, SharedObject, SharedType, TypeInfo};

/// `ArrayProxy._exposed_`.
pub const EXPOSED: &[&str] = &["__len__", "__getitem__", "__setitem__"];

/// SyncManager's `Array` typeid: its length is fixed and it stores numbers,
/// not items, so no call grows it.
pub const INFO: TypeInfo = TypeInfo {
    typeid: "Array",
    construct,
    from_cli,
    exposed: EXPOSED,
    storing: &[],
    iterating: &[],
    factory: Some("multiprocessing.managers.Array"),
    parse: None,
};

const TYPECODES: &str = "bBuwhHiIlLqQfd";

/// One element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Elem {
    Int(i64),
    /// `L`/`Q` values above `i64::MAX`.
    UInt(u64),
    Float(f64),
    Char(u32),
}

#[derive(Debug)]
pub struct SharedArray {
    typecode: char,
    items: Vec<Elem>,
    /// Changes for the store, if durable: a `__setitem__` logs the whole
    /// array (its pickle), as arrays are small and fixed in size.
    changes: Changes,
}

#[derive(Debug)]
pub enum ArrayCall {
    Len,
    GetItem(ArrayIndex),
    SetItem(ArrayIndex, Vec<Elem>),
}

#[derive(Debug, Clone, Copy)]
pub enum ArrayIndex {
    Int(i64),
    Huge,
    Slice(Slice),
}

impl PendingCall for ArrayCall {}

/// A big int's value when it fits `u64` (`None` if negative or larger).
fn big_as_u64(le: &[u8]) -> Option<u64> {
    if le.last().is_some_and(|x| x & 0x80 != 0) {
        return None;
    }
    let trimmed: Vec<u8> = le.iter().copied().rev().skip_while(|&b| b == 0).collect();
    if trimmed.len() > 8 {
        return None;
    }
    Some(trimmed.iter().fold(0u64, |acc, &b| (acc << 8) | b as u64))
}

/// Converts a value for typecode `tc`, as `array.__setitem__` does.
pub fn convert(tc: char, v: &PyValue) -> Result<Elem, PyException> {
    match tc {
        'f' | 'd' => {
            let f = match v {
                PyValue::Bool(b) => *b as i64 as f64,
                PyValue::Int(i) => *i as f64,
                PyValue::BigInt(b) => {
                    let f = bigint_to_f64(b);
                    if f.is_infinite() {
                        return Err(PyException::overflow_error("int too large to convert to float"));
                    }
                    f
                }
                PyValue::Float(f) => *f,
                other => return Err(PyException::type_error(format!("must be real number, not {}", type_name(other)))),
            };
            Ok(Elem::Float(if tc == 'f' { f as f32 as f64 } else { f }))
        }
        'u' | 'w' => match v {
            PyValue::Str(s) => {
                let mut cps = s.code_points();
                match (cps.next(), cps.next()) {
                    (Some(c), None) => Ok(Elem::Char(c)),
                    _ => Err(PyException::type_error("array item must be unicode character")),
                }
            }
            _ => Err(PyException::type_error("array item must be unicode character")),
        },
        _ => {
            let n: Result<i64, Option<u64>> = match v {
                PyValue::Bool(b) => Ok(*b as i64),
                PyValue::Int(i) => Ok(*i),
                PyValue::BigInt(b) => Err(big_as_u64(b)),
                other => {
                    return Err(PyException::type_error(format!(
                        "'{}' object cannot be interpreted as an integer",
                        type_name(other)
                    )));
                }
            };
            let negative_big = matches!(v, PyValue::BigInt(b) if b.last().is_some_and(|x| x & 0x80 != 0));
            let range = |lo: i64, hi: i64, name: &str| -> Result<Elem, PyException> {
                match n {
                    Ok(i) if i > hi => Err(PyException::overflow_error(format!("{name} is greater than maximum"))),
                    Ok(i) if i < lo => Err(PyException::overflow_error(format!("{name} is less than minimum"))),
                    Ok(i) => Ok(Elem::Int(i)),
                    Err(_) => Err(PyException::overflow_error("Python int too large to convert to C long")),
                }
            };
            match tc {
                'b' => range(-128, 127, "signed char"),
                'B' => range(0, 255, "unsigned byte integer"),
                'h' => range(-32768, 32767, "signed short integer"),
                'H' => range(0, 65535, "unsigned short"),
                'i' => range(i32::MIN as i64, i32::MAX as i64, "signed integer"),
                'I' => match n {
                    Ok(i) if i < 0 => Err(PyException::overflow_error("can't convert negative value to unsigned int")),
                    Ok(i) if i > u32::MAX as i64 => Err(PyException::overflow_error("unsigned int is greater than maximum")),
                    Ok(i) => Ok(Elem::Int(i)),
                    Err(_) if negative_big => Err(PyException::overflow_error("can't convert negative value to unsigned int")),
                    Err(_) => Err(PyException::overflow_error("Python int too large to convert to C unsigned long")),
                },
                'l' => n.map(Elem::Int).map_err(|_| PyException::overflow_error("Python int too large to convert to C long")),
                'q' => n.map(Elem::Int).map_err(|_| PyException::overflow_error("int too big to convert")),
                'L' => match n {
                    Ok(i) if i < 0 => Err(PyException::overflow_error("can't convert negative value to unsigned int")),
                    Ok(i) => Ok(Elem::Int(i)),
                    Err(Some(u)) => Ok(Elem::UInt(u)),
                    Err(None) if negative_big => Err(PyException::overflow_error("can't convert negative value to unsigned int")),
                    Err(None) => Err(PyException::overflow_error("Python int too large to convert to C unsigned long")),
                },
                _ => match n {
                    // 'Q'
                    Ok(i) if i < 0 => Err(PyException::overflow_error("can't convert negative int to unsigned")),
                    Ok(i) => Ok(Elem::Int(i)),
                    Err(Some(u)) => Ok(Elem::UInt(u)),
                    Err(None) if negative_big => Err(PyException::overflow_error("can't convert negative int to unsigned")),
                    Err(None) => Err(PyException::overflow_error("int too big to convert")),
                },
            }
        }
    }
}

fn write_elem(w: &mut PickleWriter, e: Elem) {
    match e {
        Elem::Int(i) => w.int(i),
        Elem::UInt(u) => {
            let mut b = u.to_le_bytes().to_vec();
            b.push(0);
            while b.len() > 1 && b[b.len() - 1] == 0 && b[b.len() - 2] & 0x80 == 0 {
                b.pop();
            }
            w.big_int(&b);
        }
        Elem::Float(f) => w.float(f),
        Elem::Char(c) => w.utf8_bytes(&wtf8(c)),
    }
}

fn wtf8(c: u32) -> Vec<u8> {
    match char::from_u32(c) {
        Some(ch) => ch.to_string().into_bytes(),
        None => vec![0xe0 | (c >> 12) as u8, 0x80 | ((c >> 6) & 0x3f) as u8, 0x80 | (c & 0x3f) as u8],
    }
}

/// `array.array(tc, [..])`, as pickle protocol 2 writes an array: every
/// client version reads it.
fn array_pickle(tc: char, items: &[Elem]) -> Vec<u8> {
    let mut w = PickleWriter::new(4);
    w.global("array", "array");
    w.str(&tc.to_string());
    w.empty_list();
    for chunk in items.chunks(1000) {
        w.mark();
        for &e in chunk {
            write_elem(&mut w, e);
        }
        w.appends_from_mark();
    }
    w.tuple2();
    w.reduce();
    w.finish()
}

/// The elements of a pickled `array.array` argument and its typecode:
/// `array(tc, list)` (protocol 2) or `_array_reconstructor(array, tc,
/// mformat, bytes)` (protocol 3+).
fn array_arg(d: &Decoded, id: NodeId) -> Option<Result<(char, Vec<Elem>), PyException>> {
    let o = d.as_object(id)?;
    if o.kind != ObjectKind::Reduce {
        return None;
    }
    let args = d.as_tuple(o.args)?;
    let tc_at = |i: usize| args.get(i).and_then(|&n| d.as_str(n)).and_then(|s| s.chars().next());
    match d.as_global(o.callable)? {
        ("array", "array") => {
            let tc = tc_at(0)?;
            // managers.py registers `reduce_array`: arrays travel as
            // `array.array(typecode, a.tobytes())`.
            if let Some(b) = args.get(1).and_then(|&n| d.as_bytes(n)) {
                return Some(from_native(tc, b).map(|items| (tc, items)));
            }
            let mut budget = ViewBudget::for_request(d);
            Some((|| {
                let values = match args.get(1) {
                    None => Vec::new(),
                    Some(&s) => iterate(d, s, &mut budget)?,
                };
                let items = values.iter().map(|v| convert(tc, v.view())).collect::<Result<Vec<_>, _>>()?;
                Ok((tc, items))
            })())
        }
        ("array", "_array_reconstructor") => {
            let tc = tc_at(1)?;
            let code = d.as_int(*args.get(2)?)?;
            let bytes = d.as_bytes(*args.get(3)?)?;
            Some(from_machine(tc, code, bytes).map(|items| (tc, items)))
        }
        _ => None,
    }
}

/// `array.array(tc, bytes)`: the bytes in this machine's layout (x86-64
/// and aarch64 Linux: little-endian, `l` 8 bytes, `u` 4 bytes).
fn from_native(tc: char, b: &[u8]) -> Result<Vec<Elem>, PyException> {
    let code = match tc {
        'B' => 0,
        'b' => 1,
        'H' => 2,
        'h' => 4,
        'I' => 6,
        'i' => 8,
        'L' | 'Q' => 10,
        'l' | 'q' => 12,
        'f' => 14,
        'd' => 16,
        _ => 20,
    };
    from_machine(tc, code, b)
}

/// Decodes `array._array_reconstructor`'s machine format.
fn from_machine(_tc: char, code: i64, b: &[u8]) -> Result<Vec<Elem>, PyException> {
    let bad = || PyException::value_error("array bytes in an unsupported machine format");
    let (size, signed, float, char_) = match code {
        0 | 1 => (1, code == 1, false, false),
        2..=5 => (2, code >= 4, false, false),
        6..=9 => (4, code >= 8, false, false),
        10..=13 => (8, code >= 12, false, false),
        14 | 15 => (4, true, true, false),
        16 | 17 => (8, true, true, false),
        18 | 19 => (2, false, false, true),
        20 | 21 => (4, false, false, true),
        _ => return Err(bad()),
    };
    let big_endian = code >= 2 && code % 2 == 1;
    if !b.len().is_multiple_of(size) {
        return Err(PyException::value_error("bytes length not a multiple of item size"));
    }
    Ok(b.chunks(size)
        .map(|c| {
            let mut le: Vec<u8> = c.to_vec();
            if big_endian {
                le.reverse();
            }
            let mut raw = [0u8; 8];
            raw[..size].copy_from_slice(&le);
            let u = u64::from_le_bytes(raw);
            if float {
                Elem::Float(if size == 4 { f32::from_bits(u as u32) as f64 } else { f64::from_bits(u) })
            } else if char_ {
                Elem::Char(u as u32)
            } else if signed {
                let shift = 64 - 8 * size as u32;
                Elem::Int(((u << shift) as i64) >> shift)
            } else if u > i64::MAX as u64 {
                Elem::UInt(u)
            } else {
                Elem::Int(u as i64)
            }
        })
        .collect())
}

fn index_arg(d: &Decoded, id: NodeId) -> Result<ArrayIndex, PyException> {
    if let Some(s) = slice_arg(d, id) {
        return Ok(ArrayIndex::Slice(s?));
    }
    match int_arg(d, id) {
        Some(Ok(i)) => Ok(ArrayIndex::Int(i)),
        Some(Err(_)) => Ok(ArrayIndex::Huge),
        None => Err(PyException::type_error("array indices must be integers")),
    }
}

impl SharedArray {
    fn position(&self, i: i64) -> Option<usize> {
        let len = self.items.len() as i64;
        let i = if i < 0 { i + len } else { i };
        (0..len).contains(&i).then_some(i as usize)
    }

    fn call(&mut self, call: &mut ArrayCall) -> Result<Reply, PyException> {
        Ok(match call {
            ArrayCall::Len => Reply::Return(ReplyValue::Int(self.items.len() as i64)),
            ArrayCall::GetItem(ArrayIndex::Int(i)) => match self.position(*i) {
                Some(p) => {
                    let mut w = PickleWriter::new(4);
                    write_elem(&mut w, self.items[p]);
                    Reply::Return(ReplyValue::Item(w.finish().into()))
                }
                None => return Err(PyException::index_error("array index out of range")),
            },
            ArrayCall::GetItem(ArrayIndex::Huge) => {
                return Err(PyException::index_error("cannot fit 'int' into an index-sized integer"));
            }
            ArrayCall::GetItem(ArrayIndex::Slice(s)) => {
                let items: Vec<Elem> = s.positions(self.items.len())?.into_iter().map(|p| self.items[p]).collect();
                Reply::Return(ReplyValue::Item(array_pickle(self.typecode, &items).into()))
            }
            ArrayCall::SetItem(ArrayIndex::Int(i), values) => match self.position(*i) {
                Some(p) => {
                    self.items[p] = values[0];
                    Reply::none()
                }
                None => return Err(PyException::index_error("array assignment index out of range")),
            },
            ArrayCall::SetItem(ArrayIndex::Huge, _) => {
                return Err(PyException::index_error("cannot fit 'int' into an index-sized integer"));
            }
            ArrayCall::SetItem(ArrayIndex::Slice(s), values) => {
                let (start, stop, step, n) = s.indices(self.items.len())?;
                if step == 1 {
                    let start = start as usize;
                    let stop = stop.max(start as i64) as usize;
                    self.items.splice(start..stop, values.drain(..));
                } else {
                    if values.len() != n {
                        return Err(PyException::value_error(format!(
                            "attempt to assign array of size {} to extended slice of size {n}",
                            values.len()
                        )));
                    }
                    for (i, v) in values.drain(..).enumerate() {
                        self.items[(start + i as i64 * step) as usize] = v;
                    }
                }
                Reply::none()
            }
        })
    }
}

impl SharedType for SharedArray {
    type Call = ArrayCall;

    fn class_name(&self) -> &'static str {
        "array.array"
    }

    fn info(&self) -> &'static TypeInfo {
        &INFO
    }

    fn repr(&self, _ident: &str) -> Result<String, PyException> {
        let tc = self.typecode;
        if self.items.is_empty() {
            return Ok(format!("array('{tc}')"));
        }
        if matches!(tc, 'u' | 'w') {
            let mut s = Vec::new();
            for e in &self.items {
                if let Elem::Char(c) = e {
                    s.extend(wtf8(*c));
                }
            }
            return Ok(format!("array('{tc}', {})", str_repr(&PyStr::from_wtf8(&s))));
        }
        let parts: Vec<String> = self
            .items
            .iter()
            .map(|e| match e {
                Elem::Int(i) => i.to_string(),
                Elem::UInt(u) => u.to_string(),
                Elem::Float(f) => float_repr(*f),
                Elem::Char(c) => c.to_string(),
            })
            .collect();
        Ok(format!("array('{tc}', [{}])", parts.join(", ")))
    }

    fn getvalue(&self) -> Reply {
        Reply::Return(ReplyValue::Item(array_pickle(self.typecode, &self.items).into()))
    }

    fn parse_call(&self, req: &Request<'_, '_>, _ctx: &CallContext) -> Result<ArrayCall, CallError> {
        let d = req.pickle;
        let exactly = |n: usize| -> Result<&[NodeId], PyException> {
            if !req.kwds.is_empty() {
                return Err(PyException::type_error(format!("{}() takes no keyword arguments", req.method)));
            }
            if req.args.len() != n {
                return Err(PyException::type_error(format!(
                    "expected {n} argument{}, got {}",
                    if n == 1 { "" } else { "s" },
                    req.args.len()
                )));
            }
            Ok(req.args)
        };
        Ok(match req.method {
            "__len__" => {
                exactly(0)?;
                ArrayCall::Len
            }
            "__getitem__" => ArrayCall::GetItem(index_arg(d, exactly(1)?[0])?),
            "__setitem__" => {
                let a = exactly(2)?;
                let index = index_arg(d, a[0])?;
                let values = match index {
                    ArrayIndex::Slice(_) => match array_arg(d, a[1]) {
                        Some(Ok((tc, items))) if tc == self.typecode => items,
                        Some(Ok(_)) => {
                            return Err(PyException::type_error("bad argument type for built-in operation").into());
                        }
                        Some(Err(e)) => return Err(e.into()),
                        None => {
                            return Err(PyException::type_error(format!(
                                "can only assign array (not \"{}\") to array slice",
                                node_type_name(d, a[1])
                            ))
                            .into());
                        }
                    },
                    _ => vec![convert(self.typecode, &PyValue::from_node(d, a[1]))?],
                };
                ArrayCall::SetItem(index, values)
            }
            _ => return Err(CallError::NotExposed),
        })
    }

    fn attempt(&mut self, call: &mut ArrayCall, _ctx: &CallContext) -> Attempt {
        if matches!(call, ArrayCall::SetItem(..)) {
            self.changes.dirty();
        }
        match self.call(call) {
            Ok(r) => Attempt::reply(r),
            Err(e) => Attempt::error(e),
        }
    }

    fn timed_out(&mut self, _call: &mut ArrayCall, _ctx: &CallContext) -> Attempt {
        unreachable!("array calls never block")
    }

    fn changes(&mut self) -> Option<&mut Changes> {
        Some(&mut self.changes)
    }

    /// The array's pickle, as `_getvalue()` sends it.
    fn snapshot(&self, out: &mut Vec<Change>) {
        out.push(Change::Whole(array_pickle(self.typecode, &self.items)));
    }

    fn replay(&mut self, change: Change) -> Result<(), String> {
        let Change::Whole(data) = change else { return Err(super::change::unfit(&change, self.class_name())) };
        let d = crate::pickle::decode(&data, &crate::pickle::DecodeLimits::default()).map_err(|e| e.to_string())?;
        let (tc, items) = array_arg(&d, d.root()).ok_or("a logged array is not an array")?.map_err(|e| e.traceback_line())?;
        (self.typecode, self.items) = (tc, items);
        Ok(())
    }
}

fn bad_typecode() -> PyException {
    PyException::value_error("bad typecode (must be b, B, u, h, H, i, I, l, L, q, Q, f or d)")
}

fn typecode_of(d: &Decoded, id: NodeId) -> Result<char, PyException> {
    let Some(s) = d.as_str(id) else {
        return Err(PyException::type_error(format!(
            "array() argument 1 must be a unicode character, not {}",
            node_type_name(d, id)
        )));
    };
    let mut cs = s.chars();
    match (cs.next(), cs.next()) {
        (Some(c), None) if TYPECODES.contains(c) => Ok(c),
        (Some(_), None) => Err(bad_typecode()),
        _ => Err(PyException::type_error("array() argument 1 must be a unicode character, not str")),
    }
}

/// `Array(typecode, sequence, lock=True)`, which CPython's manager turns
/// into `array.array(typecode, sequence)` (`lock` is ignored).
pub fn construct(req: &Request<'_, '_>, _table: &ObjectTable) -> Result<SharedObject, PyException> {
    let d = req.pickle;
    let b = bind(req, "Array", ["typecode", "sequence", "lock"], 2)?;
    let tc = typecode_of(d, b.0[0].expect("required"))?;
    let seq = b.0[1].expect("required");
    let items = match array_arg(d, seq) {
        Some(r) => r?.1,
        None => {
            let values = match d.node(seq) {
                Node::Bytes(b) | Node::ByteArray(b) => {
                    return Ok(SharedObject::Array(SharedArray { typecode: tc, items: from_native(tc, b)?, changes: Changes::default() }));
                }
                Node::Str(_) | Node::StrSurrogates(_) if !matches!(tc, 'u' | 'w') => {
                    return Err(PyException::type_error(format!(
                        "cannot use a str to initialize an array with typecode '{tc}'"
                    )));
                }
                _ => iterate(d, seq, &mut ViewBudget::for_request(d))?,
            };
            values.iter().map(|v| convert(tc, v.view())).collect::<Result<Vec<_>, _>>()?
        }
    };
    Ok(SharedObject::Array(SharedArray { typecode: tc, items, changes: Changes::default() }))
}

/// `--register NAME=Array(TYPECODE, v1, v2, ...)` with numbers.
pub fn from_cli(args: &str) -> Result<SharedObject, String> {
    let mut parts = args.split(',').map(|s| s.trim().trim_matches(|c| c == '\'' || c == '"'));
    let tc = parts.next().filter(|t| t.chars().count() == 1).ok_or("expected Array(TYPECODE, v1, v2, ...)")?;
    let tc = tc.chars().next().expect("one char");
    if !TYPECODES.contains(tc) {
        return Err(format!("bad typecode {tc:?}"));
    }
    let mut items = Vec::new();
    for p in parts.filter(|p| !p.is_empty()) {
        let v = if let Ok(i) = p.parse::<i64>() {
            PyValue::Int(i)
        } else if let Ok(f) = p.parse::<f64>() {
            PyValue::Float(f)
        } else {
            PyValue::str(p)
        };
        items.push(convert(tc, &v).map_err(|e| e.traceback_line())?);
    }
    Ok(SharedObject::Array(SharedArray { typecode: tc, items, changes: Changes::default() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_repr() {
        assert_eq!(convert('b', &PyValue::Int(300)).unwrap_err().traceback_line(), "OverflowError: signed char is greater than maximum");
        assert_eq!(
            convert('I', &PyValue::Int(-1)).unwrap_err().traceback_line(),
            "OverflowError: can't convert negative value to unsigned int"
        );
        assert_eq!(
            convert('i', &PyValue::Float(1.5)).unwrap_err().traceback_line(),
            "TypeError: 'float' object cannot be interpreted as an integer"
        );
        let SharedObject::Array(a) = from_cli("i, 1, 2, 3").unwrap() else { panic!() };
        assert_eq!(a.repr("").unwrap(), "array('i', [1, 2, 3])");
        let SharedObject::Array(a) = from_cli("d").unwrap() else { panic!() };
        assert_eq!(a.repr("").unwrap(), "array('d')");
        assert_eq!(from_machine('i', 8, &[1, 0, 0, 0, 255, 255, 255, 255]).unwrap(), vec![Elem::Int(1), Elem::Int(-1)]);
    }
}
