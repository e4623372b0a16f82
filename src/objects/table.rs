//! The object table: idents, refcounts and lifetimes, as CPython's
//! `Server.id_to_obj` / `id_to_refcount` keep them.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::type_info::{TypeInfo, TYPES};
use super::SharedObject;

/// An object's key; its ident on the wire is this number in lowercase hex,
/// the way CPython prints `'%x' % id(obj)`. Its low six bits are its
/// type's tag ([`ObjectTable::type_of`]): a worker thread reads a call's
/// target type from the ident alone, and parses the call before it takes
/// the lock the objects are behind.
pub type ObjectId = u64;

/// Ids start where CPython's heap addresses usually are, so idents look
/// familiar in logs; they are never reused while the server runs. The
/// step keeps the low six bits free for the type tag.
const FIRST_ID: ObjectId = 0x7f00_0000_1000;
const ID_STEP: ObjectId = 0x40;
const TAG_MASK: ObjectId = 0x3f;
/// The tag of objects whose type has no record in `TYPES` (hosted ones).
const NO_RECORD: ObjectId = TAG_MASK;

#[derive(Debug)]
pub struct Entry {
    pub typeid: String,
    pub object: SharedObject,
    /// References held by clients (proxies), counted by incref/decref.
    pub refcount: u64,
    /// Named objects (`--register NAME=KIND`) live as long as the server,
    /// like an object a master's `register(callable=lambda: q)` closes over.
    pub pinned: bool,
    /// Objects kept alive because proxies to them are stored inside this
    /// one (a managed list of managed dicts). CPython leaks these
    /// (gh-103136); we release them when the proxy is removed.
    pub holds: Vec<ObjectId>,
    /// Set once a proxy was sent to this object: only then are its items
    /// scanned for proxies after each change.
    pub may_hold_proxies: bool,
}

/// How long a referent stays alive after the last stored proxy to it was
/// removed. The removal usually hands the proxy to a client (`get`,
/// `pop`), which takes its own reference when it unpickles the proxy, a
/// moment later, over a new connection.
pub const RELEASE_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct ObjectTable {
    entries: BTreeMap<ObjectId, Entry>,
    next_id: ObjectId,
    /// References dropped by `refresh_holds`, released after the grace.
    deferred: VecDeque<(Instant, ObjectId)>,
    /// Keys of freed hosted objects, for the server to tell their host.
    freed_hosted: Vec<u64>,
}

impl Default for ObjectTable {
    fn default() -> Self {
        ObjectTable { entries: BTreeMap::new(), next_id: FIRST_ID, deferred: VecDeque::new(), freed_hosted: Vec::new() }
    }
}

impl ObjectTable {
    pub fn insert(&mut self, typeid: &str, object: SharedObject, pinned: bool) -> ObjectId {
        let info = object.info();
        let tag = TYPES.iter().position(|t| t.typeid == info.typeid).map_or(NO_RECORD, |i| i as ObjectId);
        let id = self.next_id | tag;
        self.next_id += ID_STEP;
        self.entries.insert(
            id,
            Entry { typeid: typeid.to_string(), object, refcount: 0, pinned, holds: Vec::new(), may_hold_proxies: false },
        );
        id
    }

    pub fn ident(id: ObjectId) -> String {
        format!("{id:x}")
    }

    /// The id an ident names, if it is one of ours. An ident is exactly
    /// what [`ObjectTable::ident`] prints (lowercase hex, no leading zero):
    /// CPython's server looks idents up as strings, so `7F..` or `07f..`
    /// name nothing there either.
    pub fn parse_ident(&self, ident: &str) -> Option<ObjectId> {
        Self::ident_number(ident).filter(|id| self.entries.contains_key(id))
    }

    /// The record of the type of object `id` (which may no longer exist),
    /// read from its tag; `None` for hosted objects.
    pub fn type_of(id: ObjectId) -> Option<&'static TypeInfo> {
        TYPES.get((id & TAG_MASK) as usize).copied()
    }

    /// The number an ident spells, exactly as [`ObjectTable::ident`]
    /// prints it, whether or not such an object exists.
    pub fn ident_number(ident: &str) -> Option<ObjectId> {
        let digits = ident.as_bytes();
        if digits.is_empty() || digits.len() > 16 || digits[0] == b'0' {
            return None;
        }
        let mut id: ObjectId = 0;
        for &c in digits {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => return None,
            };
            id = id << 4 | d as ObjectId;
        }
        Some(id)
    }

    /// Every live object's id (memory accounting recounts them all).
    pub fn ids(&self) -> impl Iterator<Item = ObjectId> + '_ {
        self.entries.keys().copied()
    }

    pub fn get(&self, id: ObjectId) -> Option<&Entry> {
        self.entries.get(&id)
    }

    pub fn get_mut(&mut self, id: ObjectId) -> Option<&mut Entry> {
        self.entries.get_mut(&id)
    }

    pub fn incref(&mut self, id: ObjectId) -> bool {
        match self.entries.get_mut(&id) {
            Some(e) => {
                e.refcount += 1;
                true
            }
            None => false,
        }
    }

    /// Drops one reference; an unpinned object with none left is freed.
    /// Returns `Err(refcount)` when there was no reference to drop.
    pub fn decref(&mut self, id: ObjectId) -> Result<(), u64> {
        let Some(e) = self.entries.get_mut(&id) else { return Err(0) };
        if e.refcount == 0 {
            return Err(0);
        }
        e.refcount -= 1;
        if e.refcount == 0 && !e.pinned {
            self.free(id);
        }
        Ok(())
    }

    /// Removes an object and drops the references it held, which may free
    /// more objects in turn (iteratively: nesting can be deep).
    fn free(&mut self, id: ObjectId) {
        let mut pending = vec![id];
        while let Some(id) = pending.pop() {
            let Some(entry) = self.entries.remove(&id) else { continue };
            if let SharedObject::Hosted(h) = &entry.object {
                self.freed_hosted.push(h.key);
            }
            for held in entry.holds {
                if let Some(e) = self.entries.get_mut(&held) {
                    e.refcount = e.refcount.saturating_sub(1);
                    if e.refcount == 0 && !e.pinned {
                        pending.push(held);
                    }
                }
            }
        }
    }

    /// Recomputes which objects `id` keeps alive through proxies stored in
    /// its items: new referents gain a reference, dropped ones lose it —
    /// after [`RELEASE_GRACE`] when `handoff` says the reply carries items
    /// out (a `get`, a `pop`), at once otherwise (`clear`, `__delitem__`).
    pub fn refresh_holds(&mut self, id: ObjectId, handoff: bool) {
        let Some(entry) = self.entries.get(&id) else { return };
        if !entry.may_hold_proxies {
            return;
        }
        let mut idents = Vec::new();
        entry.object.for_each_item(&mut |item| idents.extend(crate::protocol::token::proxy_idents(item)));
        let mut now: Vec<ObjectId> = idents.iter().filter_map(|i| self.parse_ident(i)).filter(|&h| h != id).collect();
        now.sort_unstable();
        let before = std::mem::take(&mut self.entries.get_mut(&id).expect("present").holds);
        // Both lists are sorted: walk them together, so a referent held
        // before and after keeps its reference untouched.
        let (mut i, mut j) = (0, 0);
        let mut dropped = Vec::new();
        while i < before.len() || j < now.len() {
            match (before.get(i), now.get(j)) {
                (Some(a), Some(b)) if a == b => {
                    i += 1;
                    j += 1;
                }
                (Some(a), Some(b)) if a < b => {
                    dropped.push(*a);
                    i += 1;
                }
                (Some(a), None) => {
                    dropped.push(*a);
                    i += 1;
                }
                (_, Some(b)) => {
                    self.incref(*b);
                    j += 1;
                }
                (None, None) => unreachable!(),
            }
        }
        self.entries.get_mut(&id).expect("present").holds = now;
        if handoff {
            let release_at = Instant::now() + RELEASE_GRACE;
            self.deferred.extend(dropped.into_iter().map(|h| (release_at, h)));
        } else {
            for h in dropped {
                let _ = self.decref(h);
            }
        }
    }

    /// Whether hosted objects were freed since the last `take_freed_hosted`.
    pub fn has_freed_hosted(&self) -> bool {
        !self.freed_hosted.is_empty()
    }

    /// The keys of hosted objects freed since the last call.
    pub fn take_freed_hosted(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.freed_hosted)
    }

    /// When the next deferred reference is due.
    pub fn next_release(&self) -> Option<Instant> {
        self.deferred.front().map(|(at, _)| *at)
    }

    /// Drops the deferred references that are due.
    pub fn release_due(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.deferred.front() {
            if at > now {
                break;
            }
            self.deferred.pop_front();
            let _ = self.decref(id);
        }
    }

    /// Objects some client holds a reference to (`number_of_objects`).
    /// Named objects count while a client holds a proxy to them, as their
    /// CPython counterparts do.
    pub fn referenced_count(&self) -> usize {
        self.entries.values().filter(|e| e.refcount > 0).count()
    }

    /// `debug_info`: one entry per referenced object, as CPython formats it.
    pub fn debug_info(&self) -> String {
        let mut lines: Vec<(String, String)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.refcount > 0)
            .map(|(&id, e)| {
                let ident = Self::ident(id);
                let text = e.object.str(&ident).unwrap_or_else(|err| err.traceback_line());
                let repr: String = text.chars().take(75).collect();
                (ident.clone(), format!("  {ident}:       refcount={}\n    {repr}", e.refcount))
            })
            .collect();
        lines.sort();
        lines.into_iter().map(|(_, l)| l).collect::<Vec<_>>().join("\n")
    }
}

// Every record's index fits in the tag, beside the hosted objects' tag.
const _: () = assert!(TYPES.len() <= NO_RECORD as usize);
