//! Blocked requests: calls that must wait for an object to change (a `get`
//! on an empty queue, a `put` on a full one, `join`), kept in one place as
//! Redis keeps blocked clients in `blocking.c`. The event loop never waits
//! for them: it parks them here, retries them when their object changes,
//! and answers them with their timeout error when their deadline passes.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use mio::Token;

use crate::objects::{ObjectCall, ObjectId};

pub type ParkId = u64;

#[derive(Debug)]
pub struct Parked {
    pub conn: Token,
    pub object: ObjectId,
    pub call: ObjectCall,
    pub deadline: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Blocked {
    parked: HashMap<ParkId, Parked>,
    /// Waiters per object, oldest first: the first getter gets the next item.
    by_object: HashMap<ObjectId, VecDeque<ParkId>>,
    /// A client sends one request at a time, so a connection parks at most one.
    by_conn: HashMap<Token, ParkId>,
    deadlines: BTreeSet<(Instant, ParkId)>,
    next_id: ParkId,
}

impl Blocked {
    pub fn park(&mut self, conn: Token, object: ObjectId, call: ObjectCall) -> ParkId {
        let id = self.next_id;
        self.next_id += 1;
        let deadline = call.deadline();
        if let Some(d) = deadline {
            self.deadlines.insert((d, id));
        }
        self.by_object.entry(object).or_default().push_back(id);
        self.by_conn.insert(conn, id);
        self.parked.insert(id, Parked { conn, object, call, deadline });
        id
    }

    /// The waiters on `object`, oldest first (a snapshot: waking one may
    /// park or remove others).
    pub fn waiters(&self, object: ObjectId) -> Vec<ParkId> {
        self.by_object.get(&object).map(|q| q.iter().copied().collect()).unwrap_or_default()
    }

    pub fn has_waiters(&self, object: ObjectId) -> bool {
        self.by_object.contains_key(&object)
    }

    pub fn get_mut(&mut self, id: ParkId) -> Option<&mut Parked> {
        self.parked.get_mut(&id)
    }

    pub fn remove(&mut self, id: ParkId) -> Option<Parked> {
        let p = self.parked.remove(&id)?;
        if let Some(d) = p.deadline {
            self.deadlines.remove(&(d, id));
        }
        if let Some(q) = self.by_object.get_mut(&p.object) {
            q.retain(|&x| x != id);
            if q.is_empty() {
                self.by_object.remove(&p.object);
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

    pub fn len(&self) -> usize {
        self.parked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }
}
