//! Dict keys with Python's `hash`/`==` semantics, and exact comparison of
//! Python numbers (`int`, `float`, `bool`, ints beyond `i64`).

use std::cmp::Ordering;
use std::sync::Arc;

use crate::protocol::PyException;

use super::{Container, OpaqueKind, PyStr, PyValue};

/// A hashable value, normalized so that derived `Eq`/`Hash` is Python's
/// `==`/`hash` for dict keys and set elements:
///
/// - numbers compare by value across types: `1 == 1.0 == True` and
///   `0 == 0.0 == -0.0 == False` are all [`DictKey::Int`]; an integral float
///   beyond `i64` is the same [`DictKey::BigInt`] as the equal int
///   (`2**64 == float(2**64)`), and `2**53 + 1 != float(2**53 + 1)`;
/// - a NaN equals only itself, by identity ([`DictKey::NaN`] holds the NaN's
///   identity tag, see [`PyValue::Float`]): NaNs unpickled separately are
///   distinct keys, as in CPython where `d[nan]` never finds another NaN;
/// - `bytes` is never equal to `str`; tuples and frozensets compare by
///   their elements (frozensets as sorted, deduplicated element keys);
/// - opaque values (instances, globals) compare by their fingerprint.
///
/// The derived `Ord` is arbitrary but total (used to canonicalize frozensets).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DictKey {
    None,
    Int(i64),
    /// Minimal little-endian two's complement, never fitting `i64`.
    BigInt(Box<[u8]>),
    /// Bits of a float that is not integral: fractional or infinite.
    Float(u64),
    /// Bits of a NaN: its identity tag.
    NaN(u64),
    Str(PyStr),
    Bytes(Box<[u8]>),
    Tuple(Box<[DictKey]>),
    FrozenSet(Box<[DictKey]>),
    /// [`Opaque::fingerprint`](super::Opaque::fingerprint).
    Opaque(Arc<[u8]>),
}

impl PyValue {
    /// The value as a dict key, or CPython's `TypeError: unhashable type`.
    ///
    /// Class instances cannot run their `__eq__`/`__hash__` here. They are
    /// keyed by a fingerprint of their pickled content (class, arguments,
    /// state), so equal-looking instances are one key. That is right for
    /// value-like classes (namedtuples, frozen dataclasses, enums, dates,
    /// `Decimal`) and differs from CPython for classes that keep the
    /// default identity equality: there, every unpickled instance is a new
    /// key, so the CPython server never finds a client's instance again.
    /// Instances of unhashable classes (`__eq__` without `__hash__`) are
    /// hashable here. Values too large to view hash by their pickle bytes
    /// when their type is hashable.
    pub fn key(&self) -> Result<DictKey, PyException> {
        Ok(match self {
            PyValue::None => DictKey::None,
            PyValue::Bool(b) => DictKey::Int(*b as i64),
            PyValue::Int(i) => DictKey::Int(*i),
            PyValue::BigInt(b) => DictKey::BigInt(b.clone()),
            PyValue::Float(f) => float_key(*f),
            PyValue::Str(s) => DictKey::Str(s.clone()),
            PyValue::Bytes(b) => DictKey::Bytes(b.clone()),
            PyValue::Tuple(items) => DictKey::Tuple(keys(items)?.into()),
            PyValue::FrozenSet(items) => {
                let mut k = keys(items)?;
                k.sort_unstable();
                k.dedup();
                DictKey::FrozenSet(k.into())
            }
            PyValue::ByteArray(_) | PyValue::List(_) | PyValue::Dict(_) | PyValue::Set(_) => {
                return Err(unhashable(super::type_name(self)));
            }
            PyValue::Recursive { kind: Container::Tuple | Container::FrozenSet, .. } => {
                return Err(PyException::recursion_error("maximum recursion depth exceeded while calling a Python object"));
            }
            PyValue::Recursive { kind, .. } => return Err(unhashable(kind.name())),
            PyValue::Opaque(o) => match o.kind {
                OpaqueKind::TooLarge | OpaqueKind::TooDeep
                    if &*o.module == "builtins" && matches!(&*o.name, "list" | "dict" | "set") =>
                {
                    return Err(unhashable(&o.name));
                }
                _ => DictKey::Opaque(o.fingerprint.clone()),
            },
        })
    }
}

impl DictKey {
    /// A byte string that is equal for two keys exactly when the keys are
    /// equal: what a store outside this process (the Redis backend's hash
    /// fields) files a key under. A tag byte, then the contents; variable
    /// parts are length-prefixed so no two keys run together.
    pub fn canonical_bytes(&self, out: &mut Vec<u8>) {
        let bytes = |out: &mut Vec<u8>, tag: u8, b: &[u8]| {
            out.push(tag);
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        };
        match self {
            DictKey::None => out.push(b'N'),
            DictKey::Int(i) => bytes(out, b'I', &i.to_le_bytes()),
            DictKey::BigInt(b) => bytes(out, b'L', b),
            DictKey::Float(f) => bytes(out, b'F', &f.to_le_bytes()),
            DictKey::NaN(n) => bytes(out, b'n', &n.to_le_bytes()),
            DictKey::Str(s) => bytes(out, b'S', s.as_bytes()),
            DictKey::Bytes(b) => bytes(out, b'B', b),
            DictKey::Opaque(o) => bytes(out, b'O', o),
            DictKey::Tuple(items) | DictKey::FrozenSet(items) => {
                out.push(if matches!(self, DictKey::Tuple(_)) { b'T' } else { b'Z' });
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for k in items.iter() {
                    k.canonical_bytes(out);
                }
            }
        }
    }
}

fn keys(items: &[PyValue]) -> Result<Vec<DictKey>, PyException> {
    items.iter().map(PyValue::key).collect()
}

fn unhashable(type_name: &str) -> PyException {
    PyException::type_error(format!("unhashable type: '{type_name}'"))
}

fn float_key(f: f64) -> DictKey {
    if f.is_nan() {
        DictKey::NaN(f.to_bits())
    } else if f.is_finite() && f.fract() == 0.0 {
        if (-TWO_63..TWO_63).contains(&f) {
            DictKey::Int(f as i64)
        } else {
            DictKey::BigInt(integral_float_to_le(f).into())
        }
    } else {
        DictKey::Float(f.to_bits())
    }
}

const TWO_63: f64 = 9_223_372_036_854_775_808.0;

/// A Python number, borrowed from a view.
#[derive(Debug, Clone, Copy)]
pub(super) enum Num<'v> {
    Int(i64),
    Big(&'v [u8]),
    Float(f64),
}

/// The number `v` is (`bool` counts, as in Python).
pub(super) fn as_num(v: &PyValue) -> Option<Num<'_>> {
    match v {
        PyValue::Bool(b) => Some(Num::Int(*b as i64)),
        PyValue::Int(i) => Some(Num::Int(*i)),
        PyValue::BigInt(b) => Some(Num::Big(b)),
        PyValue::Float(f) => Some(Num::Float(*f)),
        _ => None,
    }
}

/// Exact comparison, as CPython compares ints and floats (no rounding of
/// the int to a float); `None` when a NaN is involved.
pub(super) fn num_cmp(a: Num, b: Num) -> Option<Ordering> {
    use Num::*;
    match (a, b) {
        (Int(x), Int(y)) => Some(x.cmp(&y)),
        (Float(x), Float(y)) => x.partial_cmp(&y),
        (Big(x), Big(y)) => Some(big_cmp(x, y)),
        (Int(x), Float(y)) => int_float_cmp(x, y),
        (Big(x), Float(y)) => big_float_cmp(x, y),
        // A big int is outside i64 by construction: its sign decides.
        (Big(x), Int(_)) => Some(if is_negative(x) { Ordering::Less } else { Ordering::Greater }),
        (Float(_) | Int(_), _) => num_cmp(b, a).map(Ordering::reverse),
    }
}

fn is_negative(le: &[u8]) -> bool {
    le.last().is_some_and(|&t| t & 0x80 != 0)
}

/// Compares minimal two's complement integers.
fn big_cmp(x: &[u8], y: &[u8]) -> Ordering {
    match (is_negative(x), is_negative(y)) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (neg, _) => {
            // Same sign: a longer minimal encoding has a larger magnitude;
            // equal lengths order as unsigned bytes from the top.
            let by_len = x.len().cmp(&y.len());
            let by_len = if neg { by_len.reverse() } else { by_len };
            by_len.then_with(|| x.iter().rev().cmp(y.iter().rev()))
        }
    }
}

fn int_float_cmp(i: i64, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    if f >= TWO_63 {
        return Some(Ordering::Less);
    }
    if f < -TWO_63 {
        return Some(Ordering::Greater);
    }
    // In range: compare with the truncation exactly, then with the fraction.
    let t = f.trunc();
    Some(i.cmp(&(t as i64)).then_with(|| 0f64.partial_cmp(&(f - t)).expect("finite")))
}

fn big_float_cmp(b: &[u8], f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    if f.is_infinite() {
        return Some(if f > 0.0 { Ordering::Less } else { Ordering::Greater });
    }
    if f.abs() < TWO_63 {
        return Some(if is_negative(b) { Ordering::Less } else { Ordering::Greater });
    }
    // |f| >= 2**63 is an integer: compare exactly as integers.
    Some(big_cmp(b, &integral_float_to_le(f)))
}

/// Minimal little-endian two's complement of an integral, finite float.
pub(super) fn integral_float_to_le(f: f64) -> Vec<u8> {
    debug_assert!(f.is_finite() && f.fract() == 0.0);
    let bits = f.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i64;
    if biased == 0 {
        return Vec::new(); // zero (integral subnormals do not exist)
    }
    let mant = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    let exp = biased - 1075; // f = ±mant * 2**exp
    let mut mag = vec![0u8; 9 + exp.max(0) as usize / 8];
    if exp < 0 {
        let v = mant >> (-exp);
        mag[..8].copy_from_slice(&v.to_le_bytes());
    } else {
        let (byte, bit) = (exp as usize / 8, exp as u32 % 8);
        let v = (mant as u128) << bit;
        for (k, x) in v.to_le_bytes().iter().enumerate() {
            if let Some(slot) = mag.get_mut(byte + k) {
                *slot = *x;
            }
        }
    }
    crate::pickle::bigint_from_magnitude(&mag, f < 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes_tell_keys_apart_exactly() {
        let bytes = |k: &DictKey| {
            let mut out = Vec::new();
            k.canonical_bytes(&mut out);
            out
        };
        let s = |t: &str| DictKey::Str(PyStr::new(t));
        let keys = [
            DictKey::None,
            DictKey::Int(1),
            DictKey::Int(-1),
            DictKey::Float(1.5f64.to_bits()),
            s("a"),
            s("ab"),
            DictKey::Bytes(b"a".as_slice().into()),
            DictKey::Tuple(vec![s("a"), s("b")].into()),
            DictKey::Tuple(vec![s("ab")].into()),
            DictKey::Tuple(vec![DictKey::Tuple(vec![s("a")].into()), s("b")].into()),
            DictKey::FrozenSet(vec![s("a"), s("b")].into()),
        ];
        for (i, a) in keys.iter().enumerate() {
            assert_eq!(bytes(a), bytes(&a.clone()));
            for b in &keys[i + 1..] {
                assert_ne!(bytes(a), bytes(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn integral_floats_convert_exactly() {
        let le = |v: i128| {
            let mut b = v.to_le_bytes().to_vec();
            while b.len() > 1 {
                let (t, n) = (b[b.len() - 1], b[b.len() - 2]);
                if (t == 0 && n & 0x80 == 0) || (t == 0xff && n & 0x80 != 0) {
                    b.pop();
                } else {
                    break;
                }
            }
            b
        };
        for v in [1i128 << 63, -(1i128 << 63), 1 << 64, -(1 << 64), (1 << 100) + (1 << 60), 3 << 70, 5, -7] {
            assert_eq!(integral_float_to_le(v as f64), le(v), "{v}");
        }
        assert_eq!(integral_float_to_le(0.0), Vec::<u8>::new());
    }

    #[test]
    fn exact_int_float_comparison() {
        let big = integral_float_to_le(2f64.powi(64));
        let big_plus_one = {
            let mut b = big.clone();
            b[0] = 1;
            b
        };
        assert_eq!(num_cmp(Num::Big(&big), Num::Float(2f64.powi(64))), Some(Ordering::Equal));
        assert_eq!(num_cmp(Num::Big(&big_plus_one), Num::Float(2f64.powi(64))), Some(Ordering::Greater));
        assert_eq!(num_cmp(Num::Float(2f64.powi(64)), Num::Big(&big_plus_one)), Some(Ordering::Less));
        assert_eq!(num_cmp(Num::Int(i64::MAX), Num::Float(TWO_63)), Some(Ordering::Less));
        assert_eq!(num_cmp(Num::Int((1 << 53) + 1), Num::Float((1u64 << 53) as f64)), Some(Ordering::Greater));
        assert_eq!(num_cmp(Num::Int(-1), Num::Float(-1.5)), Some(Ordering::Greater));
        assert_eq!(num_cmp(Num::Int(-2), Num::Float(-1.5)), Some(Ordering::Less));
        assert_eq!(num_cmp(Num::Int(i64::MIN), Num::Float(-TWO_63)), Some(Ordering::Equal));
        assert_eq!(num_cmp(Num::Int(0), Num::Float(f64::NAN)), None);
        assert_eq!(num_cmp(Num::Big(&big), Num::Float(f64::INFINITY)), Some(Ordering::Less));
    }
}
