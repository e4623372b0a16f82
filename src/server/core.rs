//! The core: every object, every waiting call and the reference
//! bookkeeping, shared by the worker threads behind one lock.
//!
//! A worker reads, frames and decodes a request on its own thread, then
//! takes the lock for the request's effect only (the call on the object,
//! the waiters it wakes, the references it changes) and leaves the
//! replies as [`Delivery`]s; it encodes and writes them after letting go
//! of the lock. So the part of a request that cannot run in parallel (one
//! queue that every worker shares) stays short, and the syscalls, decoding
//! and encoding — most of a request's cost — spread over the cores.
//! Threads share the objects as KeyDB's do, rather than owning a shard
//! each as Dragonfly's do: the common case is one hot queue, which a
//! shard would put back on one thread.

use std::time::Instant;

use tracing::debug;

use crate::objects::{Attempt, CallContext, CallError, ClientId, ObjectCall, ObjectId, ObjectTable, Wakes};
use crate::pickle::{DecodeLimits, Decoded};
use crate::protocol::{PyException, Reply, Request};

use super::blocking::Parked;
use super::durable::Durable;
use super::dispatch::{self, AfterControl, Outcome, State};
use super::host::{self, HostLink};
use super::mailbox::{ConnRef, Delivery};
use super::memory::{self, MemoryBudget};
use super::peers::PeerProcess;

pub struct Core {
    pub state: State,
    pub memory: MemoryBudget,
    /// The embedding program's end for hosted objects, if connected.
    pub host: Option<HostLink>,
    pub pickle_limits: DecodeLimits,
    /// Until when worker 0, which runs the core's own timers (deferred
    /// releases, dead-client checks), sleeps: another worker that sets an
    /// earlier one wakes it.
    pub timers_sleep_until: Option<Instant>,
    /// The durable store under `--data-dir`, if any.
    pub durable: Option<Durable>,
}

/// What a worker read from a method call before taking the lock, so that
/// the time under it is the call's effect alone.
pub struct Prepared {
    /// The number the ident spells (the object may not exist).
    pub id: Option<ObjectId>,
    /// The call, read without the object (`TypeInfo::parse`), if its type
    /// allows that and the method is exposed.
    pub parsed: Option<Result<ObjectCall, CallError>>,
    /// What it may store, if that could be told from the request alone.
    pub growth: Option<usize>,
    /// The request holds a proxy.
    pub names_proxy: bool,
}

impl Prepared {
    /// Reads what can be read of `req` without the objects.
    pub fn read(pickle: &Decoded<'_>, req: &Request<'_, '_>, client: ClientId, request_len: usize) -> Prepared {
        let id = req.ident.and_then(ObjectTable::ident_number);
        let info = id.and_then(ObjectTable::type_of).filter(|t| t.exposed.contains(&req.method));
        let parsed = info.and_then(|t| t.parse).map(|parse| {
            let ctx = CallContext { client, this: id.unwrap_or(0), now: Instant::now() };
            parse(req, &ctx)
        });
        let growth = info.and_then(|t| memory::estimate_alone(t, req, request_len));
        Prepared { id, parsed, growth, names_proxy: crate::protocol::token::names_proxy(pickle) }
    }
}

/// What a control request left the connection waiting for.
#[derive(Debug, PartialEq, Eq)]
pub enum ControlDone {
    /// Answered (the reply is among the deliveries); then this.
    Answered(AfterControl),
    /// Handed to the host: the answer comes later, as a delivery.
    Waiting,
}

impl Core {
    /// A method call `(ident, method, args, kwds)` of a serving connection,
    /// as the worker prepared it. `frame` is the request's pickle (hosted
    /// objects get it as it is). Returns the object called, if it exists.
    pub fn call(
        &mut self,
        conn: ConnRef,
        peer: Option<PeerProcess>,
        req: &Request<'_, '_>,
        prepared: Prepared,
        frame: &[u8],
        out: &mut Vec<Delivery>,
    ) -> Option<ObjectId> {
        let id = prepared.id.filter(|&id| self.state.objects.get(id).is_some());
        if let Some(id) = id {
            if let Some((key, typeid)) = host::hosted_target(&self.state.objects, id) {
                self.forward_to_host(conn, peer, frame, &typeid, Some((id, key)), out);
                return Some(id);
            }
            if prepared.names_proxy
                && let Some(e) = self.state.objects.get_mut(id)
            {
                e.may_hold_proxies = true;
            }
        }
        if let Some(e) = self.refuse_unlogged(id, req) {
            out.push(Delivery { conn, reply: Reply::Error(e), close: false, parked_on: None });
            return id;
        }
        let Prepared { parsed, growth, .. } = prepared;
        let outcome = self.memory.within_caps(&mut self.state, req, id, frame.len(), growth, |state| {
            dispatch::method_call(state, req, id, conn.client, Instant::now(), parsed)
        });
        self.apply(conn, peer, id.unwrap_or(0), outcome, out);
        id
    }

    /// A control request (`create`, `incref`, `accept_connection`, ...).
    pub fn control(
        &mut self,
        conn: ConnRef,
        peer: Option<PeerProcess>,
        pickle: &Decoded<'_>,
        req: &Request<'_, '_>,
        frame: &[u8],
        out: &mut Vec<Delivery>,
    ) -> ControlDone {
        if req.method == "create"
            && let Some(typeid) = req.args.first().and_then(|&a| pickle.as_str(a))
            && self.state.registry.is_hosted(typeid)
        {
            let typeid = typeid.to_string();
            self.forward_to_host(conn, peer, frame, &typeid, None, out);
            return if self.state.blocked.is_parked(conn.client) {
                ControlDone::Waiting
            } else {
                ControlDone::Answered(AfterControl::Close)
            };
        }
        let (reply, after) = match self.memory.admit_control(&self.state.objects, req, frame.len()) {
            Ok(()) => dispatch::control(&mut self.state, req, peer),
            Err(e) => (Reply::Error(e), AfterControl::Close),
        };
        out.push(Delivery { conn, reply, close: after != AfterControl::Serve, parked_on: None });
        ControlDone::Answered(after)
    }

    /// Leaves a call's reply for its connection and wakes what it
    /// changed, or parks the call.
    pub fn apply(&mut self, conn: ConnRef, peer: Option<PeerProcess>, object: ObjectId, outcome: Outcome, out: &mut Vec<Delivery>) {
        self.apply_to(conn, peer, object, outcome, None, out)
    }

    /// [`Core::apply`] for a call that was parked (on `object`): its
    /// connection may have left since, which only its worker can tell.
    fn apply_parked(&mut self, conn: ConnRef, peer: Option<PeerProcess>, object: ObjectId, outcome: Outcome, out: &mut Vec<Delivery>) {
        self.apply_to(conn, peer, object, outcome, Some(object), out)
    }

    fn apply_to(
        &mut self,
        conn: ConnRef,
        peer: Option<PeerProcess>,
        object: ObjectId,
        outcome: Outcome,
        parked_on: Option<ObjectId>,
        out: &mut Vec<Delivery>,
    ) {
        match outcome {
            Outcome::Reply { reply, wake } => {
                self.state.objects.refresh_holds(object, reply.carries_items());
                if let Reply::Proxy { token: proxy, .. } = &reply
                    && let Some(id) = self.state.objects.parse_ident(&proxy.id)
                    && let Some(peer) = peer
                {
                    // The reference the server took for the client's new
                    // proxy, which that client drops once it holds its own.
                    self.state.owners.acquired(peer, id);
                }
                out.push(Delivery { conn, reply, close: false, parked_on });
                for key in wake {
                    self.wake(key, out);
                }
            }
            Outcome::Park { key, call, wake } => {
                let deadline = call.deadline();
                self.state.blocked.park(Parked { conn, peer, object, key, call, deadline });
                for key in wake {
                    self.wake(key, out);
                }
            }
        }
    }

    /// Retries the calls parked on `key` after it was woken, oldest first,
    /// until a pass completes none of them.
    pub fn wake(&mut self, key: crate::objects::WaitKey, out: &mut Vec<Delivery>) {
        loop {
            let mut progressed = false;
            for park_id in self.state.blocked.waiters(key) {
                let Some(parked) = self.state.blocked.get_mut(park_id) else { continue };
                let ctx = CallContext { client: parked.conn.client, this: parked.object, now: Instant::now() };
                let Some(entry) = self.state.objects.get_mut(parked.object) else {
                    // The object was freed while a call waited on it.
                    let p = self.state.blocked.remove(park_id).expect("present");
                    let reply = super::dispatch::gone_error(&ObjectTable::ident(p.object));
                    self.apply(p.conn, p.peer, p.object, Outcome::Reply { reply, wake: Wakes::new() }, out);
                    continue;
                };
                let attempt = entry.object.attempt(&mut parked.call, &ctx);
                if let Attempt::Block { on } = attempt
                    && on == key
                {
                    continue;
                }
                let p = self.state.blocked.remove(park_id).expect("present");
                let outcome = dispatch::resolve(&mut self.state, attempt, p.call);
                progressed |= matches!(outcome, Outcome::Reply { .. });
                self.apply_parked(p.conn, p.peer, p.object, outcome, out);
            }
            if !progressed || !self.state.blocked.has_waiters(key) {
                break;
            }
        }
    }

    /// Answers the calls of worker `worker`'s connections whose deadline
    /// passed with their timeout result.
    pub fn expire_deadlines(&mut self, worker: usize, now: Instant, out: &mut Vec<Delivery>) {
        for mut parked in self.state.blocked.take_expired(worker, now) {
            let ctx = CallContext { client: parked.conn.client, this: parked.object, now };
            let Some(entry) = self.state.objects.get_mut(parked.object) else { continue };
            let attempt = entry.object.timed_out(&mut parked.call, &ctx);
            // A call that must still reacquire a lock parks again; its
            // deadline() is None from now on (the SharedType contract).
            let outcome = dispatch::resolve(&mut self.state, attempt, parked.call);
            self.apply(parked.conn, parked.peer, parked.object, outcome, out);
        }
    }

    /// A connection closed: what it waited for is forgotten, what it owned
    /// (locks) is released, and its process is checked for life.
    pub fn connection_closed(
        &mut self,
        conn: ConnRef,
        serving_peer: Option<PeerProcess>,
        touched: &[ObjectId],
        out: &mut Vec<Delivery>,
    ) {
        if let Some(peer) = serving_peer {
            self.state.owners.connection_closed(peer);
        }
        if self.state.blocked.remove_client(conn.client) {
            debug!(conn = conn.slot, "client left while blocked");
        }
        // After `remove_client`: a host that asks `is_waiting` for this
        // connection's request from now on hears no, and so undoes what
        // it did for it, or finds it done when this notice comes.
        self.host_connection_closed(conn.client, touched);
        let now = Instant::now();
        for &object in touched {
            let ctx = CallContext { client: conn.client, this: object, now };
            if let Some(entry) = self.state.objects.get_mut(object) {
                for key in entry.object.client_gone(conn.client, &ctx) {
                    self.wake(key, out);
                }
            }
        }
    }

    /// A reply that completed a parked call on `object` reached no one:
    /// its connection had left. An item it carries goes back to the object
    /// (a queue puts it at its front), whose waiters are woken for it.
    pub fn reclaim(&mut self, object: ObjectId, reply: Reply, out: &mut Vec<Delivery>) {
        let Reply::Return(crate::protocol::ReplyValue::Item(item)) = reply else { return };
        if let Some(entry) = self.state.objects.get_mut(object)
            && entry.object.give_back(item)
        {
            debug!(object, "an item taken for a client that left goes back to its object");
            self.wake(object, out);
        }
    }

    /// The core's own timed work (worker 0 runs it): deferred releases and
    /// references of client processes that died (hosted objects they
    /// free go back to their host after every step: `Worker::step`).
    pub fn run_timers(&mut self, now: Instant) {
        self.state.objects.release_due(now);
        for (id, count) in self.state.owners.reap_dead(now) {
            for _ in 0..count {
                if self.state.objects.decref(id).is_err() {
                    break;
                }
            }
        }
    }

    /// When the core's own timed work is due next.
    pub fn next_timer(&self) -> Option<Instant> {
        [self.state.objects.next_release(), self.state.owners.next_check()].into_iter().flatten().min()
    }

    /// After a step on a worker other than 0: whether worker 0 must be
    /// woken because the step set a timer earlier than it sleeps until.
    pub fn timers_need_worker0(&mut self) -> bool {
        match self.next_timer() {
            Some(t) if self.timers_sleep_until.is_none_or(|s| t < s) => {
                self.timers_sleep_until = Some(t);
                true
            }
            _ => false,
        }
    }

    /// A change to a durable object once its log could not be written:
    /// it is refused, so nothing acknowledged is lost. Gets and reads go
    /// on (a get that is not logged only means the item may come back
    /// after a restart).
    fn refuse_unlogged(&self, id: Option<ObjectId>, req: &Request<'_, '_>) -> Option<PyException> {
        self.durable.as_ref()?.refuse_unlogged(id, req)
    }

    /// Hands the changes the last step made to durable objects to the log
    /// (under the core lock, so the log keeps their order); the log
    /// position to wait for under `--fsync always`, if any were made.
    pub fn log_changes(&mut self) -> Option<u64> {
        self.durable.as_ref()?.log_changes(&mut self.state.objects)
    }

    /// Items stored in every object, and how many objects hold any.
    pub fn stored_items(&self) -> (usize, usize) {
        let (mut items, mut holders) = (0usize, 0usize);
        for id in self.state.objects.ids() {
            let mut n = 0;
            if let Some(e) = self.state.objects.get(id) {
                e.object.for_each_item(&mut |_| n += 1);
            }
            items += n;
            holders += (n > 0) as usize;
        }
        (items, holders)
    }
}
