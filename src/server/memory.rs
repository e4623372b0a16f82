//! Memory caps: what shared objects store is bounded per object
//! (`--max-object-bytes`) and for the whole server (`--max-total-bytes`).
//!
//! An object's size is what it stores: the bytes of every item pickle it
//! holds plus [`ITEM_OVERHEAD`] per item, for the bookkeeping around it (an
//! item stored twice counts twice, as `l *= 2` really doubles the list).
//! Measuring that exactly walks every item, so the server keeps an upper
//! bound per object instead and walks an object only when the bound says a
//! call might take it over a cap:
//!
//! - a call that can store (`put`, `append`, `__setitem__`, `update`, ...)
//!   grows its object by at most an estimate read from the request: its
//!   bytes, plus the overhead of every value in it, plus what it expands to
//!   on the server (`range(n)` arguments, `__imul__(n)`, a proxy whose
//!   referent is copied);
//! - before such a call, if bound + estimate passes a cap, the object (or
//!   for the total, every object) is measured exactly; if exact + estimate
//!   still passes, the call is refused with `MemoryError` before it runs,
//!   so nothing changes;
//! - after it, the bound grows by the estimate. Calls that remove items do
//!   not lower the bound; the next exact measurement does.
//!
//! Reading and removing (`get`, `pop`, `clear`, ...) is never refused, so
//! a full server can always be drained. What is not counted: requests being
//! read (at most `--max-frame-bytes` per connection) and replies being sent
//! (see `connection::OUTPUT_BACKLOG`).

use rustc_hash::FxHashMap;

use crate::objects::{ObjectId, ObjectTable, TypeInfo, Wakes};
use crate::pickle::{Decoded, Node, NodeId};
use crate::protocol::{PyException, Reply, Request};

use super::dispatch::{Outcome, State};

/// Bytes counted per stored item besides its pickle: the `Arc`, the slot in
/// its container and the decoded view dict and list items keep.
pub const ITEM_OVERHEAD: usize = 64;

/// Whether a call to `method` on object `id` can store items: its type's
/// record says (`TypeInfo::storing`). Everything else only reads or removes.
fn stores(objects: &ObjectTable, id: ObjectId, method: &str) -> bool {
    objects.get(id).is_some_and(|e| e.object.info().stores(method))
}

/// Whether a call stores each element of an iterable argument as an item.
/// `create` (`id` 0) always counts so: its typeid may be an alias, and a
/// constructor stores what its argument holds (`list('abc')`).
fn iterates(objects: &ObjectTable, id: ObjectId, method: &str) -> bool {
    method == "create" || objects.get(id).is_some_and(|e| e.object.info().iterates(method))
}

/// The caps, and what the server knows about each object's size.
#[derive(Debug)]
pub struct MemoryBudget {
    max_object: usize,
    max_total: usize,
    /// Upper bounds of object sizes; `true` when the bound was just measured.
    /// (Fx-hashed: the keys are the server's own ids, no attacker picks them.)
    bounds: FxHashMap<ObjectId, (usize, bool)>,
    /// Upper bound of the sum of all object sizes.
    total: usize,
}

/// The size an object stores, walking every item.
pub fn object_size(objects: &ObjectTable, id: ObjectId) -> usize {
    let mut size = 0usize;
    if let Some(e) = objects.get(id) {
        e.object.for_each_item(&mut |item| size = size.saturating_add(item.len() + ITEM_OVERHEAD));
    }
    size
}

fn memory_error(what: &str, flag: &str, cap: usize) -> PyException {
    PyException::memory_error(format!("fastmanager: {what} would exceed {flag} ({cap} bytes); nothing was changed"))
}

impl MemoryBudget {
    pub fn new(max_object: usize, max_total: usize) -> MemoryBudget {
        MemoryBudget { max_object, max_total, bounds: FxHashMap::default(), total: 0 }
    }

    /// An upper bound of the bytes all objects store, and the two caps
    /// (`stat`).
    pub fn usage(&self) -> (usize, usize, usize) {
        (self.total, self.max_object, self.max_total)
    }

    /// Before a method call on `id`: `Ok(growth)` lets it run (then
    /// [`MemoryBudget::charge`] it), `Err` is the `MemoryError` to answer.
    /// `estimated` is what [`estimate_alone`] said before the lock, if it
    /// could say.
    pub fn admit(
        &mut self,
        objects: &ObjectTable,
        id: ObjectId,
        req: &Request<'_, '_>,
        request_len: usize,
        estimated: Option<usize>,
    ) -> Result<usize, PyException> {
        // Any call may have removed items: the bound is no longer exact.
        let bound = match self.bounds.get_mut(&id) {
            Some(b) => {
                // Written only when it changes: with worker threads, a
                // write here would move the line between cores each call.
                if b.1 {
                    b.1 = false;
                }
                b.0
            }
            None => self.measure(objects, id),
        };
        let growth = match estimated {
            Some(growth) => growth,
            None if !stores(objects, id, req.method) => 0,
            None => self.estimate(objects, id, req, request_len),
        };
        if growth == 0 {
            return Ok(0);
        }
        if bound.saturating_add(growth) > self.max_object
            && self.measure(objects, id).saturating_add(growth) > self.max_object
        {
            return Err(memory_error("this object", "--max-object-bytes", self.max_object));
        }
        self.admit_total(objects, growth)?;
        Ok(growth)
    }

    /// Runs `call`, a method call on object `id`, if the caps allow it
    /// (else answers `MemoryError`), and charges what it may have stored.
    pub fn within_caps(
        &mut self,
        state: &mut State,
        req: &Request<'_, '_>,
        id: Option<ObjectId>,
        request_len: usize,
        estimated: Option<usize>,
        call: impl FnOnce(&mut State) -> Outcome,
    ) -> Outcome {
        // An unknown ident is the call's own error (KeyError).
        let Some(id) = id else { return call(state) };
        match self.admit(&state.objects, id, req, request_len, estimated) {
            Err(e) => Outcome::Reply { reply: Reply::Error(e), wake: Wakes::new() },
            Ok(growth) => {
                let outcome = call(state);
                self.charge(id, growth);
                outcome
            }
        }
    }

    /// Before a control request: only `create` stores anything.
    pub fn admit_control(&mut self, objects: &ObjectTable, req: &Request<'_, '_>, request_len: usize) -> Result<(), PyException> {
        if req.method == "create" {
            self.admit_new(objects, req, request_len)?;
        }
        Ok(())
    }

    /// Before `create(typeid, *args)`: the new object holds at most what
    /// its constructor arguments expand to.
    pub fn admit_new(&mut self, objects: &ObjectTable, req: &Request<'_, '_>, request_len: usize) -> Result<usize, PyException> {
        let growth = self.estimate(objects, 0, req, request_len);
        if growth > self.max_object {
            return Err(memory_error("the new object", "--max-object-bytes", self.max_object));
        }
        self.admit_total(objects, growth)?;
        self.total = self.total.saturating_add(growth);
        Ok(growth)
    }

    fn admit_total(&mut self, objects: &ObjectTable, growth: usize) -> Result<(), PyException> {
        if self.total.saturating_add(growth) > self.max_total
            && self.recount(objects).saturating_add(growth) > self.max_total
        {
            return Err(memory_error("the server's objects", "--max-total-bytes", self.max_total));
        }
        Ok(())
    }

    /// After an admitted call ran: its object may have grown by `growth`.
    pub fn charge(&mut self, id: ObjectId, growth: usize) {
        if growth > 0 {
            let b = self.bounds.entry(id).or_insert((0, false));
            *b = (b.0.saturating_add(growth), false);
            self.total = self.total.saturating_add(growth);
        }
    }

    /// Forgets objects that were freed (called once a second), so that
    /// neither the table of bounds nor the total keeps them.
    pub fn forget_freed(&mut self, objects: &ObjectTable) {
        let total = &mut self.total;
        self.bounds.retain(|&id, &mut (size, _)| {
            let live = objects.get(id).is_some();
            if !live {
                *total = total.saturating_sub(size);
            }
            live
        });
    }

    /// Measures one object exactly and tightens the total with it.
    fn measure(&mut self, objects: &ObjectTable, id: ObjectId) -> usize {
        let exact = object_size(objects, id);
        let before = self.bounds.insert(id, (exact, true)).map_or(0, |b| b.0);
        self.total = self.total.saturating_sub(before).saturating_add(exact);
        exact
    }

    /// Measures every object (forgetting freed ones); returns the total.
    fn recount(&mut self, objects: &ObjectTable) -> usize {
        let old = std::mem::take(&mut self.bounds);
        self.total = 0;
        for id in objects.ids() {
            let size = match old.get(&id) {
                // Measured since its last call: still exact.
                Some(&(b, true)) => b,
                _ => object_size(objects, id),
            };
            self.bounds.insert(id, (size, true));
            self.total = self.total.saturating_add(size);
        }
        self.total
    }

    /// At most how much a call can add to object `id` (0 for a new object).
    fn estimate(&mut self, objects: &ObjectTable, id: ObjectId, req: &Request<'_, '_>, request_len: usize) -> usize {
        let d = req.pickle;
        let mut growth = request_growth(req, request_len, iterates(objects, id, req.method));
        for n in 0..d.len() as NodeId {
            if let Some(ident) = crate::protocol::token::proxy_ident(d, n) {
                growth = growth.saturating_add(objects.parse_ident(ident).map_or(0, |id| object_size(objects, id)));
            }
        }
        if req.method == "__imul__" {
            let times = req.args.first().and_then(|&a| d.as_int(a)).unwrap_or(0).max(1) as usize;
            growth = growth.saturating_add(self.measure(objects, id).saturating_mul(times - 1));
        }
        growth
    }
}

/// What a call of a type with record `info` can add to its object, told
/// from the request alone (on a worker, before the lock): `None` when that
/// needs the objects (the request holds proxies, whose referents are
/// copied, or multiplies the object, `__imul__`).
pub fn estimate_alone(info: &TypeInfo, req: &Request<'_, '_>, request_len: usize) -> Option<usize> {
    if !info.stores(req.method) {
        return Some(0);
    }
    let d = req.pickle;
    if req.method == "__imul__" || (0..d.len() as NodeId).any(|n| crate::protocol::token::proxy_ident(d, n).is_some()) {
        return None;
    }
    Some(request_growth(req, request_len, info.iterates(req.method)))
}

/// What a request adds besides proxies' referents and `__imul__`: its
/// bytes, the overhead of every value in it, the elements of `range`s and,
/// for a call that `iterates`, one item per character of a string.
fn request_growth(req: &Request<'_, '_>, request_len: usize, iterates: bool) -> usize {
    let d = req.pickle;
    // Every value in the request could become a stored item.
    let mut growth = request_len.saturating_add(d.len().saturating_mul(ITEM_OVERHEAD));
    for n in 0..d.len() as NodeId {
        growth = growth.saturating_add(range_expansion(d, n));
    }
    if iterates {
        // `l.extend('abc')` stores one item per character.
        for &a in req.args {
            let elements = match d.node(a) {
                Node::Str(s) => s.len(),
                Node::Bytes(b) | Node::ByteArray(b) | Node::StrSurrogates(b) => b.len(),
                _ => 0,
            };
            growth = growth.saturating_add(elements.saturating_mul(ITEM_OVERHEAD + 10));
        }
    }
    growth
}

/// What node `n` turns into on the server beyond its own bytes: the
/// elements of a `range`.
fn range_expansion(d: &Decoded, n: NodeId) -> usize {
    let count = d.as_range(n).map_or(0, |range| range.len());
    // An int's pickle is at most 10 bytes (BININT or LONG1 of 8).
    usize::try_from(count).unwrap_or(usize::MAX).saturating_mul(ITEM_OVERHEAD + 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pickle::{DecodeLimits, decode};
    use crate::protocol::parse_request;

    fn request(bytes: &[u8]) -> Decoded<'_> {
        decode(bytes, &DecodeLimits::default()).unwrap()
    }

    #[test]
    fn freed_objects_are_forgotten() {
        let mut objects = ObjectTable::default();
        let id = objects.insert("Queue", crate::objects::SharedObject::Queue(crate::objects::SharedQueue::new(0)), false);
        let mut b = MemoryBudget::new(usize::MAX, usize::MAX);
        b.charge(id, 1000);
        assert_eq!(b.total, 1000);
        objects.incref(id);
        objects.decref(id).unwrap();
        b.forget_freed(&objects);
        assert_eq!((b.total, b.bounds.len()), (0, 0));
    }

    #[test]
    fn ranges_count_their_elements() {
        // pickle.dumps((None, 'extend', (range(1000),), {}), 4) shape.
        let p = b"\x80\x04(N\x8c\x06extend\x8c\x08builtins\x8c\x05range\x93K\x00M\xe8\x03K\x01\x87R\x85}t.";
        let d = request(p);
        let req = parse_request(&d).unwrap();
        let mut b = MemoryBudget::new(usize::MAX, usize::MAX);
        let objects = ObjectTable::default();
        let g = b.estimate(&objects, 0, &req, p.len());
        assert!(g >= 1000 * (ITEM_OVERHEAD + 10), "{g}");
        // Refused up front, against a cap below the expansion.
        let mut small = MemoryBudget::new(10_000, usize::MAX);
        assert_eq!(small.admit_new(&objects, &req, p.len()).unwrap_err().name, "MemoryError");
    }
}
