//! Building reply pickles opcode by opcode.
//!
//! The writer never memoizes on its own: items embedded with
//! [`PickleWriter::embed`] carry their own BINPUT/BINGET indices starting at
//! 0, and they stay correct only because nothing else in the reply touches
//! the memo. It never emits FRAME either (frames are optional for readers).

use super::compat;
use super::opcodes as op;
use super::text;

/// An encoder for one pickle. Call the methods in the order Python's pickler
/// would emit opcodes, then [`finish`](PickleWriter::finish).
#[derive(Debug, Clone)]
pub struct PickleWriter {
    buf: Vec<u8>,
    protocol: u8,
}

impl PickleWriter {
    /// Starts a pickle with `PROTO protocol` (clamped to 2..=5).
    pub fn new(protocol: u8) -> Self {
        Self::with_capacity(protocol, 0)
    }

    /// A writer whose buffer already holds `capacity` bytes: a reply that
    /// embeds a large item is then written without growing (and copying)
    /// its buffer again and again.
    pub fn with_capacity(protocol: u8, capacity: usize) -> Self {
        Self::in_buffer(protocol, Vec::new(), capacity)
    }

    /// Like [`PickleWriter::with_capacity`], writing into `buf` (emptied
    /// first): a server reuses one buffer for reply after reply.
    pub fn in_buffer(protocol: u8, mut buf: Vec<u8>, capacity: usize) -> Self {
        let protocol = protocol.clamp(2, op::HIGHEST_PROTOCOL);
        buf.clear();
        buf.reserve(capacity.max(64));
        buf.extend_from_slice(&[op::PROTO, protocol]);
        PickleWriter { buf, protocol }
    }

    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Bytes written so far (no STOP yet).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn none(&mut self) {
        self.buf.push(op::NONE);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.push(if v { op::NEWTRUE } else { op::NEWFALSE });
    }

    /// Chooses the shortest form, as pickle.py's `save_long` does.
    pub fn int(&mut self, v: i64) {
        if (0..=0xff).contains(&v) {
            self.buf.extend([op::BININT1, v as u8]);
        } else if (0..=0xffff).contains(&v) {
            self.buf.push(op::BININT2);
            self.buf.extend((v as u16).to_le_bytes());
        } else if i32::try_from(v).is_ok() {
            self.buf.push(op::BININT);
            self.buf.extend((v as i32).to_le_bytes());
        } else {
            self.big_int(&text::i64_to_le(v));
        }
    }

    /// An int given as little-endian two's complement bytes (LONG1 / LONG4).
    pub fn big_int(&mut self, le_twos_complement: &[u8]) {
        let n = le_twos_complement.len();
        if n < 256 {
            self.buf.extend([op::LONG1, n as u8]);
        } else {
            self.buf.push(op::LONG4);
            self.buf.extend((n as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(le_twos_complement);
    }

    pub fn float(&mut self, v: f64) {
        self.buf.push(op::BINFLOAT);
        self.buf.extend(v.to_be_bytes());
    }

    pub fn str(&mut self, s: &str) {
        self.utf8_bytes(s.as_bytes());
    }

    /// A `str` given as the UTF-8 (`surrogatepass`) bytes CPython reads.
    pub fn utf8_bytes(&mut self, b: &[u8]) {
        let n = b.len();
        if self.protocol >= 4 && n < 256 {
            self.buf.extend([op::SHORT_BINUNICODE, n as u8]);
        } else if self.protocol >= 4 && n > u32::MAX as usize {
            self.buf.push(op::BINUNICODE8);
            self.buf.extend((n as u64).to_le_bytes());
        } else {
            self.buf.push(op::BINUNICODE);
            self.buf.extend((n as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(b);
    }

    /// `bytes`. Protocol 2 has no bytes opcode; like pickle.py it then
    /// writes `_codecs.encode(latin1_text, 'latin1')` (or `bytes()` if empty).
    pub fn bytes(&mut self, b: &[u8]) {
        let n = b.len();
        if self.protocol < 3 {
            if b.is_empty() {
                self.global("builtins", "bytes");
                self.empty_tuple();
            } else {
                self.global("_codecs", "encode");
                let latin1: String = b.iter().map(|&c| c as char).collect();
                self.str(&latin1);
                self.str("latin1");
                self.tuple2();
            }
            self.reduce();
        } else if n < 256 {
            self.buf.extend([op::SHORT_BINBYTES, n as u8]);
            self.buf.extend_from_slice(b);
        } else if self.protocol >= 4 && n > u32::MAX as usize {
            self.buf.push(op::BINBYTES8);
            self.buf.extend((n as u64).to_le_bytes());
            self.buf.extend_from_slice(b);
        } else {
            self.buf.push(op::BINBYTES);
            self.buf.extend((n as u32).to_le_bytes());
            self.buf.extend_from_slice(b);
        }
    }

    /// `bytearray`: BYTEARRAY8 from protocol 5, else `bytearray(bytes)` via REDUCE.
    pub fn bytearray(&mut self, b: &[u8]) {
        if self.protocol >= 5 {
            self.buf.push(op::BYTEARRAY8);
            self.buf.extend((b.len() as u64).to_le_bytes());
            self.buf.extend_from_slice(b);
        } else {
            self.global("builtins", "bytearray");
            if b.is_empty() {
                self.empty_tuple();
            } else {
                self.bytes(b);
                self.tuple1();
            }
            self.reduce();
        }
    }

    /// A Python 2 `str` (SHORT_BINSTRING / BINSTRING), read back with the reader's encoding.
    pub fn byte_string(&mut self, b: &[u8]) {
        if b.len() < 256 {
            self.buf.extend([op::SHORT_BINSTRING, b.len() as u8]);
        } else {
            self.buf.push(op::BINSTRING);
            self.buf.extend((b.len() as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(b);
    }

    pub fn mark(&mut self) {
        self.buf.push(op::MARK);
    }

    pub fn tuple_from_mark(&mut self) {
        self.buf.push(op::TUPLE);
    }

    pub fn empty_tuple(&mut self) {
        self.buf.push(op::EMPTY_TUPLE);
    }

    pub fn tuple1(&mut self) {
        self.buf.push(op::TUPLE1);
    }

    pub fn tuple2(&mut self) {
        self.buf.push(op::TUPLE2);
    }

    pub fn tuple3(&mut self) {
        self.buf.push(op::TUPLE3);
    }

    pub fn empty_list(&mut self) {
        self.buf.push(op::EMPTY_LIST);
    }

    pub fn append(&mut self) {
        self.buf.push(op::APPEND);
    }

    pub fn appends_from_mark(&mut self) {
        self.buf.push(op::APPENDS);
    }

    pub fn empty_dict(&mut self) {
        self.buf.push(op::EMPTY_DICT);
    }

    pub fn setitem(&mut self) {
        self.buf.push(op::SETITEM);
    }

    pub fn setitems_from_mark(&mut self) {
        self.buf.push(op::SETITEMS);
    }

    /// EMPTY_SET (protocol 4 opcode; every Python 3 reader knows it).
    pub fn empty_set(&mut self) {
        self.buf.push(op::EMPTY_SET);
    }

    pub fn additems_from_mark(&mut self) {
        self.buf.push(op::ADDITEMS);
    }

    pub fn frozenset_from_mark(&mut self) {
        self.buf.push(op::FROZENSET);
    }

    /// A module attribute: STACK_GLOBAL from protocol 4, else GLOBAL (whose
    /// text form cannot carry a newline, so such names use STACK_GLOBAL too).
    ///
    /// Below protocol 3 the name is written the way pickle.py writes it
    /// (`builtins.set` as `__builtin__.set`), because readers rename it back.
    pub fn global(&mut self, module: &str, name: &str) {
        let (module, name) = match (self.protocol < 3)
            .then(|| compat::py3_to_py2(module, name))
            .flatten()
        {
            Some((m, Some(n))) => (m, n),
            Some((m, None)) => (m, name),
            None => (module, name),
        };
        if self.protocol >= 4 || module.contains('\n') || name.contains('\n') {
            self.str(module);
            self.str(name);
            self.buf.push(op::STACK_GLOBAL);
        } else {
            self.buf.push(op::GLOBAL);
            self.buf.extend_from_slice(module.as_bytes());
            self.buf.push(b'\n');
            self.buf.extend_from_slice(name.as_bytes());
            self.buf.push(b'\n');
        }
    }

    pub fn reduce(&mut self) {
        self.buf.push(op::REDUCE);
    }

    pub fn newobj(&mut self) {
        self.buf.push(op::NEWOBJ);
    }

    pub fn newobj_ex(&mut self) {
        self.buf.push(op::NEWOBJ_EX);
    }

    /// OBJ: `MARK cls args... OBJ` calls `cls(*args)`.
    pub fn obj_from_mark(&mut self) {
        self.buf.push(op::OBJ);
    }

    pub fn build(&mut self) {
        self.buf.push(op::BUILD);
    }

    pub fn pop(&mut self) {
        self.buf.push(op::POP);
    }

    pub fn pop_mark(&mut self) {
        self.buf.push(op::POP_MARK);
    }

    /// Explicit memo store. Public API users should not need it (see module docs).
    pub(crate) fn put(&mut self, idx: u32) {
        write_put(&mut self.buf, idx);
    }

    pub(crate) fn get(&mut self, idx: u32) {
        write_get(&mut self.buf, idx);
    }

    /// Appends the body of a standalone pickle (from `Decoded::standalone`):
    /// its PROTO header and final STOP are dropped, so the item becomes one
    /// value on this pickle's stack. Its memo indices may overwrite another
    /// embedded item's; harmless, since each only GETs what it PUT itself.
    pub fn embed(&mut self, standalone_pickle: &[u8]) {
        let body = &standalone_pickle[embedded_body(standalone_pickle)];
        debug_assert!(!body.is_empty(), "embedding an empty pickle");
        self.buf.extend_from_slice(body);
    }

    /// Takes what was written so far (the pickle goes on in a new buffer):
    /// the caller sends something of its own in between.
    pub fn take_written(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Appends STOP and returns the pickle.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(op::STOP);
        self.buf
    }
}

/// Where the body of a standalone pickle is: without its PROTO header and
/// final STOP, what [`PickleWriter::embed`] copies in.
pub fn embedded_body(standalone_pickle: &[u8]) -> std::ops::Range<usize> {
    let start = if let [op::PROTO, _, ..] = standalone_pickle { 2 } else { 0 };
    let end = match standalone_pickle {
        [.., op::STOP] => standalone_pickle.len() - 1,
        _ => standalone_pickle.len(),
    };
    start..end.max(start)
}

/// The protocol a pickle declares in its PROTO header (0 when it has none).
/// A reply embedding an item must declare at least this.
pub fn declared_protocol(pickle: &[u8]) -> u8 {
    match pickle {
        [op::PROTO, p, ..] => *p,
        _ => 0,
    }
}

pub(crate) fn write_put(buf: &mut Vec<u8>, idx: u32) {
    if idx < 256 {
        buf.extend([op::BINPUT, idx as u8]);
    } else {
        buf.push(op::LONG_BINPUT);
        buf.extend(idx.to_le_bytes());
    }
}

pub(crate) fn write_get(buf: &mut Vec<u8>, idx: u32) {
    if idx < 256 {
        buf.extend([op::BINGET, idx as u8]);
    } else {
        buf.push(op::LONG_BINGET);
        buf.extend(idx.to_le_bytes());
    }
}
