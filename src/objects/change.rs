//! What a durable object (a named one under `--data-dir`, issue 16)
//! records of its changes, for the store to log and to replay at start.
//!
//! Each change is one logical step a client made, so one log record: a
//! torn last record drops one client's change, never half of one (a
//! dict `update` of many pairs is one [`Change::DictSet`]). Changes that
//! are hard to phrase as a delta (a list's sort or slice assignment) mark
//! the object [`Change::Dirty`]; the store then logs its whole value
//! ([`Change::Whole`]) after the step.
//!
//! The data are pickles, as the objects hold them, so replay rebuilds
//! exactly the bytes a client sent.

use super::Item;

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    // Queue
    /// An item appended at the back.
    PushBack(Item),
    /// The front item taken.
    PopFront,
    /// An item taken for a client that left, given back to the front.
    PushFront(Item),
    TaskDone,
    /// Every item dropped: a queue's `shutdown(immediate=True)`, a dict's
    /// `clear()`.
    Clear,
    /// A JoinableQueue's unfinished count (snapshots end with it).
    Unfinished(u64),
    // dict
    /// Keys set to values, in order (`d[k] = v`, `update`, `setdefault`):
    /// the key is the entry's key object as the dict keeps it.
    DictSet(Vec<(Item, Item)>),
    /// A key removed (`del`, `pop`, `popitem`).
    DictDel(Item),
    // list
    /// Items appended (`append`, `extend`, `+=`).
    ListExtend(Vec<Item>),
    /// `l[pos] = item`, `pos` within the list.
    ListSet(u64, Item),
    /// `l.insert(pos, item)`, `pos` clamped into the list.
    ListInsert(u64, Item),
    /// The item at `pos` removed (`pop`, `del l[i]`, `remove`).
    ListDel(u64),
    /// The object's whole value, in the type's own encoding (see each
    /// type's `whole`): replaces what it held.
    Whole(Vec<u8>),
    /// Not logged: the object changed in a way no delta above says; the
    /// store logs [`Change::Whole`] after the step instead.
    Dirty,
}

/// A durable object's change recorder: off (`None`) unless the store
/// keeps the object, so other objects pay nothing.
#[derive(Debug, Default)]
pub struct Changes(Option<Vec<Change>>);

impl Changes {
    /// Records from now on.
    pub fn keep(&mut self) {
        self.0.get_or_insert_with(Vec::new);
    }

    pub fn is_kept(&self) -> bool {
        self.0.is_some()
    }

    /// Records the change `f` makes, if kept (`f` runs only then: a
    /// change that clones an item costs nothing when not durable).
    pub fn record(&mut self, f: impl FnOnce() -> Change) {
        if let Some(c) = &mut self.0 {
            // After a Dirty mark, the whole value covers every change.
            if c.last() != Some(&Change::Dirty) {
                c.push(f());
            }
        }
    }

    /// The object changed in a way only its whole value says.
    pub fn dirty(&mut self) {
        if let Some(c) = &mut self.0 {
            c.clear();
            c.push(Change::Dirty);
        }
    }

    /// The changes since the last call.
    pub fn take(&mut self) -> Vec<Change> {
        self.0.as_mut().map(std::mem::take).unwrap_or_default()
    }
}

/// Length-prefixed byte strings one after another (`[len u32 LE][bytes]`
/// each): several items in one record.
pub fn join_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The byte strings [`join_parts`] wrote; `None` if `data` is not such.
pub fn split_parts(mut data: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let len = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
        out.push(data.get(4..4 + len)?);
        data = &data[4 + len..];
    }
    Some(out)
}

/// Why a logged change could not be replayed into an object: the data
/// dir was written for another kind of object under that name, or is not
/// ours.
pub fn unfit(change: &Change, class: &str) -> String {
    let what = format!("{change:?}");
    let short: String = what.chars().take(40).collect();
    format!("a logged change ({short}) does not fit a {class}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let parts: [&[u8]; 3] = [b"one", b"", b"three"];
        let joined = join_parts(parts);
        assert_eq!(split_parts(&joined).unwrap(), parts);
        assert!(split_parts(&joined[..joined.len() - 1]).is_none());
    }

    #[test]
    fn dirty_covers_the_rest_of_the_step() {
        let mut c = Changes::default();
        c.record(|| Change::PopFront);
        assert!(c.take().is_empty(), "not kept: nothing recorded");
        c.keep();
        c.record(|| Change::PopFront);
        c.dirty();
        c.record(|| Change::ListDel(0));
        assert_eq!(c.take(), [Change::Dirty]);
        assert!(c.take().is_empty());
    }
}
