//! The gateway's blocked calls. A `get` on an empty queue (or a `put` on
//! a full one), an `acquire` of a held lock or semaphore, an `Event.wait`
//! is parked here, FIFO per object, and its client's connection stays
//! parked in the server (a host request without an answer yet): no
//! thread and no Redis connection waits for it.
//!
//! One waker thread serves them all, with one connection of its own. It
//! runs when kicked (a put through this gateway, or a name heard on the
//! wake channel by the subscriber thread), at the earliest deadline, and
//! at least every [`RETRY`] while anything waits: the retry is the safety
//! net for a notification lost while the subscriber reconnects. Each run
//! takes at most as many items as a queue has parked getters, in one
//! round trip, and hands them out oldest getter first. Locks, semaphores
//! and events are served by their own files (`lock.rs`, `semaphore.rs`,
//! `event.rs`) from the same thread.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::RedisResult;
use tracing::warn;

use crate::pickle::Item;
use crate::protocol::{PyException, Reply, ReplyValue};
use crate::server::host::HostAnswer;

use super::conn::Lazy;
use super::pending;
use super::queue::{self, For, WAKE_CHANNEL};
use super::replicas;
use super::{Gateway, ObjectKind};

/// How often parked calls retry without being woken.
pub const RETRY: Duration = Duration::from_millis(500);

struct Getter {
    ticket: u64,
    deadline: Option<Instant>,
}

/// A parked `acquire` of a lock or semaphore, or `Event.wait`.
pub struct SyncWaiter {
    pub ticket: u64,
    pub deadline: Option<Instant>,
    /// The caller's connection (with the gateway's id, an `RLock`'s owner).
    pub connection: u64,
    /// An `Event.wait`'s count of the event's sets when it came.
    pub since: u64,
}

struct Putter {
    ticket: u64,
    item: Item,
    deadline: Option<Instant>,
}

#[derive(Default)]
struct Parked {
    getters: VecDeque<Getter>,
    putters: VecDeque<Putter>,
    /// Tickets of `join`s (which have no timeout).
    joiners: Vec<u64>,
    /// Calls on a lock, semaphore or event, oldest first.
    sync: VecDeque<SyncWaiter>,
}

impl Parked {
    fn is_empty(&self) -> bool {
        self.getters.is_empty() && self.putters.is_empty() && self.joiners.is_empty() && self.sync.is_empty()
    }

    fn next_deadline(&self) -> Option<Instant> {
        let g = self.getters.iter().filter_map(|g| g.deadline);
        let p = self.putters.iter().filter_map(|p| p.deadline);
        let s = self.sync.iter().filter_map(|w| w.deadline);
        g.chain(p).chain(s).min()
    }
}

#[derive(Default)]
struct State {
    /// Parked calls per object index.
    queues: HashMap<usize, Parked>,
    kicked: bool,
    stopped: bool,
}

#[derive(Default)]
pub struct Waiters {
    state: Mutex<State>,
    wake: Condvar,
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn has_getters(&self, object: usize) -> bool {
        self.lock().queues.get(&object).is_some_and(|p| !p.getters.is_empty())
    }

    pub fn park_get(&self, object: usize, ticket: u64, deadline: Option<Instant>) {
        self.lock().queues.entry(object).or_default().getters.push_back(Getter { ticket, deadline });
        // The item may have come between the caller's take and now.
        self.kick();
    }

    pub fn park_put(&self, object: usize, ticket: u64, item: Item, deadline: Option<Instant>) {
        self.lock().queues.entry(object).or_default().putters.push_back(Putter { ticket, item, deadline });
        self.kick();
    }

    pub fn park_join(&self, object: usize, ticket: u64) {
        self.lock().queues.entry(object).or_default().joiners.push(ticket);
        self.kick();
    }

    /// Parks a call on lock, semaphore or event `object`.
    pub fn park_sync(&self, object: usize, waiter: SyncWaiter) {
        self.lock().queues.entry(object).or_default().sync.push_back(waiter);
        self.kick();
    }

    /// Whether calls on lock, semaphore or event `object` are parked here.
    pub fn has_sync(&self, object: usize) -> bool {
        self.lock().queues.get(&object).is_some_and(|p| !p.sync.is_empty())
    }

    /// Runs `f` on the parked calls of lock, semaphore or event `object`
    /// (under the waiters' lock: no Redis call in `f`).
    pub fn with_sync<R>(&self, object: usize, f: impl FnOnce(&mut VecDeque<SyncWaiter>) -> R) -> R {
        f(&mut self.lock().queues.entry(object).or_default().sync)
    }

    /// Makes the waker run now if calls are parked on `object` here: a
    /// call that parks after this check kicks it itself (`park_get`).
    pub fn kick_if_parked(&self, object: usize) {
        let mut state = self.lock();
        if state.queues.get(&object).is_some_and(|p| !p.is_empty()) {
            state.kicked = true;
            drop(state);
            self.wake.notify_one();
        }
    }

    /// Makes the waker run now.
    pub fn kick(&self) {
        self.lock().kicked = true;
        self.wake.notify_one();
    }

    pub fn stop(&self) {
        self.lock().stopped = true;
        self.wake.notify_all();
    }

    pub(super) fn stopped(&self) -> bool {
        self.lock().stopped
    }

    /// Waits until kicked, the earliest deadline, or [`RETRY`]; false once
    /// stopped.
    fn wait(&self) -> bool {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return false;
            }
            if state.kicked {
                state.kicked = false;
                return true;
            }
            let now = Instant::now();
            let idle = state.queues.values().all(Parked::is_empty);
            let mut until = now + if idle { Duration::from_secs(3600) } else { RETRY };
            if let Some(d) = state.queues.values().filter_map(Parked::next_deadline).min() {
                until = until.min(d);
            }
            if until <= now {
                return true;
            }
            let (s, timeout) = self.wake.wait_timeout(state, until - now).unwrap_or_else(|e| e.into_inner());
            state = s;
            if timeout.timed_out() {
                return true;
            }
        }
    }
}

/// The waker thread's loop.
pub fn run_waker(gw: Arc<Gateway>) {
    let mut conn = Lazy::default();
    while gw.waiters.wait() {
        let busy: Vec<usize> = gw.waiters.lock().queues.iter().filter(|(_, p)| !p.is_empty()).map(|(&i, _)| i).collect();
        for object in busy {
            // A created object released meanwhile has no calls to serve.
            let Some(q) = gw.objects.get(object) else { continue };
            let served = match q.kind {
                ObjectKind::Queue { .. } => serve_queue(&gw, &mut conn, object),
                ObjectKind::Lock | ObjectKind::RLock => super::lock::serve(&gw, &mut conn, object),
                ObjectKind::Semaphore { .. } => super::semaphore::serve(&gw, &mut conn, object),
                ObjectKind::Event => super::event::serve(&gw, &mut conn, object),
                _ => Ok(()),
            };
            // A queue's pass answers its expired calls itself, after
            // taking what it could for them.
            if !matches!(q.kind, ObjectKind::Queue { .. }) {
                expire(&gw, object);
            }
            if let Err(e) = served {
                warn!(error = %e, object = %q.name, "redis backend: cannot serve waiting calls; retrying");
            }
        }
        gw.waiters.lock().queues.retain(|_, p| !p.is_empty());
    }
}

/// Hands out what queue `object` now has to its parked calls, then
/// answers the ones whose deadline has passed.
fn serve_queue(gw: &Gateway, conn: &mut Lazy, object: usize) -> RedisResult<()> {
    // A created queue released meanwhile has no parked calls left.
    let Some(q) = gw.objects.get(object) else { return Ok(()) };
    let q = &*q;
    let ObjectKind::Queue { maxsize } = q.kind else { return Ok(()) };
    // Callers that left are dropped before taking anything for them.
    let (getters, putter, joiners) = {
        let mut state = gw.waiters.lock();
        let Some(parked) = state.queues.get_mut(&object) else { return Ok(()) };
        parked.getters.retain(|g| gw.end.is_waiting(g.ticket));
        parked.putters.retain(|p| gw.end.is_waiting(p.ticket));
        parked.joiners.retain(|&t| gw.end.is_waiting(t));
        (parked.getters.len(), parked.putters.front().map(|p| p.item.clone()), !parked.joiners.is_empty())
    };
    if getters > 0 {
        let taken = conn.with(&gw.connector, |c| queue::take(c, q, maxsize, getters, For::Parked, &gw.delivery))?;
        gw.delivery.stall();
        let mut left = taken.into_iter().peekable();
        let mut delivered = Vec::new();
        {
            let mut state = gw.waiters.lock();
            let parked = state.queues.entry(object).or_default();
            // Only this thread removes getters; one that left since the
            // check above is dropped, and an item nobody is left to take
            // goes back (below).
            while let Some(item) = left.peek() {
                let Some(g) = std::iter::from_fn(|| parked.getters.pop_front()).find(|g| gw.end.is_waiting(g.ticket)) else { break };
                gw.answer(g.ticket, queue::item_reply(item.clone()));
                delivered.extend(left.next());
            }
        }
        let returned: Vec<Item> = left.collect();
        pending::settle(gw, conn, q, delivered, &returned);
    }
    // Parked puts, oldest first, while there is room.
    let mut next = putter;
    while let Some(item) = next.take() {
        let reply = match conn.with(&gw.connector, |c| queue::put(c, q, maxsize, &item, For::Parked, &gw.delivery)) {
            Ok(false) => break,
            Ok(true) => Reply::none(),
            // Pushed, but fewer replicas than asked have it: the put's
            // caller hears so, as an unparked put would (`replicas.rs`).
            Err(e) if replicas::is_short(&e) => gw.backend_error(&e),
            Err(e) => return Err(e),
        };
        let mut state = gw.waiters.lock();
        let parked = state.queues.entry(object).or_default();
        let p = parked.putters.pop_front().expect("the putter served");
        gw.answer(p.ticket, reply);
        next = parked.putters.front().map(|p| p.item.clone());
    }
    if joiners && conn.with(&gw.connector, |c| queue::unfinished(c, q))? <= 0 {
        let mut state = gw.waiters.lock();
        for ticket in state.queues.entry(object).or_default().joiners.drain(..) {
            gw.answer(ticket, Reply::none());
        }
    }
    expire(gw, object);
    Ok(())
}

/// Answers the parked calls of `object` whose deadline has passed, as
/// CPython does: `queue.Empty` for a get, `queue.Full` for a put, `False`
/// for an `acquire` or an `Event.wait` (a wait whose event was set has
/// been answered `True` by the pass before).
fn expire(gw: &Gateway, object: usize) {
    let now = Instant::now();
    let passed = |d: Option<Instant>| d.is_some_and(|d| d <= now);
    let mut state = gw.waiters.lock();
    let Some(parked) = state.queues.get_mut(&object) else { return };
    parked.getters.retain(|g| {
        let keep = !passed(g.deadline);
        if !keep {
            gw.answer(g.ticket, Reply::Error(PyException::queue_empty()));
        }
        keep
    });
    parked.putters.retain(|p| {
        let keep = !passed(p.deadline);
        if !keep {
            gw.answer(p.ticket, Reply::Error(PyException::queue_full()));
        }
        keep
    });
    parked.sync.retain(|w| {
        let keep = !passed(w.deadline);
        if !keep {
            gw.answer(w.ticket, Reply::Return(ReplyValue::Bool(false)));
        }
        keep
    });
}

/// The subscriber thread: one pub/sub connection per gateway, to the
/// first seed node that answers; any message kicks the waker. After a
/// reconnect it kicks too, for what it may have missed.
pub fn run_subscriber(gw: Arc<Gateway>) {
    let mut node = 0;
    while !gw.waiters.stopped() {
        let url = format!("redis://{}", gw.nodes[node % gw.nodes.len()]);
        node += 1;
        if let Err(e) = listen(&gw, &url) {
            warn!(error = %e, node = %url, "redis backend: wake-up subscription lost; reconnecting");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn listen(gw: &Gateway, url: &str) -> RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut pubsub = conn.as_pubsub();
    pubsub.subscribe(WAKE_CHANNEL)?;
    pubsub.set_read_timeout(Some(Duration::from_secs(1)))?;
    gw.waiters.kick();
    loop {
        match pubsub.get_message() {
            Ok(_) => gw.waiters.kick(),
            Err(e) if e.is_timeout() => {
                if gw.waiters.stopped() {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

impl Gateway {
    /// Sends a reply to a parked call.
    pub(super) fn answer(&self, ticket: u64, reply: Reply) {
        let _ = self.end.answer(ticket, HostAnswer::Reply(reply.into_bytes()));
    }
}
