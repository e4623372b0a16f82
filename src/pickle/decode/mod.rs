//! The pickle VM: runs a pickle's opcodes against a stack and a memo, building
//! an arena of [`Node`]s, and never imports or calls anything.
//!
//! Besides the values it records, for every container/object/global node that
//! was consumed from the stack, the byte range of opcodes that built it (see
//! [`Decoded::standalone`]). Ranges follow from stack discipline: an entry's
//! range starts at the first opcode that contributed to it and ends where the
//! entry above it starts (or at the opcode that consumed it).

use std::borrow::Cow;

use super::builtins::{self, kind_name};
use super::compat;
use super::error::PickleError;
use super::lexer::{Arg, Op, next_op};
use super::node::{Decoded, Global, Items, Node, NodeId, Object, ObjectKind, ObjectOp};
use super::opcodes::{self as op, name};
use super::text;
use super::workspace::{Entry, Mark, Memo, NO_SPAN, Workspace};

pub(super) mod flat;
mod stack;

/// Bounds that keep a hostile pickle from costing more than its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Deepest container nesting and most simultaneously open MARKs.
    /// CPython's own pickler stops near 1000 levels (its recursion limit).
    pub max_depth: usize,
    /// Memo indices must be below this (checked before anything is stored).
    pub max_memo: usize,
    /// Most nodes in the arena.
    pub max_nodes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_depth: 2000,
            max_memo: 1 << 24,
            max_nodes: 1 << 24,
        }
    }
}

/// Decodes one pickle (which must end with its STOP: trailing bytes are an error):
/// by the flat decoder (`decode/flat.rs`) when it takes it, else by the VM.
pub fn decode<'a>(src: &'a [u8], limits: &DecodeLimits) -> Result<Decoded<'a>, PickleError> {
    if src.is_empty() {
        return Err(PickleError::Empty);
    }
    if src.len() >= NO_SPAN as usize {
        return Err(PickleError::TooLarge { len: src.len() });
    }
    if let Some(flat) = flat::decode_flat(src, limits) {
        return Ok(flat);
    }
    decode_vm(src, limits)
}

/// Decodes with the general VM alone (`src` checked by [`decode`]).
pub(super) fn decode_vm<'a>(src: &'a [u8], limits: &DecodeLimits) -> Result<Decoded<'a>, PickleError> {
    let w = Workspace::take();
    let mut vm = Vm {
        src,
        limits,
        nodes: w.nodes,
        depth: w.depth,
        stack: w.stack,
        marks: w.marks,
        memo: Memo::new(w.memo, src.len()),
        pending: None,
        spans: w.spans,
        memoize_at: w.memoize_at,
        protocol: 0,
        code: 0,
        offset: 0,
    };
    let result = vm.run();
    let Vm { nodes, depth, stack, marks, memo, spans, memoize_at, protocol, .. } = vm;
    Workspace::give_working(depth, stack, marks, memo.into_dense());
    let mut decoded = Decoded { src, nodes, root: 0, protocol, spans, memoize_at };
    // On error the arena goes back to the workspace too, as `decoded` drops.
    decoded.root = result?;
    Ok(decoded)
}

struct Vm<'a, 'l> {
    src: &'a [u8],
    limits: &'l DecodeLimits,
    nodes: Vec<Node<'a>>,
    /// Container nesting depth of each node (0 for scalars).
    depth: Vec<u32>,
    stack: Vec<Entry>,
    marks: Vec<Mark>,
    memo: Memo,
    /// Start of discarded opcodes (POP / POP_MARK) that the next pushed entry's
    /// range must include, so ranges stay contiguous.
    pending: Option<usize>,
    /// Per node: the opcode range that built it ([`NO_SPAN`] if none).
    spans: Vec<(u32, u32)>,
    memoize_at: Vec<(usize, u32)>,
    protocol: u8,
    code: u8,
    offset: usize,
}

pub(crate) fn is_spliceable(n: &Node) -> bool {
    matches!(
        n,
        Node::Tuple(_)
            | Node::List(_)
            | Node::Dict(_)
            | Node::Set(_)
            | Node::FrozenSet(_)
            | Node::Global(_)
            | Node::Object(_)
    )
}

impl<'a> Vm<'a, '_> {
    fn run(&mut self) -> Result<NodeId, PickleError> {
        let src = self.src;
        let mut pos = 0;
        loop {
            if pos >= src.len() {
                return Err(PickleError::NoStop);
            }
            // The memo opcodes are a third of most pickles' opcodes: done
            // here, exactly as `step` does them, without building an `Op`.
            // (Requests rarely get here: the flat decoder takes them.)
            let code = src[pos];
            self.code = code;
            self.offset = pos;
            match (code, src.get(pos + 1)) {
                (op::MEMOIZE, _) => {
                    self.pending = None;
                    self.put(code, self.memo.len as u64)?;
                    pos += 1;
                    continue;
                }
                (op::BINPUT, Some(&index)) => {
                    self.pending = None;
                    self.put(code, index as u64)?;
                    pos += 2;
                    continue;
                }
                (op::MARK, _) => {
                    let pending = self.pending.take();
                    self.mark(pending)?;
                    pos += 1;
                    continue;
                }
                _ => {}
            }
            let o = next_op(src, pos)?;
            pos = o.end;
            let pending = self.pending.take();
            if o.code == op::STOP {
                let e = self.take_one()?;
                if o.end < src.len() {
                    return Err(PickleError::TrailingData { offset: o.end, count: src.len() - o.end });
                }
                return Ok(e.node);
            }
            self.step(o, pending)?;
        }
    }

    /// Pushes a `str` decoded from UTF-8 (with surrogates, as Python writes them).
    fn push_text(&mut self, bytes: &'a [u8], pending: Option<usize>) -> Result<(), PickleError> {
        let t = text::decode_utf8_surrogatepass(bytes).map_err(|e| self.invalid(e))?;
        self.push_new(Self::text_node(t), pending)
    }

    /// TUPLE1 / TUPLE2 / TUPLE3: a tuple of the top `n` entries.
    fn tuple_of_top(&mut self, n: usize) -> Result<(), PickleError> {
        let base = self.top_n(n)?;
        let start = self.stack[base].start;
        let ids = self.take_from(base);
        let d = self.depth_over(ids.iter().copied());
        self.push_built(Node::Tuple(ids), d, start)
    }

    /// TUPLE / LIST / FROZENSET / DICT: a container of what is above the last mark.
    fn collect_to_mark(&mut self) -> Result<(), PickleError> {
        let mark = self.pop_mark()?;
        let ids = self.take_from(mark.len);
        let d = self.depth_over(ids.iter().copied());
        let node = match self.code {
            op::TUPLE => Node::Tuple(ids),
            op::LIST => Node::List(ids),
            op::FROZENSET => Node::FrozenSet(ids),
            _ => {
                if !ids.len().is_multiple_of(2) {
                    return Err(self.invalid("odd number of items for DICT"));
                }
                Node::Dict(ids.chunks(2).map(|c| (c[0], c[1])).collect())
            }
        };
        self.push_built(node, d, mark.start)
    }

    /// GET / BINGET / LONG_BINGET: pushes memo entry `raw` again.
    fn push_memo(&mut self, raw: u64, pending: Option<usize>) -> Result<(), PickleError> {
        let node = u32::try_from(raw)
            .ok()
            .and_then(|i| self.memo.get(i))
            .ok_or(PickleError::MemoNotFound {
                index: raw,
                opcode: name(self.code),
                offset: self.offset,
            })?;
        self.push_fresh(node, pending, false);
        Ok(())
    }

    fn step(&mut self, o: Op<'a>, pending: Option<usize>) -> Result<(), PickleError> {
        let arg = o.arg;
        let uint = match arg {
            Arg::UInt(u) => u,
            _ => 0,
        };
        let bytes: &'a [u8] = match arg {
            Arg::Bytes(b) | Arg::Line(b) => b,
            _ => &[],
        };
        match o.code {
            op::PROTO => {
                if uint > op::HIGHEST_PROTOCOL as u64 {
                    return Err(PickleError::UnsupportedProtocol {
                        protocol: uint,
                        offset: o.offset,
                    });
                }
                self.protocol = uint as u8;
                self.pending = pending;
            }
            op::FRAME => {
                if uint > (self.src.len() - o.end) as u64 {
                    return Err(PickleError::Truncated {
                        offset: o.offset,
                        what: "FRAME",
                    });
                }
                self.pending = pending;
            }
            op::PERSID | op::BINPERSID => {
                return Err(PickleError::Unsupported {
                    opcode: name(o.code),
                    offset: o.offset,
                    what: "persistent IDs are not supported",
                });
            }
            op::EXT1 | op::EXT2 | op::EXT4 => {
                return Err(PickleError::Unsupported {
                    opcode: name(o.code),
                    offset: o.offset,
                    what: "copyreg extension codes are not supported",
                });
            }
            op::NEXT_BUFFER | op::READONLY_BUFFER => {
                return Err(PickleError::Unsupported {
                    opcode: name(o.code),
                    offset: o.offset,
                    what: "out-of-band buffers are not supported",
                });
            }
            op::MARK => self.mark(pending)?,
            op::POP => {
                if self.stack.len() > self.boundary() {
                    let e = self.stack.pop().unwrap();
                    self.pending = Some(pending.map_or(e.start, |p| p.min(e.start)));
                } else {
                    let m = self.pop_mark()?;
                    self.stack.truncate(m.len);
                    self.pending = Some(pending.map_or(m.start, |p| p.min(m.start)));
                }
            }
            op::POP_MARK => {
                let m = self.pop_mark()?;
                self.stack.truncate(m.len);
                self.pending = Some(pending.map_or(m.start, |p| p.min(m.start)));
            }
            op::DUP => {
                let e = self.top()?;
                self.push_fresh(e.node, pending, false);
            }
            op::NONE => self.push_new(Node::None, pending)?,
            op::NEWTRUE => self.push_new(Node::Bool(true), pending)?,
            op::NEWFALSE => self.push_new(Node::Bool(false), pending)?,
            op::INT => {
                let n = match bytes {
                    b"00" => Node::Bool(false),
                    b"01" => Node::Bool(true),
                    _ => self.int_node(text::parse_int_text(bytes).map_err(|e| self.invalid(e))?),
                };
                self.push_new(n, pending)?;
            }
            op::LONG => {
                let t = bytes.strip_suffix(b"L").unwrap_or(bytes);
                let n = self.int_node(text::parse_int_text(t).map_err(|e| self.invalid(e))?);
                self.push_new(n, pending)?;
            }
            op::BININT => {
                let Arg::Int(i) = arg else { unreachable!() };
                self.push_new(Node::Int(i), pending)?;
            }
            op::BININT1 | op::BININT2 => self.push_new(Node::Int(uint as i64), pending)?,
            op::LONG1 | op::LONG4 => {
                let n = self.int_node(text::int_from_le(bytes));
                self.push_new(n, pending)?;
            }
            op::FLOAT => {
                let f = text::parse_float_text(bytes).map_err(|e| self.invalid(e))?;
                self.push_new(Node::Float(f), pending)?;
            }
            op::BINFLOAT => {
                let f = f64::from_be_bytes(bytes.try_into().unwrap());
                self.push_new(Node::Float(f), pending)?;
            }
            op::STRING => {
                let q = bytes.first().copied();
                if bytes.len() < 2 || q != bytes.last().copied() || !matches!(q, Some(b'"' | b'\''))
                {
                    return Err(self.invalid("the STRING opcode argument must be quoted"));
                }
                let v =
                    text::escape_decode(&bytes[1..bytes.len() - 1]).map_err(|e| self.invalid(e))?;
                self.push_new(Node::ByteString(Cow::Owned(v)), pending)?;
            }
            op::BINSTRING | op::SHORT_BINSTRING => {
                self.push_new(Node::ByteString(Cow::Borrowed(bytes)), pending)?
            }
            op::BINBYTES | op::SHORT_BINBYTES | op::BINBYTES8 => {
                self.push_new(Node::Bytes(Cow::Borrowed(bytes)), pending)?
            }
            op::BYTEARRAY8 => self.push_new(Node::ByteArray(Cow::Borrowed(bytes)), pending)?,
            op::UNICODE => {
                let t = text::raw_unicode_escape(bytes).map_err(|e| self.invalid(e))?;
                self.push_new(Self::text_node(t), pending)?;
            }
            op::BINUNICODE | op::SHORT_BINUNICODE | op::BINUNICODE8 => self.push_text(bytes, pending)?,
            op::EMPTY_TUPLE => self.push_new(Node::Tuple(Items::new()), pending)?,
            op::EMPTY_LIST => self.push_new(Node::List(Items::new()), pending)?,
            op::EMPTY_DICT => self.push_new(Node::Dict(Vec::new()), pending)?,
            op::EMPTY_SET => self.push_new(Node::Set(Items::new()), pending)?,
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => self.tuple_of_top((o.code - op::TUPLE1 + 1) as usize)?,
            op::TUPLE | op::LIST | op::FROZENSET | op::DICT => self.collect_to_mark()?,
            op::APPEND => {
                let v = self.take_one()?;
                let t = self.top()?.node;
                self.deepen(t, v.node)?;
                match &mut self.nodes[t as usize] {
                    Node::List(l) => l.push(v.node),
                    Node::Object(obj) => obj.ops.push(ObjectOp::Append(v.node)),
                    other => {
                        let k = kind_name(other);
                        return Err(self.invalid(format!("cannot APPEND to {k}")));
                    }
                }
            }
            op::APPENDS | op::SETITEMS | op::ADDITEMS => {
                let mark = self.pop_mark()?;
                let ids = self.take_from(mark.len);
                let t = self.top()?.node;
                for &c in &ids {
                    self.deepen(t, c)?;
                }
                let code = o.code;
                if code == op::SETITEMS && !ids.len().is_multiple_of(2) {
                    return Err(self.invalid("odd number of items for SETITEMS"));
                }
                match (&mut self.nodes[t as usize], code) {
                    (Node::List(l), op::APPENDS) => l.extend(ids),
                    (Node::Dict(d), op::SETITEMS) => d.extend(ids.chunks(2).map(|c| (c[0], c[1]))),
                    (Node::Set(s), op::ADDITEMS) => s.extend(ids),
                    (Node::Object(obj), op::APPENDS) => obj.ops.push(ObjectOp::Extend(ids.into_vec())),
                    (Node::Object(obj), op::SETITEMS) => obj
                        .ops
                        .extend(ids.chunks(2).map(|c| ObjectOp::SetItem(c[0], c[1]))),
                    (Node::Object(obj), _) => obj.ops.push(ObjectOp::AddItems(ids.into_vec())),
                    (other, _) => {
                        let k = kind_name(other);
                        return Err(self.invalid(format!("cannot apply {} to {k}", name(code))));
                    }
                }
            }
            op::SETITEM => {
                let base = self.top_n(2)?;
                self.consume_from(base);
                let (k, v) = (self.stack[base].node, self.stack[base + 1].node);
                self.stack.truncate(base);
                let t = self.top()?.node;
                self.deepen(t, k)?;
                self.deepen(t, v)?;
                match &mut self.nodes[t as usize] {
                    Node::Dict(d) => d.push((k, v)),
                    Node::Object(obj) => obj.ops.push(ObjectOp::SetItem(k, v)),
                    other => {
                        let k = kind_name(other);
                        return Err(self.invalid(format!("cannot SETITEM on {k}")));
                    }
                }
            }
            op::BUILD => {
                let s = self.take_one()?;
                let t = self.top()?.node;
                self.deepen(t, s.node)?;
                match &mut self.nodes[t as usize] {
                    Node::Object(obj) => obj.ops.push(ObjectOp::Build(s.node)),
                    other => {
                        let k = kind_name(other);
                        return Err(self.invalid(format!("cannot BUILD {k}")));
                    }
                }
            }
            op::GLOBAL | op::INST => {
                let Arg::Lines(m, n) = arg else {
                    unreachable!()
                };
                let utf8 = |b: &'a [u8]| {
                    std::str::from_utf8(b).map_err(|_| self.invalid("module or name is not UTF-8"))
                };
                let g = self.global(Cow::Borrowed(utf8(m)?), Cow::Borrowed(utf8(n)?));
                if o.code == op::GLOBAL {
                    self.push_new(g, pending)?;
                } else {
                    let mark = self.pop_mark()?;
                    let ids = self.take_from(mark.len);
                    let cls = self.new_node(g, 0)?;
                    self.instantiate(cls, ids, mark.start)?;
                }
            }
            op::OBJ => {
                let mark = self.pop_mark()?;
                let mut ids = self.take_from(mark.len);
                if ids.is_empty() {
                    return Err(self.invalid("OBJ needs a class after MARK"));
                }
                let cls = ids.remove(0);
                self.instantiate(cls, ids, mark.start)?;
            }
            op::STACK_GLOBAL => {
                let base = self.top_n(2)?;
                let start = self.stack[base].start;
                self.consume_from(base);
                let (m, n) = (self.stack[base].node, self.stack[base + 1].node);
                self.stack.truncate(base);
                let (Node::Str(m), Node::Str(n)) = (&self.nodes[m as usize], &self.nodes[n as usize]) else {
                    return Err(self.invalid("STACK_GLOBAL requires str"));
                };
                let g = self.global(m.clone(), n.clone());
                self.push_built(g, 0, start)?;
            }
            op::REDUCE | op::NEWOBJ | op::NEWOBJ_EX => {
                let n = if o.code == op::NEWOBJ_EX { 3 } else { 2 };
                let base = self.top_n(n)?;
                let start = self.stack[base].start;
                let ids = self.take_from(base);
                let kind = match o.code {
                    op::REDUCE => ObjectKind::Reduce,
                    op::NEWOBJ => ObjectKind::NewObj,
                    _ => ObjectKind::NewObjEx,
                };
                let d = self.depth_over(ids.iter().copied());
                let node = match (kind, builtins::builtin_value(&self.nodes, ids[0], ids[1])) {
                    (ObjectKind::Reduce, Some(v)) => v,
                    _ => Node::Object(Box::new(Object {
                        kind,
                        callable: ids[0],
                        args: ids[1],
                        kwargs: ids.get(2).copied(),
                        ops: Vec::new(),
                    })),
                };
                self.push_built(node, d, start)?;
            }
            op::GET | op::BINGET | op::LONG_BINGET => {
                let raw = if o.code == op::GET { self.text_index(bytes)? } else { uint };
                self.push_memo(raw, pending)?;
            }
            op::PUT | op::BINPUT | op::LONG_BINPUT | op::MEMOIZE => {
                let raw = match o.code {
                    op::PUT => self.text_index(bytes)?,
                    op::MEMOIZE => self.memo.len as u64,
                    _ => uint,
                };
                self.put(o.code, raw)?;
            }
            other => {
                return Err(PickleError::UnknownOpcode {
                    opcode: other,
                    offset: o.offset,
                });
            }
        }
        Ok(())
    }

    /// A global as the reader resolves it: below protocol 3, Python 3 readers
    /// rename Python 2 names (`__builtin__` -> `builtins`), so the node holds
    /// the name that is really imported whatever protocol it is re-encoded in.
    fn global(&self, module: Cow<'a, str>, name: Cow<'a, str>) -> Node<'a> {
        let (module, name) = match (self.protocol < 3)
            .then(|| compat::py2_to_py3(&module, &name))
            .flatten()
        {
            Some((m, Some(n))) => (Cow::Borrowed(m), Cow::Borrowed(n)),
            Some((m, None)) => (Cow::Borrowed(m), name),
            None => (module, name),
        };
        Node::Global(Box::new(Global { module, name }))
    }

    /// OBJ / INST: `cls(*args)`; the args become a tuple node.
    fn instantiate(
        &mut self,
        cls: NodeId,
        args: Items,
        start: usize,
    ) -> Result<(), PickleError> {
        let d = self.depth_over(args.iter().copied());
        let args_id = self.new_node(Node::Tuple(args), d)?;
        let obj = Object {
            kind: ObjectKind::Instantiate,
            callable: cls,
            args: args_id,
            kwargs: None,
            ops: Vec::new(),
        };
        self.push_built(Node::Object(Box::new(obj)), d + 1, start)
    }
}
