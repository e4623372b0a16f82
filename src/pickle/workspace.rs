//! The decoder's working state (stack, marks, memo) and the vectors of the
//! arena it hands out, reused from one decode to the next on a thread. A
//! server decodes one small request after another: allocating a dozen
//! vectors for each cost more than the decoding itself (callgrind counted
//! 16 allocations per `put`).

use std::cell::RefCell;
use std::collections::HashMap;

use super::node::{Node, NodeId};

/// `spans` entry of a node with no recorded range.
pub(crate) const NO_SPAN: u32 = u32::MAX;

/// An empty memo slot.
const NO_NODE: NodeId = NodeId::MAX;

/// Vectors that grew past this many elements (a huge pickle) are freed,
/// not kept: one large request must not pin its memory for good.
const KEEP_AT_MOST: usize = 4096;

/// A value on the VM's stack.
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    pub node: NodeId,
    /// Offset of the first opcode of this entry's range.
    pub start: usize,
    /// Whether this entry's range built the node (false for GET / DUP).
    pub origin: bool,
}

/// A MARK: the stack height it marked, and where its range starts.
pub(crate) struct Mark {
    pub len: usize,
    pub start: usize,
}

/// The unpickler's memo. Every pickler numbers its memo entries densely
/// from 0 (MEMOIZE counts them), so indices address a vector; an index
/// past what a pickle of this size could fill densely (a crafted
/// `LONG_BINPUT 2**24`) goes to a map instead, so it costs no huge vector.
pub(crate) struct Memo {
    dense: Vec<NodeId>,
    dense_limit: usize,
    sparse: HashMap<u32, NodeId>,
    /// Distinct indices stored: `len(memo)`, which MEMOIZE uses.
    pub len: usize,
}

impl Memo {
    pub fn new(mut dense: Vec<NodeId>, src_len: usize) -> Memo {
        dense.clear();
        Memo { dense, dense_limit: src_len + 256, sparse: HashMap::new(), len: 0 }
    }

    #[inline]
    pub fn get(&self, index: u32) -> Option<NodeId> {
        match self.dense.get(index as usize) {
            Some(&n) if n != NO_NODE => Some(n),
            Some(_) => None,
            None => self.sparse.get(&index).copied(),
        }
    }

    #[inline]
    pub fn insert(&mut self, index: u32, node: NodeId) {
        let i = index as usize;
        if i < self.dense_limit {
            if i >= self.dense.len() {
                self.dense.resize(i + 1, NO_NODE);
            }
            if self.dense[i] == NO_NODE {
                self.len += 1;
            }
            self.dense[i] = node;
        } else if self.sparse.insert(index, node).is_none() {
            self.len += 1;
        }
    }

    pub fn into_dense(self) -> Vec<NodeId> {
        self.dense
    }
}

/// A [`Decoded`](super::Decoded)'s vectors: nodes, their ranges, the memo record.
pub(crate) type Arena<'a> = (Vec<Node<'a>>, Vec<(u32, u32)>, Vec<(usize, u32)>);

/// Every vector a decode needs, empty; the arena typed for a source of
/// lifetime `'a` (kept between decodes as `Workspace<'static>`).
#[derive(Default)]
pub(crate) struct Workspace<'a> {
    pub nodes: Vec<Node<'a>>,
    pub depth: Vec<u32>,
    pub spans: Vec<(u32, u32)>,
    pub memoize_at: Vec<(usize, u32)>,
    pub stack: Vec<Entry>,
    pub marks: Vec<Mark>,
    pub memo: Vec<NodeId>,
}

thread_local! {
    static SPARE: RefCell<Workspace<'static>> = RefCell::new(Workspace::default());
}

impl<'a> Workspace<'a> {
    /// The vectors the last decode on this thread gave back (empty ones
    /// if there are none, or if a decode is already running).
    pub fn take() -> Workspace<'a> {
        let w = SPARE.try_with(|s| s.try_borrow_mut().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default()).unwrap_or_default();
        Workspace { nodes: relabel(w.nodes), ..w }
    }

    /// The arena vectors only (for the flat decoder, which needs no
    /// working vectors).
    pub fn take_arena() -> Arena<'a> {
        let (nodes, spans, memoize_at) = SPARE
            .try_with(|s| {
                s.try_borrow_mut()
                    .map(|mut s| (std::mem::take(&mut s.nodes), std::mem::take(&mut s.spans), std::mem::take(&mut s.memoize_at)))
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        (relabel(nodes), spans, memoize_at)
    }
}

impl Workspace<'_> {
    /// Gives back the VM's working vectors once it has run.
    pub fn give_working(depth: Vec<u32>, stack: Vec<Entry>, marks: Vec<Mark>, memo: Vec<NodeId>) {
        let _ = SPARE.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                keep(&mut s.depth, depth);
                keep(&mut s.stack, stack);
                keep(&mut s.marks, marks);
                keep(&mut s.memo, memo);
            }
        });
    }

    /// Gives back a dropped [`Decoded`](super::Decoded)'s arena.
    pub fn give_arena(nodes: Vec<Node<'_>>, spans: Vec<(u32, u32)>, memoize_at: Vec<(usize, u32)>) {
        if nodes.capacity() > KEEP_AT_MOST {
            return;
        }
        let nodes = relabel(nodes);
        let _ = SPARE.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                keep(&mut s.nodes, nodes);
                keep(&mut s.spans, spans);
                keep(&mut s.memoize_at, memoize_at);
            }
        });
    }
}

/// Empties a node vector and retypes it for another source lifetime,
/// keeping its allocation (an in-place collect of no elements).
fn relabel<'b>(mut nodes: Vec<Node<'_>>) -> Vec<Node<'b>> {
    nodes.clear();
    nodes.into_iter().map(|_| unreachable!("emptied")).collect()
}

fn keep<T>(slot: &mut Vec<T>, mut v: Vec<T>) {
    if v.capacity() <= KEEP_AT_MOST && v.capacity() > slot.capacity() {
        v.clear();
        *slot = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relabel_keeps_the_allocation() {
        let mut v: Vec<Node<'static>> = Vec::with_capacity(32);
        v.push(Node::None);
        let ptr = v.as_ptr() as usize;
        let w: Vec<Node<'_>> = relabel(v);
        assert!(w.is_empty());
        assert_eq!(w.capacity(), 32);
        assert_eq!(w.as_ptr() as usize, ptr);
    }

    #[test]
    fn memo_counts_distinct_indices_and_takes_sparse_ones() {
        let mut m = Memo::new(Vec::new(), 10);
        m.insert(0, 5);
        m.insert(0, 6);
        m.insert(3, 7);
        m.insert(1 << 20, 8);
        assert_eq!(m.len, 3);
        assert_eq!(m.get(0), Some(6));
        assert_eq!(m.get(1), None);
        assert_eq!(m.get(3), Some(7));
        assert_eq!(m.get(1 << 20), Some(8));
        assert_eq!(m.get(99), None);
        assert!(m.into_dense().len() <= 4);
    }
}
