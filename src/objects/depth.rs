//! What an operator sees of an object's state (`fastmanager stat`, the
//! Prometheus gauges): how much it holds and who holds it. One match over
//! the types, so each type only offers plain getters.

use super::{ClientId, SharedObject};

/// The figures of one object; each is `None` where its type has no such
/// figure.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Items held: a queue's length, a dict's or list's, a Namespace's
    /// attributes.
    pub len: Option<u64>,
    /// A JoinableQueue's tasks put and not yet `task_done()`.
    pub unfinished: Option<u64>,
    /// Whether a lock (or a Condition's lock) is held, an Event is set.
    pub set: Option<bool>,
    /// The connection holding a lock (an RLock's owner; a Lock's last
    /// acquirer, which any client may release).
    pub holder: Option<ClientId>,
    /// A semaphore's free units; a barrier's waiting parties.
    pub value: Option<u64>,
}

impl SharedObject {
    pub fn depth(&self) -> Depth {
        let mut d = Depth::default();
        match self {
            SharedObject::Queue(q) => {
                d.len = Some(q.qsize() as u64);
                d.unfinished = Some(q.unfinished());
            }
            SharedObject::Dict(o) => d.len = Some(o.len() as u64),
            SharedObject::List(o) => d.len = Some(o.len() as u64),
            SharedObject::Namespace(o) => d.len = Some(o.len() as u64),
            SharedObject::Lock(o) => {
                let state = o.shared_state();
                let s = state.get();
                d.set = Some(s.is_locked());
                d.holder = s.owner.filter(|_| s.is_locked());
            }
            SharedObject::Condition(o) => {
                let state = o.lock_state();
                let s = state.get();
                d.set = Some(s.is_locked());
                d.holder = s.owner.filter(|_| s.is_locked());
            }
            SharedObject::Semaphore(o) => d.value = Some(o.value()),
            SharedObject::Event(o) => d.set = Some(o.is_set()),
            SharedObject::Barrier(o) => d.value = Some(o.waiting() as u64),
            SharedObject::Array(_) | SharedObject::Value(_) | SharedObject::Iterator(_) | SharedObject::Hosted(_) => {}
        }
        d
    }
}
