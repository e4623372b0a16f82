//! `repr()` as CPython 3.11 prints it.

use std::fmt::Write;

use crate::pickle::bigint_to_decimal;
use crate::protocol::PyException;

use super::compare::too_large;
use super::printable::is_printable;
use super::{Container, Opaque, OpaqueKind, PyStr, PyValue};

/// CPython 3.11's default `sys.get_int_max_str_digits()`.
const MAX_STR_DIGITS: usize = 4300;

impl PyValue {
    /// `repr(value)`.
    ///
    /// Errors are CPython's: `ValueError` for ints over 4300 digits (3.11's
    /// default limit), and for values too large or deep to view a
    /// `MemoryError` / `RecursionError` (see [`OpaqueKind`]).
    ///
    /// Differences that cannot be helped: class instances print as
    /// `object.__repr__` does (`<mod.Cls object at 0x...>`, with a fake
    /// address that is stable for equal instances), since their own
    /// `__repr__` cannot run; globals print as classes or functions by a
    /// guess from their name (see [`type_name`](super::type_name)); sets print in the
    /// order the client's pickle listed them (the client's iteration order),
    /// where a CPython server would print its own hash order, which for
    /// strings differs between processes anyway.
    pub fn repr(&self) -> Result<String, PyException> {
        let mut out = String::new();
        self.write_repr(&mut out)?;
        Ok(out)
    }

    /// Appends `repr(value)` to `out` (for containers that print their items).
    pub fn write_repr(&self, out: &mut String) -> Result<(), PyException> {
        match self {
            PyValue::None => out.push_str("None"),
            PyValue::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            PyValue::Int(i) => write!(out, "{i}").expect("writing to a String"),
            PyValue::BigInt(b) => out.push_str(&big_int_repr(b)?),
            PyValue::Float(f) => out.push_str(&float_repr(*f)),
            PyValue::Str(s) => write_str_repr(out, s),
            PyValue::Bytes(b) => write_bytes_repr(out, b, false),
            PyValue::ByteArray(b) => {
                out.push_str("bytearray(");
                write_bytes_repr(out, b, true);
                out.push(')');
            }
            PyValue::Tuple(items) => {
                out.push('(');
                write_items(out, items)?;
                if items.len() == 1 {
                    out.push(',');
                }
                out.push(')');
            }
            PyValue::List(items) => {
                out.push('[');
                write_items(out, items)?;
                out.push(']');
            }
            PyValue::Dict(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    k.write_repr(out)?;
                    out.push_str(": ");
                    v.write_repr(out)?;
                }
                out.push('}');
            }
            PyValue::Set(items) if items.is_empty() => out.push_str("set()"),
            PyValue::Set(items) => {
                out.push('{');
                write_items(out, items)?;
                out.push('}');
            }
            PyValue::FrozenSet(items) if items.is_empty() => out.push_str("frozenset()"),
            PyValue::FrozenSet(items) => {
                out.push_str("frozenset({");
                write_items(out, items)?;
                out.push_str("})");
            }
            PyValue::Recursive { kind, .. } => out.push_str(match kind {
                Container::List => "[...]",
                Container::Tuple => "(...)",
                Container::Dict => "{...}",
                Container::Set => "set(...)",
                Container::FrozenSet => "frozenset(...)",
            }),
            PyValue::Opaque(o) => write_opaque_repr(out, o)?,
        }
        Ok(())
    }
}

fn write_items(out: &mut String, items: &[PyValue]) -> Result<(), PyException> {
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        v.write_repr(out)?;
    }
    Ok(())
}

/// Decimal, or 3.11's `ValueError` past 4300 digits (checked by size first,
/// so a hostile megabyte-long int costs nothing).
fn big_int_repr(le: &[u8]) -> Result<String, PyException> {
    let too_long = || {
        PyException::value_error(format!(
            "Exceeds the limit ({MAX_STR_DIGITS} digits) for integer string conversion; \
             use sys.set_int_max_str_digits() to increase the limit"
        ))
    };
    // 1800 bytes hold at least 2**14391 in magnitude: over 4300 digits.
    if le.len() >= 1800 {
        return Err(too_long());
    }
    let s = bigint_to_decimal(le);
    if s.trim_start_matches('-').len() > MAX_STR_DIGITS {
        return Err(too_long());
    }
    Ok(s)
}

/// `repr(float)`: the shortest string that round-trips (Rust's formatting
/// finds the same digits as CPython's `dtoa`), laid out as Python's
/// `float_repr_style = 'short'` does: scientific notation when the decimal
/// exponent is below -4 or at least 16 (`1e-05`, `1e+16`,
/// `1.2345678901234568e+17`), else positional with at least one decimal
/// (`1.0`, `0.0001`, `1234567890123456.0`).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sci = shortest_sci(f);
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::from(sign);
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs());
    } else if exp < 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// The shortest round-tripping digits in LowerExp form (`-1.2345e17`,
/// `1e-5`, `0e0`). Among equally short candidates CPython's `dtoa` picks
/// the one nearest the exact value, ties to even; Rust's shortest mode
/// breaks ties upwards (`92987533802324.625` gives `...32463` where Python
/// prints `...32462`), so the correctly rounded string of the same length
/// (exact mode rounds half to even) is preferred when it round-trips too.
fn shortest_sci(f: f64) -> String {
    let shortest = format!("{f:e}");
    let digits = shortest.split('e').next().map_or(0, |m| m.bytes().filter(u8::is_ascii_digit).count());
    let nearest = format!("{:.*e}", digits.saturating_sub(1), f);
    if nearest != shortest && nearest.parse::<f64>() == Ok(f) {
        // `{:.Ne}` keeps trailing zeros that `{:e}` drops; the digit count
        // is the same, so there are none to drop here.
        nearest
    } else {
        shortest
    }
}

/// `repr(str)`: single quotes unless the text has `'` and no `"`; escapes
/// the quote, `\\`, `\t`, `\n`, `\r`, other ASCII controls and DEL as
/// `\xNN`, and every code point that `str.isprintable()` rejects as
/// `\xNN`, `\uNNNN` or `\UNNNNNNNN` (lone surrogates included).
pub fn str_repr(s: &PyStr) -> String {
    let mut out = String::with_capacity(s.as_bytes().len() + 2);
    write_str_repr(&mut out, s);
    out
}

fn write_str_repr(out: &mut String, s: &PyStr) {
    let b = s.as_bytes();
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.code_points() {
        match c {
            _ if c == quote as u32 || c == '\\' as u32 => {
                out.push('\\');
                out.push(c as u8 as char);
            }
            0x09 => out.push_str("\\t"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            0..0x20 | 0x7f => {
                let _ = write!(out, "\\x{c:02x}");
            }
            0x20..0x7f => out.push(c as u8 as char),
            _ if is_printable(c) => out.push(char::from_u32(c).expect("printable is not a surrogate")),
            0x80..=0xff => {
                let _ = write!(out, "\\x{c:02x}");
            }
            0x100..=0xffff => {
                let _ = write!(out, "\\u{c:04x}");
            }
            _ => {
                let _ = write!(out, "\\U{c:08x}");
            }
        }
    }
    out.push(quote);
}

/// `repr(bytes)`: `b'...'`, quotes chosen as for `str`, bytes outside
/// printable ASCII as `\xNN`.
pub fn bytes_repr(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() + 3);
    write_bytes_repr(&mut out, b, false);
    out
}

/// `bytearray`'s repr always escapes `'`, even inside double quotes
/// (`bytearray(b"it\'s")`), unlike `bytes` (`b"it's"`).
fn write_bytes_repr(out: &mut String, b: &[u8], is_bytearray: bool) {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') { b'"' } else { b'\'' };
    out.push('b');
    out.push(quote as char);
    for &c in b {
        match c {
            _ if c == quote || c == b'\\' || (is_bytearray && c == b'\'') => {
                out.push('\\');
                out.push(c as char);
            }
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            0x20..0x7f => out.push(c as char),
            _ => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push(quote as char);
}

/// Lower-case builtin names that are types (the rest are functions).
const BUILTIN_TYPES: &[&str] = &[
    "bool", "bytearray", "bytes", "classmethod", "complex", "dict", "enumerate", "filter", "float",
    "frozenset", "int", "list", "map", "memoryview", "object", "property", "range", "reversed", "set",
    "slice", "staticmethod", "str", "super", "tuple", "type", "zip",
];

/// What a global names, guessed from its name since nothing is imported:
/// `type` for classes (builtin types, and names starting with a capital
/// letter), `builtin_function_or_method` for other builtins, `function`
/// otherwise. `Ellipsis` and `NotImplemented` are the singletons.
pub(super) fn global_type_name(module: &str, name: &str) -> &'static str {
    let last = name.rsplit('.').next().unwrap_or(name);
    match (module, last) {
        ("builtins", "Ellipsis") => "ellipsis",
        ("builtins", "NotImplemented") => "NotImplementedType",
        ("builtins", n) if BUILTIN_TYPES.contains(&n) => "type",
        (_, n) if n.starts_with(|c: char| c.is_ascii_uppercase()) => "type",
        ("builtins", _) => "builtin_function_or_method",
        _ => "function",
    }
}

fn write_opaque_repr(out: &mut String, o: &Opaque) -> Result<(), PyException> {
    let qualified =
        if &*o.module == "builtins" { o.name.to_string() } else { format!("{}.{}", o.module, o.name) };
    let addr = fake_address(&o.fingerprint);
    match o.kind {
        OpaqueKind::TooLarge => return Err(too_large()),
        OpaqueKind::TooDeep => {
            return Err(PyException::recursion_error("maximum recursion depth exceeded while getting the repr of an object"));
        }
        OpaqueKind::Instance => {
            let _ = write!(out, "<{qualified} object at {addr:#x}>");
        }
        OpaqueKind::Proxy => {
            // BaseProxy.__repr__: '<%s object, typeid %r at %#x>'.
            let typeid = PyStr::new(o.typeid.as_deref().unwrap_or(""));
            let _ = write!(out, "<{} object, typeid {} at {addr:#x}>", o.name, str_repr(&typeid));
        }
        OpaqueKind::Global => match global_type_name(&o.module, &o.name) {
            "ellipsis" => out.push_str("Ellipsis"),
            "NotImplementedType" => out.push_str("NotImplemented"),
            "type" => {
                let _ = write!(out, "<class '{qualified}'>");
            }
            "builtin_function_or_method" => {
                let _ = write!(out, "<built-in function {}>", o.name);
            }
            _ => {
                let _ = write!(out, "<function {} at {addr:#x}>", o.name);
            }
        },
    }
    Ok(())
}

/// A plausible, stable "address" (16-byte aligned, in the range CPython's
/// heap objects usually have on 64-bit Linux) derived from the
/// fingerprint: equal values print the same address.
fn fake_address(fingerprint: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for &b in fingerprint {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    0x7f00_0000_0000 | (h & 0x00ff_ffff_fff0)
}
