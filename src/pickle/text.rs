//! Conversions for opcode arguments that are not plain bytes: protocol-0 text
//! escapes, Python's `utf-8`/`surrogatepass` strings, and integers wider than
//! `i64` (kept as little-endian two's complement, the form LONG1/LONG4 use).

use std::borrow::Cow;

/// A decoded Python `str`. Python strings may hold lone surrogates
/// (`'\ud800'`), which Rust `str` cannot; those are kept as the bytes CPython
/// itself writes for them (UTF-8 with surrogates encoded as 3-byte sequences,
/// i.e. `surrogatepass`).
pub(crate) enum PyText<'a> {
    Utf8(Cow<'a, str>),
    Surrogates(Cow<'a, [u8]>),
}

/// Decodes BINUNICODE-style bytes the way CPython does: `utf-8` with `surrogatepass`.
pub(crate) fn decode_utf8_surrogatepass(b: &[u8]) -> Result<PyText<'_>, String> {
    // Idents and method names are short ASCII: checked a word at a time,
    // without the general validator's setup (a third of its cost here).
    if b.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        return Ok(PyText::Utf8(Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(b) })));
    }
    match std::str::from_utf8(b) {
        Ok(s) => Ok(PyText::Utf8(Cow::Borrowed(s))),
        Err(_) => {
            validate_wtf8(b)?;
            Ok(PyText::Surrogates(Cow::Borrowed(b)))
        }
    }
}

/// UTF-8 validation that also admits encoded surrogates (ED A0..BF xx).
fn validate_wtf8(s: &[u8]) -> Result<(), String> {
    let bad = |i: usize| {
        Err(format!(
            "'utf-8' codec can't decode byte 0x{:02x} in position {i}",
            s[i]
        ))
    };
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        let (need, lo, hi) = match b {
            0x00..=0x7f => (0, 0, 0),
            0xc2..=0xdf => (1, 0x80, 0xbf),
            0xe0 => (2, 0xa0, 0xbf),
            0xe1..=0xef => (2, 0x80, 0xbf),
            0xf0 => (3, 0x90, 0xbf),
            0xf1..=0xf3 => (3, 0x80, 0xbf),
            0xf4 => (3, 0x80, 0x8f),
            _ => return bad(i),
        };
        if need > 0 && i + need >= s.len() {
            return bad(i);
        }
        for k in 1..=need {
            let c = s[i + k];
            let (l, h) = if k == 1 { (lo, hi) } else { (0x80, 0xbf) };
            if c < l || c > h {
                return bad(i);
            }
        }
        i += need + 1;
    }
    Ok(())
}

/// Appends code point `cp` (surrogates allowed) in generalized UTF-8.
fn push_wtf8(out: &mut Vec<u8>, cp: u32) {
    match cp {
        0..=0x7f => out.push(cp as u8),
        0x80..=0x7ff => out.extend([0xc0 | (cp >> 6) as u8, 0x80 | (cp & 0x3f) as u8]),
        0x800..=0xffff => out.extend([
            0xe0 | (cp >> 12) as u8,
            0x80 | ((cp >> 6) & 0x3f) as u8,
            0x80 | (cp & 0x3f) as u8,
        ]),
        _ => out.extend([
            0xf0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3f) as u8,
            0x80 | ((cp >> 6) & 0x3f) as u8,
            0x80 | (cp & 0x3f) as u8,
        ]),
    }
}

fn into_text(bytes: Vec<u8>) -> PyText<'static> {
    match String::from_utf8(bytes) {
        Ok(s) => PyText::Utf8(Cow::Owned(s)),
        Err(e) => PyText::Surrogates(Cow::Owned(e.into_bytes())),
    }
}

/// Python's `raw-unicode-escape` decoding (the UNICODE opcode): bytes are
/// Latin-1 except `\uXXXX` / `\UXXXXXXXX` after an odd run of backslashes.
pub(crate) fn raw_unicode_escape(s: &[u8]) -> Result<PyText<'static>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            push_wtf8(&mut out, s[i] as u32);
            i += 1;
            continue;
        }
        let run_start = i;
        while i < s.len() && s[i] == b'\\' {
            i += 1;
        }
        let run = i - run_start;
        let escape = run % 2 == 1 && i < s.len() && (s[i] == b'u' || s[i] == b'U');
        out.extend(std::iter::repeat_n(
            b'\\',
            if escape { run - 1 } else { run },
        ));
        if !escape {
            continue;
        }
        let n = if s[i] == b'u' { 4 } else { 8 };
        let digits = s
            .get(i + 1..i + 1 + n)
            .ok_or_else(|| format!("truncated \\{}XXXX escape", s[i] as char))?;
        let txt = std::str::from_utf8(digits).map_err(|_| "bad escape".to_string())?;
        let cp = u32::from_str_radix(txt, 16)
            .map_err(|_| format!("truncated \\{}XXXX escape", s[i] as char))?;
        if cp > 0x10ffff {
            return Err("\\Uxxxxxxxx out of range".into());
        }
        push_wtf8(&mut out, cp);
        i += 1 + n;
    }
    Ok(into_text(out))
}

/// Python's `codecs.escape_decode` (the STRING opcode's quoted argument).
pub(crate) fn escape_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = s.get(i) else {
            return Err("Trailing \\ in string".into());
        };
        i += 1;
        match e {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(e),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b't' => out.push(9),
            b'n' => out.push(10),
            b'r' => out.push(13),
            b'v' => out.push(11),
            b'a' => out.push(7),
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u32;
                for _ in 0..2 {
                    match s.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let h = s.get(i..i + 2).and_then(|h| std::str::from_utf8(h).ok());
                match h.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) if h.is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())) => {
                        out.push(v);
                        i += 2;
                    }
                    _ => return Err(format!("invalid \\x escape at position {}", i - 2)),
                }
            }
            _ => {
                out.push(b'\\');
                i -= 1; // the character after an unknown escape is kept as is
            }
        }
    }
    Ok(out)
}

/// An integer value: small ones as `i64`, the rest as minimal little-endian
/// two's complement bytes (never a value that fits in `i64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IntValue {
    Small(i64),
    Big(Vec<u8>),
}

/// Drops redundant sign-extension bytes from little-endian two's complement.
fn trim_sign_extension(v: &mut Vec<u8>) {
    while v.len() > 1 {
        let (top, next) = (v[v.len() - 1], v[v.len() - 2]);
        if (top == 0 && next & 0x80 == 0) || (top == 0xff && next & 0x80 != 0) {
            v.pop();
        } else {
            break;
        }
    }
}

/// Minimal little-endian two's complement of ±`magnitude` (empty for 0,
/// like pickle's `encode_long`).
pub fn bigint_from_magnitude(magnitude: &[u8], negative: bool) -> Vec<u8> {
    let mut v = magnitude_to_twos(magnitude, negative);
    trim_sign_extension(&mut v);
    if v == [0] {
        v.clear();
    }
    v
}

/// Normalizes LONG1/LONG4 payload bytes.
pub(crate) fn int_from_le(b: &[u8]) -> IntValue {
    let mut v = b.to_vec();
    trim_sign_extension(&mut v);
    if v.len() <= 8 {
        let neg = v.last().is_some_and(|&t| t & 0x80 != 0);
        let mut buf = [if neg { 0xff } else { 0 }; 8];
        buf[..v.len()].copy_from_slice(&v);
        IntValue::Small(i64::from_le_bytes(buf))
    } else {
        IntValue::Big(v)
    }
}

/// Minimal little-endian two's complement of `v` (empty for 0, like pickle's encode_long).
pub(crate) fn i64_to_le(v: i64) -> Vec<u8> {
    if v == 0 {
        return Vec::new();
    }
    let mut b = v.to_le_bytes().to_vec();
    while b.len() > 1 {
        let top = b[b.len() - 1];
        let next = b[b.len() - 2];
        if (top == 0 && next & 0x80 == 0) || (top == 0xff && next & 0x80 != 0) {
            b.pop();
        } else {
            break;
        }
    }
    b
}

/// Longest digit string accepted for INT/LONG text (CPython 3.11+ refuses
/// more than 4300 decimal digits too); keeps the quadratic conversion cheap.
const MAX_INT_DIGITS: usize = 4300;

/// Parses INT/LONG text like Python's `int(text, 0)` (sign, optional
/// 0x/0o/0b prefix, underscores between digits, surrounding whitespace).
/// Leading zeros are read as decimal.
pub(crate) fn parse_int_text(s: &[u8]) -> Result<IntValue, String> {
    let err = || {
        format!(
            "invalid literal for int(): {:?}",
            String::from_utf8_lossy(s)
        )
    };
    let t = s.trim_ascii();
    let (neg, t) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = match t {
        [b'0', b'x' | b'X', rest @ ..] => (16u32, rest),
        [b'0', b'o' | b'O', rest @ ..] => (8, rest),
        [b'0', b'b' | b'B', rest @ ..] => (2, rest),
        _ => (10, t),
    };
    if digits.is_empty()
        || digits.len() > MAX_INT_DIGITS
        || digits[0] == b'_'
        || digits[digits.len() - 1] == b'_'
    {
        return Err(err());
    }
    // Magnitude as little-endian u32 limbs.
    let mut limbs: Vec<u32> = Vec::new();
    let mut prev_us = false;
    for &c in digits {
        if c == b'_' {
            if prev_us {
                return Err(err());
            }
            prev_us = true;
            continue;
        }
        prev_us = false;
        let d = (c as char).to_digit(radix).ok_or_else(err)?;
        let mut carry = d as u64;
        for l in limbs.iter_mut() {
            let x = *l as u64 * radix as u64 + carry;
            *l = x as u32;
            carry = x >> 32;
        }
        if carry != 0 {
            limbs.push(carry as u32);
        }
    }
    let mut mag: Vec<u8> = limbs.iter().flat_map(|l| l.to_le_bytes()).collect();
    while mag.last() == Some(&0) {
        mag.pop();
    }
    Ok(int_from_le(&magnitude_to_twos(&mag, neg)))
}

/// Two's complement bytes (one spare byte, normalized later) of ±magnitude.
fn magnitude_to_twos(mag: &[u8], neg: bool) -> Vec<u8> {
    let mut v = mag.to_vec();
    v.push(0);
    if neg {
        let mut carry = 1u16;
        for b in v.iter_mut() {
            let x = (!*b) as u16 + carry;
            *b = x as u8;
            carry = x >> 8;
        }
    }
    v
}

/// Sign and magnitude (little-endian) of a two's complement byte string.
fn twos_to_magnitude(b: &[u8]) -> (bool, Vec<u8>) {
    let neg = b.last().is_some_and(|&t| t & 0x80 != 0);
    let mut v = b.to_vec();
    if neg {
        let mut carry = 1u16;
        for x in v.iter_mut() {
            let y = (!*x) as u16 + carry;
            *x = y as u8;
            carry = y >> 8;
        }
    }
    while v.last() == Some(&0) {
        v.pop();
    }
    (neg, v)
}

/// Decimal text of a little-endian two's complement integer (what Python's
/// `repr(int)` prints).
pub fn bigint_to_decimal(le: &[u8]) -> String {
    let (neg, mag) = twos_to_magnitude(le);
    let mut limbs: Vec<u32> = mag
        .chunks(4)
        .map(|c| c.iter().rev().fold(0u32, |a, &x| (a << 8) | x as u32))
        .collect();
    let mut parts: Vec<u32> = Vec::new();
    while limbs.iter().any(|&l| l != 0) {
        let mut rem = 0u64;
        for l in limbs.iter_mut().rev() {
            let x = (rem << 32) | *l as u64;
            *l = (x / 1_000_000_000) as u32;
            rem = x % 1_000_000_000;
        }
        parts.push(rem as u32);
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
    }
    let mut s = String::from(if neg { "-" } else { "" });
    match parts.pop() {
        None => s.push('0'),
        Some(top) => {
            s.push_str(&top.to_string());
            for p in parts.iter().rev() {
                s.push_str(&format!("{p:09}"));
            }
        }
    }
    s
}

/// The nearest `f64` of a little-endian two's complement integer (like Python's `float(int)`,
/// except that it gives ±inf instead of raising OverflowError).
pub fn bigint_to_f64(le: &[u8]) -> f64 {
    let (neg, mag) = twos_to_magnitude(le);
    let v = mag.iter().rev().fold(0f64, |a, &x| a * 256.0 + x as f64);
    if neg { -v } else { v }
}

/// Parses FLOAT text like Python's `float(text)`.
pub(crate) fn parse_float_text(s: &[u8]) -> Result<f64, String> {
    let t = std::str::from_utf8(s.trim_ascii())
        .map_err(|_| "could not convert string to float".to_string())?;
    let cleaned: Cow<str> = if t.contains('_') {
        Cow::Owned(t.replace('_', ""))
    } else {
        Cow::Borrowed(t)
    };
    cleaned
        .parse::<f64>()
        .map_err(|_| format!("could not convert string to float: {t:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_text_round_trips_through_decimal() {
        for s in [
            "0",
            "-1",
            "255",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "-340282366920938463463374607431768211456",
        ] {
            let v = parse_int_text(s.as_bytes()).unwrap();
            let back = match v {
                IntValue::Small(i) => i.to_string(),
                IntValue::Big(b) => bigint_to_decimal(&b),
            };
            assert_eq!(back, s);
        }
        assert_eq!(parse_int_text(b"0x_ff").ok(), None);
        assert_eq!(parse_int_text(b"0xff\n").unwrap(), IntValue::Small(255));
        assert_eq!(parse_int_text(b"1_000").unwrap(), IntValue::Small(1000));
        assert!(parse_int_text(b"12a").is_err());
        assert!(parse_int_text(b"").is_err());
        assert!(parse_int_text(&vec![b'9'; 5000]).is_err());
    }

    #[test]
    fn small_ints_normalize() {
        assert_eq!(int_from_le(&[]), IntValue::Small(0));
        assert_eq!(int_from_le(&[0xff, 0xff, 0xff]), IntValue::Small(-1));
        assert_eq!(int_from_le(&[0x80, 0x00]), IntValue::Small(128));
        for v in [
            0i64,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            i64::MAX,
            i64::MIN,
            1 << 40,
        ] {
            assert_eq!(int_from_le(&i64_to_le(v)), IntValue::Small(v));
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(escape_decode(br"a\n\x41\101\q\\").unwrap(), b"a\nAA\\q\\");
        assert!(escape_decode(b"\\").is_err());
        assert!(escape_decode(b"\\x4").is_err());
        match raw_unicode_escape(br"\u00e9\\u0041\ud800").unwrap() {
            PyText::Surrogates(b) => assert_eq!(&b[..], b"\xc3\xa9\\\\u0041\xed\xa0\x80"),
            PyText::Utf8(s) => panic!("expected surrogates, got {s:?}"),
        }
        assert!(decode_utf8_surrogatepass(b"\xed\xa0\x80").is_ok());
        assert!(decode_utf8_surrogatepass(b"\xff").is_err());
        assert!(decode_utf8_surrogatepass(b"\xe0\x80").is_err());
    }
}
