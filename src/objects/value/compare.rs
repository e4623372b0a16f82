//! `==`, `<` and sorting with CPython's semantics and error messages, for
//! `list.sort()`, `list.index/count/remove`, `in` and `dict ==`.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use crate::protocol::PyException;

use super::key::{as_num, num_cmp};
use super::{Container, DictKey, OpaqueKind, PyValue};

/// The Python type name CPython's messages use (`type(v).__name__`).
///
/// For opaque instances this is the last part of the class's qualified
/// name, which is what CPython prints for classes defined in Python;
/// C types print their module too (`datetime.datetime`), which the pickle
/// cannot tell apart. Globals are `type`, `builtin_function_or_method` or
/// `function`, guessed from the name (builtin types and capitalized names
/// are classes), since nothing is imported to find out.
pub fn type_name(v: &PyValue) -> &str {
    match v {
        PyValue::None => "NoneType",
        PyValue::Bool(_) => "bool",
        PyValue::Int(_) | PyValue::BigInt(_) => "int",
        PyValue::Float(_) => "float",
        PyValue::Str(_) => "str",
        PyValue::Bytes(_) => "bytes",
        PyValue::ByteArray(_) => "bytearray",
        PyValue::Tuple(_) => "tuple",
        PyValue::List(_) => "list",
        PyValue::Dict(_) => "dict",
        PyValue::Set(_) => "set",
        PyValue::FrozenSet(_) => "frozenset",
        PyValue::Recursive { kind, .. } => kind.name(),
        PyValue::Opaque(o) => match o.kind {
            OpaqueKind::Global => super::repr::global_type_name(&o.module, &o.name),
            _ => o.name.rsplit('.').next().unwrap_or(&o.name),
        },
    }
}

/// `a == b` (`PyObject_RichCompare`): no identity shortcut at the top, so
/// a NaN is not equal to itself; container elements are compared as
/// CPython does, identity first (see [`PyValue::Float`]).
///
/// Where CPython would run code, this decides without it: opaque values
/// are equal when their fingerprints are (see [`PyValue::key`]), and a
/// recursion marker equals only a marker for the same object (CPython
/// would raise `RecursionError` comparing two different recursive lists).
pub fn py_eq(a: &PyValue, b: &PyValue) -> bool {
    use PyValue as V;
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return num_cmp(x, y) == Some(Ordering::Equal);
    }
    match (a, b) {
        (V::None, V::None) => true,
        (V::Str(x), V::Str(y)) => x == y,
        (V::Bytes(x) | V::ByteArray(x), V::Bytes(y) | V::ByteArray(y)) => x == y,
        (V::Tuple(x), V::Tuple(y)) | (V::List(x), V::List(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| eq_item(p, q))
        }
        (V::Dict(x), V::Dict(y)) => dict_eq(x, y),
        (V::Set(x) | V::FrozenSet(x), V::Set(y) | V::FrozenSet(y)) => {
            x.len() == y.len() && is_subset(x, y)
        }
        (V::Recursive { id: x, .. }, V::Recursive { id: y, .. }) => x == y,
        (V::Opaque(x), V::Opaque(y)) => x.fingerprint == y.fingerprint,
        _ => false,
    }
}

/// `x is y or x == y` (`PyObject_RichCompareBool`), as containers compare
/// their elements. Identity is known for NaNs (their tags) and for values
/// that are the very same node of one view.
fn eq_item(a: &PyValue, b: &PyValue) -> bool {
    if std::ptr::eq(a, b) {
        return true;
    }
    if let (PyValue::Float(x), PyValue::Float(y)) = (a, b)
        && x.is_nan()
        && x.to_bits() == y.to_bits()
    {
        return true;
    }
    py_eq(a, b)
}

fn dict_eq(x: &[(PyValue, PyValue)], y: &[(PyValue, PyValue)]) -> bool {
    if x.len() != y.len() {
        return false;
    }
    let index: HashMap<DictKey, &PyValue> =
        y.iter().filter_map(|(k, v)| Some((k.key().ok()?, v))).collect();
    x.iter().all(|(k, v)| {
        k.key().ok().and_then(|k| index.get(&k)).is_some_and(|w| eq_item(v, w))
    })
}

/// Every element of `x` is in `y` (elements of sets are hashable).
fn is_subset(x: &[PyValue], y: &[PyValue]) -> bool {
    let ys: HashSet<DictKey> = y.iter().filter_map(|v| v.key().ok()).collect();
    x.iter().all(|v| v.key().ok().is_some_and(|k| ys.contains(&k)))
}

/// `a < b`, or the `TypeError` CPython raises, worded as it words it:
/// `'<' not supported between instances of 'str' and 'int'`.
///
/// Numbers compare exactly across `int`/`float`/`bool`; `str` and
/// `bytes`/`bytearray` lexicographically by code point/byte; tuples and
/// lists lexicographically (first unequal element decides, else length);
/// sets by proper inclusion. A recursion marker compared with a container
/// of its kind raises `RecursionError` (CPython would recurse into the
/// real object, which may or may not end); values too large or deep to
/// view raise `MemoryError`/`RecursionError`.
pub fn py_lt(a: &PyValue, b: &PyValue) -> Result<bool, PyException> {
    use PyValue as V;
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return Ok(num_cmp(x, y) == Some(Ordering::Less));
    }
    Ok(match (a, b) {
        (V::Str(x), V::Str(y)) => x < y,
        (V::Bytes(x) | V::ByteArray(x), V::Bytes(y) | V::ByteArray(y)) => x < y,
        (V::Tuple(x), V::Tuple(y)) | (V::List(x), V::List(y)) => {
            match x.iter().zip(y.iter()).find(|(p, q)| !eq_item(p, q)) {
                Some((p, q)) => py_lt(p, q)?,
                None => x.len() < y.len(),
            }
        }
        (V::Set(x) | V::FrozenSet(x), V::Set(y) | V::FrozenSet(y)) => {
            x.len() < y.len() && is_subset(x, y)
        }
        _ => return Err(lt_error(a, b)),
    })
}

fn lt_error(a: &PyValue, b: &PyValue) -> PyException {
    for v in [a, b] {
        if let PyValue::Opaque(o) = v {
            match o.kind {
                OpaqueKind::TooLarge => return too_large(),
                OpaqueKind::TooDeep => return recursion_in_comparison(),
                _ => {}
            }
        }
    }
    let same_kind = |k: &Container, v: &PyValue| match (k, v) {
        (_, PyValue::Recursive { kind, .. }) => kind == k,
        (Container::List, PyValue::List(_)) | (Container::Tuple, PyValue::Tuple(_)) => true,
        (Container::Set | Container::FrozenSet, PyValue::Set(_) | PyValue::FrozenSet(_)) => true,
        _ => false,
    };
    match (a, b) {
        (PyValue::Recursive { kind, .. }, other) | (other, PyValue::Recursive { kind, .. })
            if same_kind(kind, other) =>
        {
            recursion_in_comparison()
        }
        _ => PyException::type_error(format!(
            "'<' not supported between instances of '{}' and '{}'",
            type_name(a),
            type_name(b)
        )),
    }
}

pub(super) fn too_large() -> PyException {
    PyException::memory_error("value too large for the server to inspect")
}

fn recursion_in_comparison() -> PyException {
    PyException::recursion_error("maximum recursion depth exceeded in comparison")
}

/// A three-way comparison from [`py_lt`]: `Less` if `a < b`, `Greater` if
/// `b < a`, else `Equal`. Like CPython's sort, which only asks `<`, it
/// calls "equal" whatever is not ordered either way: NaN against anything,
/// sets neither of which contains the other. That is not a total order, so
/// never hand it to `slice::sort_by` (which may panic on such orders):
/// sort with [`sort_by_key`].
pub fn py_cmp(a: &PyValue, b: &PyValue) -> Result<Ordering, PyException> {
    Ok(if py_lt(a, b)? {
        Ordering::Less
    } else if py_lt(b, a)? {
        Ordering::Greater
    } else {
        Ordering::Equal
    })
}

/// `list.sort(key=..., reverse=...)`: a stable sort that only asks
/// `later < earlier`, as CPython's timsort does, so for values that Python
/// orders consistently the result is exactly CPython's, and with mixed
/// types the `TypeError` names the types in CPython's order. Which
/// incomparable pair is met first, and where NaNs end up, may differ from
/// timsort. `reverse` reverses, sorts and reverses again, which keeps equal
/// elements in their original order, as CPython does.
///
/// On error `items` is left unchanged (CPython leaves it in some
/// intermediate order).
pub fn sort_by_key<T>(
    items: &mut Vec<T>,
    key: impl Fn(&T) -> &PyValue,
    reverse: bool,
) -> Result<(), PyException> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    if reverse {
        order.reverse();
    }
    let mut lt = |later: usize, earlier: usize| py_lt(key(&items[later]), key(&items[earlier]));
    merge_sort(&mut order, &mut lt)?;
    if reverse {
        order.reverse();
    }
    let mut slots: Vec<Option<T>> = items.drain(..).map(Some).collect();
    items.extend(order.iter().map(|&i| slots[i].take().expect("a permutation")));
    Ok(())
}

type Lt<'f> = dyn FnMut(usize, usize) -> Result<bool, PyException> + 'f;

/// Bottom-up stable merge sort of indices: insertion-sorted runs, then
/// merges. `lt(x, y)` is only ever asked with `x` after `y` in the input.
fn merge_sort(v: &mut [usize], lt: &mut Lt) -> Result<(), PyException> {
    const RUN: usize = 32;
    for run in v.chunks_mut(RUN) {
        for i in 1..run.len() {
            let x = run[i];
            let mut j = i;
            while j > 0 && lt(x, run[j - 1])? {
                run[j] = run[j - 1];
                j -= 1;
            }
            run[j] = x;
        }
    }
    let mut buf = Vec::with_capacity(v.len());
    let mut width = RUN;
    while width < v.len() {
        for start in (0..v.len()).step_by(2 * width) {
            let mid = (start + width).min(v.len());
            let end = (start + 2 * width).min(v.len());
            if mid < end {
                merge(&mut v[start..end], mid - start, &mut buf, lt)?;
            }
        }
        width *= 2;
    }
    Ok(())
}

/// Merges sorted `v[..mid]` and `v[mid..]`, taking from the right run only
/// when its head is strictly less (stability).
fn merge(v: &mut [usize], mid: usize, buf: &mut Vec<usize>, lt: &mut Lt) -> Result<(), PyException> {
    buf.clear();
    buf.extend_from_slice(&v[..mid]);
    let (mut i, mut j, mut k) = (0, mid, 0);
    while i < buf.len() && j < v.len() {
        if lt(v[j], buf[i])? {
            v[k] = v[j];
            j += 1;
        } else {
            v[k] = buf[i];
            i += 1;
        }
        k += 1;
    }
    while i < buf.len() {
        v[k] = buf[i];
        i += 1;
        k += 1;
    }
    Ok(())
}
