//! Splitting a pickle into opcodes and their arguments, with no meaning
//! attached.
//!
//! Both the decoding VM and the splice path (which copies an item's opcodes
//! verbatim) walk the stream with [`next_op`], so they agree on where every
//! opcode starts and ends. Every claimed length is checked against the bytes
//! that are actually left before anything is sliced, so a hostile
//! `BINBYTES8 2**60` costs nothing.

use super::error::PickleError;
use super::opcodes::*;

/// The argument of one opcode, still raw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Arg<'a> {
    None,
    /// Signed fixed-width integer (BININT).
    Int(i64),
    /// Unsigned fixed-width integer (BININT1/2, memo indices, PROTO, FRAME, EXT*).
    UInt(u64),
    /// Length-prefixed payload (strings, bytes, LONG1/4 bodies) or BINFLOAT's 8 bytes.
    Bytes(&'a [u8]),
    /// One newline-terminated text argument, without the newline.
    Line(&'a [u8]),
    /// Two newline-terminated text arguments (GLOBAL, INST).
    Lines(&'a [u8], &'a [u8]),
}

/// One opcode: its byte, where it starts, where the next one starts, its argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Op<'a> {
    pub code: u8,
    pub offset: usize,
    pub end: usize,
    pub arg: Arg<'a>,
}

fn take<'a>(
    src: &'a [u8],
    pos: usize,
    n: u64,
    what: &'static str,
) -> Result<&'a [u8], PickleError> {
    let left = (src.len() - pos) as u64;
    if n > left {
        return Err(PickleError::Truncated { offset: pos, what });
    }
    Ok(&src[pos..pos + n as usize])
}

fn line<'a>(src: &'a [u8], pos: usize, what: &'static str) -> Result<&'a [u8], PickleError> {
    match src[pos..].iter().position(|&b| b == b'\n') {
        Some(n) => Ok(&src[pos..pos + n]),
        None => Err(PickleError::Truncated { offset: pos, what }),
    }
}

pub(crate) fn uint_le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64)
}

/// Reads the opcode starting at `pos` (which must be `< src.len()`).
pub(crate) fn next_op(src: &[u8], pos: usize) -> Result<Op<'_>, PickleError> {
    let code = src[pos];
    let p = pos + 1;
    let fixed = |n: u64| take(src, p, n, name(code));
    // Length-prefixed payload: `w` bytes of little-endian length, then data.
    let sized = |w: u64, signed: bool| -> Result<(&[u8], usize), PickleError> {
        let len_bytes = take(src, p, w, name(code))?;
        let mut n = uint_le(len_bytes);
        if signed && w == 4 && n >= 1 << 31 {
            return Err(PickleError::Invalid {
                opcode: name(code),
                offset: pos,
                msg: "negative byte count".into(),
            });
        }
        if w == 8 && n > isize::MAX as u64 {
            n = u64::MAX; // cannot exist; reported as truncated below
        }
        let data = take(src, p + w as usize, n, name(code))?;
        Ok((data, p + w as usize + data.len()))
    };
    let (arg, end) = match code {
        MARK | STOP | POP | POP_MARK | DUP | NONE | BINPERSID | REDUCE | APPEND | BUILD | DICT
        | EMPTY_DICT | APPENDS | LIST | EMPTY_LIST | OBJ | SETITEM | TUPLE | EMPTY_TUPLE
        | SETITEMS | NEWOBJ | TUPLE1 | TUPLE2 | TUPLE3 | NEWTRUE | NEWFALSE | EMPTY_SET
        | ADDITEMS | FROZENSET | NEWOBJ_EX | STACK_GLOBAL | MEMOIZE | NEXT_BUFFER
        | READONLY_BUFFER => (Arg::None, p),
        FLOAT | INT | LONG | PERSID | STRING | UNICODE | GET | PUT => {
            let l = line(src, p, name(code))?;
            (Arg::Line(l), p + l.len() + 1)
        }
        GLOBAL | INST => {
            let a = line(src, p, name(code))?;
            let q = p + a.len() + 1;
            let b = line(src, q, name(code))?;
            (Arg::Lines(a, b), q + b.len() + 1)
        }
        BININT1 | BINGET | BINPUT | PROTO | EXT1 => (Arg::UInt(fixed(1)?[0] as u64), p + 1),
        BININT2 | EXT2 => (Arg::UInt(uint_le(fixed(2)?)), p + 2),
        BININT => {
            let b = fixed(4)?;
            (
                Arg::Int(i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64),
                p + 4,
            )
        }
        LONG_BINGET | LONG_BINPUT | EXT4 => (Arg::UInt(uint_le(fixed(4)?)), p + 4),
        FRAME => (Arg::UInt(uint_le(fixed(8)?)), p + 8),
        BINFLOAT => (Arg::Bytes(fixed(8)?), p + 8),
        SHORT_BINSTRING | SHORT_BINBYTES | SHORT_BINUNICODE | LONG1 => {
            let (d, e) = sized(1, false)?;
            (Arg::Bytes(d), e)
        }
        BINSTRING | LONG4 => {
            let (d, e) = sized(4, true)?;
            (Arg::Bytes(d), e)
        }
        BINBYTES | BINUNICODE => {
            let (d, e) = sized(4, false)?;
            (Arg::Bytes(d), e)
        }
        BINUNICODE8 | BINBYTES8 | BYTEARRAY8 => {
            let (d, e) = sized(8, false)?;
            (Arg::Bytes(d), e)
        }
        _ => {
            return Err(PickleError::UnknownOpcode {
                opcode: code,
                offset: pos,
            });
        }
    };
    Ok(Op {
        code,
        offset: pos,
        end,
        arg,
    })
}
