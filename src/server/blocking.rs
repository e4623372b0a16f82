//! Every call that waits, for whatever reason, in one registry — as Redis
//! routes every kind of blocked client through `blockClient` in
//! `blocked.c`:
//!
//! - a method call that must wait for its object to change (a `get` on an
//!   empty queue, a `put` on a full one, `acquire`, `wait`, `join`): retried
//!   when its wait key is woken, answered with its timeout error when its
//!   deadline passes;
//! - a request handed to the embedding program's host (a `create` of a
//!   hosted typeid, a call on a hosted object): answered when the host
//!   answers its ticket.
//!
//! No thread ever waits for them. A connection has at most one waiting
//! call (clients never pipeline), so whether a connection is parked is
//! read from here ([`Blocked::is_parked`]). Deadlines are kept per worker
//! thread (the worker that owns the connection expires them, so no thread
//! has to be woken for another's timers).

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::objects::{ClientId, ObjectCall, ObjectId, WaitKey};

use super::mailbox::ConnRef;
use super::peers::PeerProcess;

pub type ParkId = u64;

/// A method call waiting for its object.
#[derive(Debug)]
pub struct Parked {
    pub conn: ConnRef,
    /// The caller's process, for the reference a `#PROXY` answer takes.
    pub peer: Option<PeerProcess>,
    /// The object the call is attempted on.
    pub object: ObjectId,
    /// What wakes it (usually `object`).
    pub key: WaitKey,
    pub call: ObjectCall,
    pub deadline: Option<Instant>,
}

/// What a request handed to the host is for.
#[derive(Debug)]
pub enum HostPurpose {
    /// A `create` of a hosted typeid: answered as a control request.
    Create { peer: Option<PeerProcess> },
    /// A call on the hosted object `object`.
    Call { object: ObjectId, peer: Option<PeerProcess> },
}

/// A request waiting for the host's answer to its ticket.
#[derive(Debug)]
pub struct HostWait {
    pub conn: ConnRef,
    pub purpose: HostPurpose,
}

#[derive(Debug, Clone, Copy)]
enum Wait {
    Object(ParkId),
    Host(u64),
}

/// The maps are Fx-hashed: their keys are the server's own numbers
/// (park ids, object ids, client ids, tickets), which no client picks.
#[derive(Debug, Default)]
pub struct Blocked {
    parked: FxHashMap<ParkId, Parked>,
    /// Waiters per wait key, oldest first: the first getter gets the next
    /// item, whichever worker thread its connection is on.
    by_key: FxHashMap<WaitKey, VecDeque<ParkId>>,
    host: FxHashMap<u64, HostWait>,
    /// A client sends one request at a time, so a connection waits for at
    /// most one thing.
    by_client: FxHashMap<ClientId, Wait>,
    /// Deadlines of object calls, per worker thread.
    deadlines: Vec<BTreeSet<(Instant, ParkId)>>,
    next_id: ParkId,
}

impl Blocked {
    pub fn new(workers: usize) -> Blocked {
        Blocked { deadlines: (0..workers).map(|_| BTreeSet::new()).collect(), ..Default::default() }
    }

    /// Parks a call; `deadline` is `None` for a call that waits forever
    /// (or that already timed out and now only reacquires a lock).
    pub fn park(&mut self, parked: Parked) -> ParkId {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(d) = parked.deadline {
            self.deadlines[parked.conn.worker].insert((d, id));
        }
        self.by_key.entry(parked.key).or_default().push_back(id);
        self.by_client.insert(parked.conn.client, Wait::Object(id));
        self.parked.insert(id, parked);
        id
    }

    /// Parks a request until the host answers `ticket`.
    pub fn park_for_host(&mut self, ticket: u64, wait: HostWait) {
        self.by_client.insert(wait.conn.client, Wait::Host(ticket));
        self.host.insert(ticket, wait);
    }

    /// The request waiting for `ticket`, if its connection is still there.
    pub fn take_host_wait(&mut self, ticket: u64) -> Option<HostWait> {
        let wait = self.host.remove(&ticket)?;
        self.by_client.remove(&wait.conn.client);
        Some(wait)
    }

    /// Whether a connection still waits for the host's answer to `ticket`.
    pub fn waits_for_host(&self, ticket: u64) -> bool {
        self.host.contains_key(&ticket)
    }

    /// Whether `client`'s connection waits for anything.
    pub fn is_parked(&self, client: ClientId) -> bool {
        self.by_client.contains_key(&client)
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
            self.deadlines[p.conn.worker].remove(&(d, id));
        }
        if let Some(q) = self.by_key.get_mut(&p.key) {
            q.retain(|&x| x != id);
            if q.is_empty() {
                self.by_key.remove(&p.key);
            }
        }
        self.by_client.remove(&p.conn.client);
        Some(p)
    }

    /// Forgets what a closed connection waited for. A host request stays
    /// unanswered: its answer finds no waiter and is dropped (an object
    /// made for it is released).
    pub fn remove_client(&mut self, client: ClientId) -> bool {
        match self.by_client.get(&client).copied() {
            Some(Wait::Object(id)) => self.remove(id).is_some(),
            Some(Wait::Host(ticket)) => self.take_host_wait(ticket).is_some(),
            None => false,
        }
    }

    /// The earliest deadline of a call of worker `worker`'s connections.
    pub fn next_deadline(&self, worker: usize) -> Option<Instant> {
        self.deadlines[worker].first().map(|(d, _)| *d)
    }

    /// Removes and returns the calls of worker `worker`'s connections
    /// whose deadline has passed.
    pub fn take_expired(&mut self, worker: usize, now: Instant) -> Vec<Parked> {
        let mut out = Vec::new();
        while let Some(&(d, id)) = self.deadlines[worker].first() {
            if d > now {
                break;
            }
            if let Some(p) = self.remove(id) {
                out.push(p);
            }
        }
        out
    }

    /// Every call waiting for its object (`stat`).
    pub fn parked_calls(&self) -> impl Iterator<Item = &Parked> {
        self.parked.values()
    }

    /// Connections waiting, for an object or for the host.
    pub fn waiting_clients(&self) -> usize {
        self.by_client.len()
    }

    /// Whether no call waits, of any kind.
    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }
}
