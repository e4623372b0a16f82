//! Cutting one node out of a decoded pickle as a complete pickle of its own.
//!
//! The hot path is the splice: a request's item was built by one contiguous
//! range of opcodes, so the stored item is that range copied verbatim, minus
//! FRAMEs (a frame may span the cut, and frames are optional for readers),
//! with every memo store rewritten to BINPUT/LONG_BINPUT with compact indices
//! 0, 1, 2... (CPython's C unpickler sizes its memo table by the largest
//! index it sees) and every memo fetch remapped to match.
//!
//! When the range fetches a memo entry stored outside it (the item shares an
//! object with the rest of the request, e.g. `q.put('put')` reuses the
//! interned method name), or has no recorded range, the node is re-encoded
//! from the arena instead. The re-encoder handles shared references and
//! cycles with its own memo, like pickle.py: a tuple (or frozenset, or
//! constructed object) whose inputs lead back to it is built once by the
//! inner reference, and the outer copy drops its inputs (POP / POP_MARK) and
//! fetches the finished one. It is iterative, so deep graphs cannot overflow
//! the Rust stack.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use super::compat;
use super::workspace::NO_SPAN;
use super::lexer::{Arg, next_op};
use super::node::{Decoded, Node, NodeId, ObjectKind, ObjectOp};
use super::opcodes::{self as op, introduced_in};
use super::text::{IntValue, parse_int_text};
use super::writer::{PickleWriter, write_get, write_put};

/// Items per APPENDS/SETITEMS/ADDITEMS batch (pickle.py's `_BATCHSIZE`).
const BATCH: usize = 1000;

/// A pickle re-encoded in protocol 2 with Python 2 names, as Python 3's
/// `pickle.dumps(obj, 2)` (`fix_imports`) writes it, for a Python 2.7
/// reader: `bytes` as `_codecs.encode(u'...', 'latin1')` (a 2.7 `str`),
/// sets as `set([...])`, `queue.Empty` as `Queue.Empty`; a Python 2 `str`
/// stays one. `None` if `pickle` does not decode.
///
/// A reply whose kind is `#TRACEBACK` or `#UNSERIALIZABLE` carries its text
/// as a 2.7 `str` (UTF-8), as a 2.7 server sends it: 2.7's
/// `convert_to_error` asserts `type(result) is str`.
pub fn for_python2(pickle: &[u8]) -> Option<Vec<u8>> {
    let d = super::decode(pickle, &super::DecodeLimits::default()).ok()?;
    if let Some(&[kind, text]) = d.as_tuple(d.root())
        && let (Some(k @ ("#TRACEBACK" | "#UNSERIALIZABLE")), Some(text)) = (d.as_str(kind), d.as_str(text))
    {
        let mut w = PickleWriter::new(2);
        w.byte_string(k.as_bytes());
        w.byte_string(text.as_bytes());
        w.tuple2();
        return Some(w.finish());
    }
    Some(d.reencode(d.root(), 2))
}

/// Whether Python 3's default unpickler (`encoding='ASCII'`) reads a
/// stored item: not if a Python 2 client wrote a `str` of non-ASCII bytes
/// (which also covers a 2.7 `datetime`, whose state is such a `str`). Only
/// items of protocol 2 or lower are decoded to check: Python 3 clients
/// write 3 or more, so their items cost nothing here.
pub fn python3_reads(item: &[u8]) -> bool {
    if super::declared_protocol(item) > 2 {
        return true;
    }
    let Ok(d) = super::decode(item, &super::DecodeLimits::default()) else { return true };
    !d.nodes.iter().any(|n| matches!(n, Node::ByteString(b) if !b.is_ascii()))
}

impl<'a> Decoded<'a> {
    /// A complete pickle (`PROTO n`, body, STOP) that unpickles to an object
    /// graph equal to node `id`, in the source's protocol (at least 2; at
    /// least 3 when re-encoded). It means the same when embedded in a reply
    /// of any protocol from 3 up (see [`PickleWriter::embed`]).
    pub fn standalone(&self, id: NodeId) -> Vec<u8> {
        self.standalone_max(id, op::HIGHEST_PROTOCOL)
    }

    /// Like [`standalone`](Decoded::standalone), for a reader that knows at
    /// most protocol `max_protocol` (3.6 and 3.7 know 4): the splice is used
    /// only when the item's opcodes all exist in that protocol.
    pub fn standalone_max(&self, id: NodeId, max_protocol: u8) -> Vec<u8> {
        let max = max_protocol.clamp(3, op::HIGHEST_PROTOCOL);
        match self.splice(id, max) {
            Some(p) => p,
            None => self.reencode(id, self.protocol.clamp(3, max)),
        }
    }

    /// The spliced form, or `None` when the node has no self-contained range.
    pub(crate) fn splice(&self, id: NodeId, max: u8) -> Option<Vec<u8>> {
        let (start, end) = match *self.spans.get(id as usize)? {
            (NO_SPAN, _) => return None,
            (start, end) => (start as usize, end as usize),
        };
        let mut out = Vec::with_capacity(end - start + 3);
        out.extend([op::PROTO, self.protocol.clamp(2, max)]);
        let mut remap: HashMap<u32, u32> = HashMap::new();
        let mut next = 0u32;
        let mut pos = start;
        let mut run = start; // start of bytes still to copy verbatim
        while pos < end {
            let o = next_op(self.src, pos).ok()?;
            pos = o.end;
            let text_index = |arg: Arg| match arg {
                Arg::Line(l) => match parse_int_text(l) {
                    Ok(IntValue::Small(i)) => u32::try_from(i).ok(),
                    _ => None,
                },
                _ => None,
            };
            let old = match (o.code, o.arg) {
                (op::PUT | op::GET, a) => Some(text_index(a)?),
                (op::BINPUT | op::LONG_BINPUT | op::BINGET | op::LONG_BINGET, Arg::UInt(u)) => {
                    Some(u as u32)
                }
                (op::MEMOIZE, _) => {
                    let i = self
                        .memoize_at
                        .binary_search_by_key(&o.offset, |&(off, _)| off)
                        .ok()?;
                    Some(self.memoize_at[i].1)
                }
                (op::FRAME | op::PROTO, _) => None,
                // DUP copies whatever is on the stack, which may have been
                // pushed before the range starts (no pickler emits DUP; a
                // crafted pickle does): re-encode instead. Found by fuzzing.
                (op::DUP, _) => return None,
                // Below protocol 3 readers rename Python 2 globals; once this
                // item is embedded in a protocol 4 reply they would not, so
                // such names must be re-encoded under their Python 3 names.
                (op::GLOBAL | op::INST, Arg::Lines(m, n)) if self.protocol < 3 => {
                    let m = std::str::from_utf8(m).ok()?;
                    let n = std::str::from_utf8(n).ok()?;
                    if compat::py2_to_py3(m, n).is_some() {
                        return None;
                    }
                    continue;
                }
                (op::STACK_GLOBAL, _) if self.protocol < 3 => return None,
                (c, _) => {
                    if introduced_in(c)? > max {
                        return None;
                    }
                    continue;
                }
            };
            out.extend_from_slice(&self.src[run..o.offset]);
            run = o.end;
            if let Some(old) = old {
                match o.code {
                    op::GET | op::BINGET | op::LONG_BINGET => {
                        write_get(&mut out, *remap.get(&old)?)
                    }
                    _ => {
                        remap.insert(old, next);
                        write_put(&mut out, next);
                        next += 1;
                    }
                }
            }
        }
        if pos != end {
            return None;
        }
        out.extend_from_slice(&self.src[run..end]);
        out.push(op::STOP);
        Some(out)
    }

    /// Encodes node `id` from the arena at `protocol` (2..=5).
    pub(crate) fn reencode(&self, id: NodeId, protocol: u8) -> Vec<u8> {
        // Starting costs nothing (no task vector, an empty Fx map): most
        // items are one scalar, encoded by the first call alone.
        let mut enc = Encoder { d: self, w: PickleWriter::new(protocol), memo: FxHashMap::default(), tasks: Vec::new() };
        enc.encode(id);
        enc.run();
        enc.w.finish()
    }
}

/// How to throw away a constructor's inputs when the value already exists.
#[derive(Clone, Copy)]
enum Discard {
    Pops(u8),
    Mark,
}

enum Task {
    Encode(NodeId),
    Byte(u8),
    /// A constructor's inputs are on the stack: build and memoize the node,
    /// or, if a cycle already built it, discard them and fetch it.
    Finish {
        id: NodeId,
        discard: Discard,
        code: u8,
    },
    /// Batches of a list's/dict's/set's items (or an object's ops) from `from` on.
    Items {
        id: NodeId,
        from: usize,
    },
}

struct Encoder<'d, 'a> {
    d: &'d Decoded<'a>,
    w: PickleWriter,
    /// Keyed by the decoder's own node ids (Fx-hashed: no attacker picks them).
    memo: FxHashMap<NodeId, u32>,
    tasks: Vec<Task>,
}

impl Encoder<'_, '_> {
    fn schedule(&mut self, seq: impl IntoIterator<Item = Task, IntoIter: DoubleEndedIterator>) {
        self.tasks.extend(seq.into_iter().rev());
    }

    fn put(&mut self, id: NodeId) {
        let idx = self.memo.len() as u32;
        self.memo.insert(id, idx);
        self.w.put(idx);
    }

    fn run(&mut self) {
        while let Some(t) = self.tasks.pop() {
            match t {
                Task::Byte(b) => self.raw(b),
                Task::Encode(id) => self.encode(id),
                Task::Finish { id, discard, code } => self.finish(id, discard, code),
                Task::Items { id, from } => self.items(id, from),
            }
        }
    }

    fn raw(&mut self, b: u8) {
        match b {
            op::MARK => self.w.mark(),
            op::APPEND => self.w.append(),
            op::APPENDS => self.w.appends_from_mark(),
            op::SETITEM => self.w.setitem(),
            op::SETITEMS => self.w.setitems_from_mark(),
            op::ADDITEMS => self.w.additems_from_mark(),
            op::BUILD => self.w.build(),
            op::TUPLE1 => self.w.tuple1(),
            op::EMPTY_LIST => self.w.empty_list(),
            _ => unreachable!("raw opcode {b:#x}"),
        }
    }

    fn encode(&mut self, id: NodeId) {
        if let Some(&m) = self.memo.get(&id) {
            self.w.get(m);
            return;
        }
        let p = self.w.protocol();
        let d = self.d;
        match d.node(id) {
            Node::None => self.w.none(),
            Node::Bool(b) => self.w.bool(*b),
            Node::Int(i) => self.w.int(*i),
            Node::Float(f) => self.w.float(*f),
            Node::BigInt(b) => {
                self.w.big_int(b);
                self.put(id);
            }
            Node::Str(s) => {
                self.w.str(s);
                self.put(id);
            }
            Node::StrSurrogates(b) => {
                self.w.utf8_bytes(b);
                self.put(id);
            }
            Node::Bytes(b) => {
                self.w.bytes(b);
                self.put(id);
            }
            Node::ByteArray(b) => {
                self.w.bytearray(b);
                self.put(id);
            }
            Node::ByteString(b) => {
                self.w.byte_string(b);
                self.put(id);
            }
            Node::Global(g) => {
                self.w.global(&g.module, &g.name);
                self.put(id);
            }
            Node::Tuple(v) if v.is_empty() => self.w.empty_tuple(),
            Node::Tuple(v) => {
                let n = v.len();
                let (discard, code) = match n {
                    1..=3 => (Discard::Pops(n as u8), op::TUPLE1 + n as u8 - 1),
                    _ => (Discard::Mark, op::TUPLE),
                };
                if n > 3 {
                    self.w.mark();
                }
                self.schedule(v.iter().map(|&c| Task::Encode(c)).chain([Task::Finish {
                    id,
                    discard,
                    code,
                }]));
            }
            Node::List(_) | Node::Dict(_) => {
                if matches!(d.node(id), Node::List(_)) {
                    self.w.empty_list();
                } else {
                    self.w.empty_dict();
                }
                self.put(id);
                self.tasks.push(Task::Items { id, from: 0 });
            }
            Node::Set(_) if p >= 4 => {
                self.w.empty_set();
                self.put(id);
                self.tasks.push(Task::Items { id, from: 0 });
            }
            Node::FrozenSet(v) if p >= 4 => {
                self.w.mark();
                let fin = Task::Finish {
                    id,
                    discard: Discard::Mark,
                    code: op::FROZENSET,
                };
                self.schedule(v.iter().map(|&c| Task::Encode(c)).chain([fin]));
            }
            Node::Set(v) | Node::FrozenSet(v) => {
                // Protocols 2 and 3: `set(list)` / `frozenset(list)`, as pickle.py.
                let name = if matches!(d.node(id), Node::Set(_)) {
                    "set"
                } else {
                    "frozenset"
                };
                self.w.global("builtins", name);
                let fin = Task::Finish {
                    id,
                    discard: Discard::Pops(2),
                    code: op::REDUCE,
                };
                if v.is_empty() {
                    self.w.empty_tuple();
                    self.tasks.push(fin);
                } else {
                    let mut seq = vec![Task::Byte(op::EMPTY_LIST)];
                    for chunk in v.chunks(BATCH) {
                        seq.push(Task::Byte(op::MARK));
                        seq.extend(chunk.iter().map(|&c| Task::Encode(c)));
                        seq.push(Task::Byte(op::APPENDS));
                    }
                    seq.extend([Task::Byte(op::TUPLE1), fin]);
                    self.schedule(seq);
                }
            }
            Node::Object(o) => {
                let (discard, code) = match o.kind {
                    ObjectKind::Reduce => (Discard::Pops(2), op::REDUCE),
                    ObjectKind::NewObj => (Discard::Pops(2), op::NEWOBJ),
                    ObjectKind::NewObjEx => (Discard::Pops(3), op::NEWOBJ_EX),
                    ObjectKind::Instantiate => (Discard::Mark, op::OBJ),
                };
                let fin = Task::Finish { id, discard, code };
                match (o.kind, d.node(o.args)) {
                    (ObjectKind::Instantiate, Node::Tuple(args)) => {
                        self.w.mark();
                        let seq = [Task::Encode(o.callable)].into_iter();
                        self.schedule(
                            seq.chain(args.iter().map(|&a| Task::Encode(a)))
                                .chain([fin]),
                        );
                    }
                    _ => {
                        let seq = [Task::Encode(o.callable), Task::Encode(o.args)].into_iter();
                        self.schedule(seq.chain(o.kwargs.map(Task::Encode)).chain([fin]));
                    }
                }
            }
        }
    }

    fn finish(&mut self, id: NodeId, discard: Discard, code: u8) {
        if let Some(&m) = self.memo.get(&id) {
            match discard {
                Discard::Pops(n) => (0..n).for_each(|_| self.w.pop()),
                Discard::Mark => self.w.pop_mark(),
            }
            self.w.get(m);
            return;
        }
        match code {
            op::TUPLE => self.w.tuple_from_mark(),
            op::TUPLE1 => self.w.tuple1(),
            op::TUPLE2 => self.w.tuple2(),
            op::TUPLE3 => self.w.tuple3(),
            op::FROZENSET => self.w.frozenset_from_mark(),
            op::REDUCE => self.w.reduce(),
            op::NEWOBJ => self.w.newobj(),
            op::NEWOBJ_EX => self.w.newobj_ex(),
            op::OBJ => self.w.obj_from_mark(),
            _ => unreachable!("finish opcode {code:#x}"),
        }
        self.put(id);
        if matches!(self.d.node(id), Node::Object(_)) {
            self.tasks.push(Task::Items { id, from: 0 });
        }
    }

    /// Schedules the next batch of a container's items (or object's ops).
    fn items(&mut self, id: NodeId, from: usize) {
        let d = self.d;
        let mut seq = Vec::new();
        let total = match d.node(id) {
            Node::List(v) | Node::Set(v) => {
                let chunk = &v[from..(from + BATCH).min(v.len())];
                let (one, many) = if matches!(d.node(id), Node::List(_)) {
                    (op::APPEND, op::APPENDS)
                } else {
                    (op::ADDITEMS, op::ADDITEMS)
                };
                if chunk.len() == 1 && one != many {
                    seq.extend([Task::Encode(chunk[0]), Task::Byte(one)]);
                } else if !chunk.is_empty() {
                    seq.push(Task::Byte(op::MARK));
                    seq.extend(chunk.iter().map(|&c| Task::Encode(c)));
                    seq.push(Task::Byte(many));
                }
                v.len()
            }
            Node::Dict(v) => {
                let chunk = &v[from..(from + BATCH).min(v.len())];
                if chunk.len() == 1 {
                    seq.extend([
                        Task::Encode(chunk[0].0),
                        Task::Encode(chunk[0].1),
                        Task::Byte(op::SETITEM),
                    ]);
                } else if !chunk.is_empty() {
                    seq.push(Task::Byte(op::MARK));
                    seq.extend(
                        chunk
                            .iter()
                            .flat_map(|&(k, v)| [Task::Encode(k), Task::Encode(v)]),
                    );
                    seq.push(Task::Byte(op::SETITEMS));
                }
                v.len()
            }
            Node::Object(o) => {
                for oop in &o.ops[from..(from + BATCH).min(o.ops.len())] {
                    match oop {
                        ObjectOp::Append(x) => {
                            seq.extend([Task::Encode(*x), Task::Byte(op::APPEND)])
                        }
                        ObjectOp::Extend(xs) | ObjectOp::AddItems(xs) => {
                            let close = if matches!(oop, ObjectOp::Extend(_)) {
                                op::APPENDS
                            } else {
                                op::ADDITEMS
                            };
                            seq.push(Task::Byte(op::MARK));
                            seq.extend(xs.iter().map(|&x| Task::Encode(x)));
                            seq.push(Task::Byte(close));
                        }
                        ObjectOp::SetItem(k, v) => seq.extend([
                            Task::Encode(*k),
                            Task::Encode(*v),
                            Task::Byte(op::SETITEM),
                        ]),
                        ObjectOp::Build(s) => seq.extend([Task::Encode(*s), Task::Byte(op::BUILD)]),
                    }
                }
                o.ops.len()
            }
            _ => 0,
        };
        if from + BATCH < total {
            seq.push(Task::Items {
                id,
                from: from + BATCH,
            });
        }
        self.schedule(seq);
    }
}
