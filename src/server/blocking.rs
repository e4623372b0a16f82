//! Blocked requests: calls that must wait for an object to change (a `get`
//! on an empty queue, a `put` on a full one, `join`), kept in one place as
//! Redis keeps blocked clients in `blocking.c`. The event loop never waits
//! for them: it parks them here, retries them when their object changes,
//! and answers them with their timeout error when their deadline passes.

use std::collections::{BTreeSet, VecDeque};

use rustc_hash::FxHashMap;
use std::time::Instant;

use mio::Token;

use crate::objects::{ClientId, ObjectCall, ObjectId, WaitKey};

pub type ParkId = u64;

#[derive(Debug)]
pub struct Parked {
    pub conn: Token,
    pub client: ClientId,
    /// The object the call is attempted on.
    pub object: ObjectId,
    /// What wakes it (usually `object`).
    pub key: WaitKey,
    pub call: ObjectCall,
    pub deadline: Option<Instant>,
}

/// The maps are Fx-hashed: their keys are the server's own numbers
/// (park ids, object ids, connection slots), which no client picks.
#[derive(Debug, Default)]
pub struct Blocked {
    parked: FxHashMap<ParkId, Parked>,
    /// Waiters per wait key, oldest first: the first getter gets the next item.
    by_key: FxHashMap<WaitKey, VecDeque<ParkId>>,
    /// A client sends one request at a time, so a connection parks at most one.
    by_conn: FxHashMap<Token, ParkId>,
    deadlines: BTreeSet<(Instant, ParkId)>,
    next_id: ParkId,
}

impl Blocked {
    /// Parks a call; `deadline` is `None` for a call that waits forever
    /// (or that already timed out and now only reacquires a lock).
    pub fn park(&mut self, parked: Parked) -> ParkId {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(d) = parked.deadline {
            self.deadlines.insert((d, id));
        }
        self.by_key.entry(parked.key).or_default().push_back(id);
        self.by_conn.insert(parked.conn, id);
        self.parked.insert(id, parked);
        id
    }

    /// The waiters on `key`, oldest first (a snapshot: waking one may
    /// park or remove others).
    pub fn waiters(&self, key: WaitKey) -> Vec<ParkId> {
        self.by_key.get(&key).map(|q| q.iter().copied().collect()).unwrap_or_default()
    }

    pub fn has_waiters(&self, key: WaitKey) -> bool {
        self.by_key.contains_key(&key)
    }

    pub fn get_mut(&mut self, id: ParkId) -> Option<&mut Parked> {
        self.parked.get_mut(&id)
    }

    pub fn remove(&mut self, id: ParkId) -> Option<Parked> {
        let p = self.parked.remove(&id)?;
        if let Some(d) = p.deadline {
            self.deadlines.remove(&(d, id));
        }
        if let Some(q) = self.by_key.get_mut(&p.key) {
            q.retain(|&x| x != id);
            if q.is_empty() {
                self.by_key.remove(&p.key);
            }
        }
        self.by_conn.remove(&p.conn);
        Some(p)
    }

    /// Forgets the request a closed connection had parked.
    pub fn remove_conn(&mut self, conn: Token) -> Option<Parked> {
        let id = *self.by_conn.get(&conn)?;
        self.remove(id)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// Removes and returns the requests whose deadline has passed.
    pub fn take_expired(&mut self, now: Instant) -> Vec<Parked> {
        let mut out = Vec::new();
        while let Some(&(d, id)) = self.deadlines.first() {
            if d > now {
                break;
            }
            if let Some(p) = self.remove(id) {
                out.push(p);
            }
        }
        out
    }

}
