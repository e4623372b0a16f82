//! The VM's bookkeeping, apart from what each opcode means: creating
//! nodes within the limits, the stack and its marks (entries are consumed
//! in place), the opcode range of each consumed entry (what
//! [`Decoded::standalone`](super::super::Decoded::standalone) splices), the
//! memo, and the errors that name where decoding stopped.

use crate::pickle::error::PickleError;
use crate::pickle::node::{Items, Node, NodeId};
use crate::pickle::opcodes::{self as op, name};
use crate::pickle::text::{self, IntValue, PyText};
use crate::pickle::workspace::{Entry, Mark, NO_SPAN};
use super::{Vm, is_spliceable};

impl<'a> Vm<'a, '_> {
    #[cold]
    pub(super) fn invalid(&self, msg: impl Into<String>) -> PickleError {
        PickleError::Invalid {
            opcode: name(self.code),
            offset: self.offset,
            msg: msg.into(),
        }
    }

    #[cold]
    pub(super) fn underflow(&self) -> PickleError {
        PickleError::StackUnderflow {
            opcode: name(self.code),
            offset: self.offset,
        }
    }

    #[inline]
    pub(super) fn new_node(&mut self, node: Node<'a>, depth: u32) -> Result<NodeId, PickleError> {
        if self.nodes.len() >= self.limits.max_nodes.min(u32::MAX as usize) || depth as usize > self.limits.max_depth {
            return Err(self.node_limit(depth));
        }
        self.nodes.push(node);
        self.depth.push(depth);
        self.spans.push((NO_SPAN, NO_SPAN));
        Ok((self.nodes.len() - 1) as NodeId)
    }

    #[cold]
    pub(super) fn node_limit(&self, depth: u32) -> PickleError {
        if depth as usize > self.limits.max_depth {
            PickleError::DepthLimit { limit: self.limits.max_depth, offset: self.offset }
        } else {
            PickleError::NodeLimit { limit: self.limits.max_nodes, offset: self.offset }
        }
    }

    /// Container depth of a node holding `children`.
    pub(super) fn depth_over(&self, children: impl IntoIterator<Item = NodeId>) -> u32 {
        1 + children
            .into_iter()
            .map(|c| self.depth[c as usize])
            .max()
            .unwrap_or(0)
    }

    /// Pushes a value produced by an opcode that consumed nothing.
    #[inline]
    pub(super) fn push_fresh(&mut self, node: NodeId, pending: Option<usize>, origin: bool) {
        let start = pending.unwrap_or(self.offset);
        self.stack.push(Entry {
            node,
            start,
            origin: origin || pending.is_some(),
        });
    }

    #[inline]
    pub(super) fn push_new(&mut self, node: Node<'a>, pending: Option<usize>) -> Result<(), PickleError> {
        let id = self.new_node(node, 0)?;
        self.push_fresh(id, pending, true);
        Ok(())
    }

    #[inline]
    pub(super) fn boundary(&self) -> usize {
        self.marks.last().map_or(0, |m| m.len)
    }

    /// The top `n` entries, oldest first: where they start on the stack.
    /// They stay there (no copy) until the caller truncates the stack.
    #[inline]
    pub(super) fn top_n(&self, n: usize) -> Result<usize, PickleError> {
        if self.stack.len() < self.boundary() + n {
            return Err(self.underflow());
        }
        Ok(self.stack.len() - n)
    }

    #[inline]
    pub(super) fn top(&self) -> Result<Entry, PickleError> {
        if self.stack.len() <= self.boundary() {
            return Err(self.underflow());
        }
        Ok(*self.stack.last().unwrap())
    }

    /// Pops the last mark; the entries above it stay on the stack, from
    /// `mark.len` on, until the caller truncates it.
    pub(super) fn pop_mark(&mut self) -> Result<Mark, PickleError> {
        self.marks.pop().ok_or(PickleError::MarkNotFound {
            opcode: name(self.code),
            offset: self.offset,
        })
    }

    /// Records the ranges of the stack entries from `base` up, which the
    /// current opcode consumes as a run.
    #[inline]
    pub(super) fn consume_from(&mut self, base: usize) {
        let entries = &self.stack[base..];
        for (i, e) in entries.iter().enumerate() {
            let end = entries.get(i + 1).map_or(self.offset, |n| n.start);
            if e.origin && is_spliceable(&self.nodes[e.node as usize]) {
                self.spans[e.node as usize] = (e.start as u32, end as u32);
            }
        }
    }

    /// Consumes the stack entries from `base` up: their ranges are
    /// recorded, and their nodes returned, oldest first.
    pub(super) fn take_from(&mut self, base: usize) -> Items {
        self.consume_from(base);
        let ids = self.stack[base..].iter().map(|e| e.node).collect();
        self.stack.truncate(base);
        ids
    }

    /// Pops one entry, recording its range.
    #[inline]
    pub(super) fn take_one(&mut self) -> Result<Entry, PickleError> {
        let base = self.top_n(1)?;
        self.consume_from(base);
        Ok(self.stack.pop().expect("checked"))
    }

    /// Pushes a node built from consumed entries; its range starts at `start`.
    #[inline]
    pub(super) fn push_built(&mut self, node: Node<'a>, depth: u32, start: usize) -> Result<(), PickleError> {
        let id = self.new_node(node, depth)?;
        self.stack.push(Entry {
            node: id,
            start,
            origin: true,
        });
        Ok(())
    }

    #[inline]
    pub(super) fn memo_index(&self, raw: u64) -> Result<u32, PickleError> {
        if raw >= self.limits.max_memo as u64 || raw > u32::MAX as u64 {
            return Err(PickleError::MemoLimit {
                index: raw,
                limit: self.limits.max_memo,
                opcode: name(self.code),
                offset: self.offset,
            });
        }
        Ok(raw as u32)
    }

    pub(super) fn text_index(&self, line: &[u8]) -> Result<u64, PickleError> {
        match text::parse_int_text(line) {
            Ok(IntValue::Small(i)) if i >= 0 => Ok(i as u64),
            Ok(IntValue::Small(_)) => Err(self.invalid("negative memo index")),
            Ok(IntValue::Big(b)) if b.last().is_some_and(|&t| t & 0x80 != 0) => {
                Err(self.invalid("negative memo index"))
            }
            Ok(IntValue::Big(_)) => Ok(u64::MAX),
            Err(e) => Err(self.invalid(e)),
        }
    }

    pub(super) fn int_node(&self, v: IntValue) -> Node<'a> {
        match v {
            IntValue::Small(i) => Node::Int(i),
            IntValue::Big(b) => Node::BigInt(b.into_boxed_slice()),
        }
    }

    pub(super) fn text_node(t: PyText<'a>) -> Node<'a> {
        match t {
            PyText::Utf8(s) => Node::Str(s),
            PyText::Surrogates(b) => Node::StrSurrogates(b),
        }
    }

    /// Adds `child` under `parent` after the fact (APPEND, SETITEM, BUILD...).
    pub(super) fn deepen(&mut self, parent: NodeId, child: NodeId) -> Result<(), PickleError> {
        let d = self.depth[parent as usize].max(self.depth[child as usize] + 1);
        if d as usize > self.limits.max_depth {
            return Err(PickleError::DepthLimit {
                limit: self.limits.max_depth,
                offset: self.offset,
            });
        }
        self.depth[parent as usize] = d;
        Ok(())
    }

    pub(super) fn mark(&mut self, pending: Option<usize>) -> Result<(), PickleError> {
        if self.marks.len() >= self.limits.max_depth {
            return Err(PickleError::DepthLimit {
                limit: self.limits.max_depth,
                offset: self.offset,
            });
        }
        self.marks.push(Mark {
            len: self.stack.len(),
            start: pending.unwrap_or(self.offset),
        });
        Ok(())
    }

    /// PUT / BINPUT / LONG_BINPUT / MEMOIZE of the top of the stack at
    /// memo index `raw`.
    #[inline]
    pub(super) fn put(&mut self, code: u8, raw: u64) -> Result<(), PickleError> {
        let idx = self.memo_index(raw)?;
        let top = self.top()?.node;
        if code == op::MEMOIZE {
            self.memoize_at.push((self.offset, idx));
        }
        self.memo.insert(idx, top);
        Ok(())
    }
}
