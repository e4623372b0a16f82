//! A straight-line decoder for *flat* pickles: scalars and tuples of them,
//! with their memo opcodes. Nearly every request a client sends is one
//! (`(ident, 'put', (item,), {})` with a scalar item), and decoding it
//! through the general VM cost about 3,000 instructions, most of them the
//! VM's generality (an opcode enum per step, error plumbing, a depth
//! vector, the working vectors of the thread's workspace).
//!
//! This decoder keeps its stack, marks and memo in small fixed arrays and
//! gives up (returns `None`) on anything else: an opcode outside its set,
//! a full array, or anything the VM would report as an error. The VM then
//! decodes the pickle from the start, so errors and every other shape
//! keep exactly one implementation. When it succeeds, the result is the
//! one the VM gives, node for node, with the same ranges and memo record
//! (`src/pickle/tests/flat.rs` checks the two against each other).

use super::super::lexer::uint_le;
use super::super::node::{Decoded, Items, Node, NodeId};
use super::super::opcodes as op;
use super::super::text;
use super::super::workspace::{NO_SPAN, Workspace};
use super::{DecodeLimits, Vm};

/// Fixed capacities: a request uses a handful of each.
const STACK: usize = 16;
const MARKS: usize = 4;
const MEMO: usize = 16;

/// A stack entry, as the VM's, with the node's container depth.
#[derive(Clone, Copy, Default)]
struct Slot {
    node: NodeId,
    /// Offset of the first opcode of this entry's range.
    start: u32,
    depth: u32,
    /// The entry built a tuple or dict (the VM's `origin` and
    /// `is_spliceable`): its range is recorded when consumed.
    spliceable: bool,
}

/// Decodes `src` if it is a flat pickle within `limits`; `None` otherwise
/// (the caller then runs the VM, which decodes or reports the error).
pub(in crate::pickle) fn decode_flat<'a>(src: &'a [u8], limits: &DecodeLimits) -> Option<Decoded<'a>> {
    let (nodes, spans, memoize_at) = Workspace::take_arena();
    let mut decoded = Decoded { src, nodes, root: 0, protocol: 0, spans, memoize_at };
    // On `None` the arena goes back to the workspace as `decoded` drops.
    decoded.root = Flat::default().run(&mut decoded, limits)?;
    Some(decoded)
}

#[derive(Default)]
struct Flat {
    stack: [Slot; STACK],
    len: usize,
    /// Stack heights at each open MARK, and where each MARK is.
    marks: [(usize, u32); MARKS],
    open: usize,
    /// (index, node, depth) of each memo entry; indices are distinct.
    memo: [(u32, NodeId, u32); MEMO],
    memo_len: usize,
}

impl Flat {
    fn run<'a>(&mut self, d: &mut Decoded<'a>, limits: &DecodeLimits) -> Option<NodeId> {
        let src: &'a [u8] = d.src;
        let max_nodes = limits.max_nodes.min(u32::MAX as usize);
        let mut pos = 0;
        loop {
            let code = *src.get(pos)?;
            let at = pos;
            // The argument bytes, checked against what is left.
            let arg = |n: usize| src.get(at + 1..at + 1 + n);
            let node = match code {
                op::PROTO => {
                    let v = arg(1)?[0];
                    if v > op::HIGHEST_PROTOCOL {
                        return None;
                    }
                    d.protocol = v;
                    pos += 2;
                    continue;
                }
                op::FRAME => {
                    if uint_le(arg(8)?) > (src.len() - at - 9) as u64 {
                        return None;
                    }
                    pos += 9;
                    continue;
                }
                op::MARK => {
                    if self.open == MARKS || self.open >= limits.max_depth {
                        return None;
                    }
                    self.marks[self.open] = (self.len, at as u32);
                    self.open += 1;
                    pos += 1;
                    continue;
                }
                op::MEMOIZE | op::BINPUT => {
                    let (index, next) = if code == op::MEMOIZE { (self.memo_len as u32, at + 1) } else { (arg(1)?[0] as u32, at + 2) };
                    if index as usize >= limits.max_memo || self.len <= self.boundary() {
                        return None;
                    }
                    let top = self.stack[self.len - 1];
                    match self.memo[..self.memo_len].iter_mut().find(|m| m.0 == index) {
                        Some(m) => *m = (index, top.node, top.depth),
                        None if self.memo_len < MEMO => {
                            self.memo[self.memo_len] = (index, top.node, top.depth);
                            self.memo_len += 1;
                        }
                        None => return None,
                    }
                    if code == op::MEMOIZE {
                        d.memoize_at.push((at, index));
                    }
                    pos = next;
                    continue;
                }
                op::BINGET => {
                    let index = arg(1)?[0] as u32;
                    let &(_, node, depth) = self.memo[..self.memo_len].iter().find(|m| m.0 == index)?;
                    self.push(Slot { node, start: at as u32, depth, spliceable: false })?;
                    pos += 2;
                    continue;
                }
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 | op::TUPLE => {
                    let (base, start) = if code == op::TUPLE {
                        if self.open == 0 {
                            return None;
                        }
                        self.open -= 1;
                        self.marks[self.open]
                    } else {
                        let n = (code - op::TUPLE1 + 1) as usize;
                        if self.len < self.boundary() + n {
                            return None;
                        }
                        (self.len - n, self.stack[self.len - n].start)
                    };
                    self.consume(d, base, at);
                    let items = &self.stack[base..self.len];
                    let depth = 1 + items.iter().map(|s| s.depth).max().unwrap_or(0);
                    if depth as usize > limits.max_depth || d.nodes.len() >= max_nodes {
                        return None;
                    }
                    let children = match items.len() {
                        // Written inline, without SmallVec's generic extend.
                        n @ 0..=4 => {
                            let mut inline = [0; 4];
                            for (c, s) in inline.iter_mut().zip(items) {
                                *c = s.node;
                            }
                            Items::from_buf_and_len(inline, n)
                        }
                        _ => items.iter().map(|s| s.node).collect(),
                    };
                    self.len = base;
                    let id = d.nodes.len() as NodeId;
                    d.nodes.push(Node::Tuple(children));
                    d.spans.push((NO_SPAN, NO_SPAN));
                    self.push(Slot { node: id, start, depth, spliceable: true })?;
                    pos += 1;
                    continue;
                }
                op::STOP => {
                    if self.len <= self.boundary() || at + 1 != src.len() {
                        return None;
                    }
                    self.consume(d, self.len - 1, at);
                    return Some(self.stack[self.len - 1].node);
                }
                op::NONE => (Node::None, 1),
                op::NEWTRUE => (Node::Bool(true), 1),
                op::NEWFALSE => (Node::Bool(false), 1),
                op::EMPTY_TUPLE => (Node::Tuple(Items::new()), 1),
                op::EMPTY_DICT => (Node::Dict(Vec::new()), 1),
                op::BININT1 => (Node::Int(arg(1)?[0] as i64), 2),
                op::BININT2 => (Node::Int(uint_le(arg(2)?) as i64), 3),
                op::BININT => (Node::Int(i32::from_le_bytes(arg(4)?.try_into().ok()?) as i64), 5),
                op::BINFLOAT => (Node::Float(f64::from_be_bytes(arg(8)?.try_into().ok()?)), 9),
                op::SHORT_BINUNICODE | op::SHORT_BINBYTES | op::BINUNICODE | op::BINBYTES => {
                    let width = if matches!(code, op::SHORT_BINUNICODE | op::SHORT_BINBYTES) { 1 } else { 4 };
                    let n = uint_le(arg(width)?) as usize;
                    let bytes: &'a [u8] = src.get(at + 1 + width..(at + 1 + width).checked_add(n)?)?;
                    let node = if matches!(code, op::SHORT_BINBYTES | op::BINBYTES) {
                        Node::Bytes(bytes.into())
                    } else {
                        Vm::text_node(text::decode_utf8_surrogatepass(bytes).ok()?)
                    };
                    (node, 1 + width + n)
                }
                _ => return None,
            };
            let (node, width) = node;
            if d.nodes.len() >= max_nodes {
                return None;
            }
            let spliceable = matches!(node, Node::Tuple(_) | Node::Dict(_));
            let id = d.nodes.len() as NodeId;
            d.nodes.push(node);
            d.spans.push((NO_SPAN, NO_SPAN));
            self.push(Slot { node: id, start: at as u32, depth: 0, spliceable })?;
            pos += width;
        }
    }

    /// Where the innermost open MARK cut the stack.
    fn boundary(&self) -> usize {
        if self.open == 0 { 0 } else { self.marks[self.open - 1].0 }
    }

    fn push(&mut self, slot: Slot) -> Option<()> {
        if self.len == STACK {
            return None;
        }
        self.stack[self.len] = slot;
        self.len += 1;
        Some(())
    }

    /// Records the ranges of the entries from `base` up, consumed by the
    /// opcode at `at` (as the VM's `consume_from`).
    fn consume(&self, d: &mut Decoded<'_>, base: usize, at: usize) {
        for i in base..self.len {
            let s = self.stack[i];
            if s.spliceable {
                let end = if i + 1 < self.len { self.stack[i + 1].start } else { at as u32 };
                d.spans[s.node as usize] = (s.start, end);
            }
        }
    }
}
