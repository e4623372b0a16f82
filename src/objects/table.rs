//! The object table: idents, refcounts and lifetimes, as CPython's
//! `Server.id_to_obj` / `id_to_refcount` keep them.

use std::collections::BTreeMap;

use super::SharedObject;

/// An object's key; its ident on the wire is this number in lowercase hex,
/// the way CPython prints `'%x' % id(obj)`.
pub type ObjectId = u64;

/// Ids start where CPython's heap addresses usually are, so idents look
/// familiar in logs; they are never reused while the server runs.
const FIRST_ID: ObjectId = 0x7f00_0000_1000;
const ID_STEP: ObjectId = 0x30;

#[derive(Debug)]
pub struct Entry {
    pub typeid: String,
    pub object: SharedObject,
    /// References held by clients (proxies), counted by incref/decref.
    pub refcount: u64,
    /// Named objects (`--register NAME=KIND`) live as long as the server,
    /// like an object a master's `register(callable=lambda: q)` closes over.
    pub pinned: bool,
}

#[derive(Debug)]
pub struct ObjectTable {
    entries: BTreeMap<ObjectId, Entry>,
    next_id: ObjectId,
}

impl Default for ObjectTable {
    fn default() -> Self {
        ObjectTable { entries: BTreeMap::new(), next_id: FIRST_ID }
    }
}

impl ObjectTable {
    pub fn insert(&mut self, typeid: &str, object: SharedObject, pinned: bool) -> ObjectId {
        let id = self.next_id;
        self.next_id += ID_STEP;
        self.entries.insert(id, Entry { typeid: typeid.to_string(), object, refcount: 0, pinned });
        id
    }

    pub fn ident(id: ObjectId) -> String {
        format!("{id:x}")
    }

    /// The id an ident names, if it is one of ours.
    pub fn parse_ident(&self, ident: &str) -> Option<ObjectId> {
        if ident.is_empty() || ident.len() > 16 || ident.starts_with('+') {
            return None;
        }
        let id = ObjectId::from_str_radix(ident, 16).ok()?;
        self.entries.contains_key(&id).then_some(id)
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
            self.entries.remove(&id);
        }
        Ok(())
    }

    /// Objects some client holds a reference to (`number_of_objects`).
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
