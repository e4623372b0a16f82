//! The bridge to an embedding program that creates and serves some objects
//! itself: the Python package, whose master registers callables that may
//! return anything (`register('Thing', Thing)`, `lambda: q`).
//!
//! No worker thread waits for the host. A `create` of a hosted typeid,
//! or a call on a [`HostedObject`], becomes a [`HostRequest`] on a channel
//! and parks its connection in the one registry of waiting calls
//! (`blocking`); the host answers on another channel and wakes the
//! worker that owns the calling connection (its index is in the ticket),
//! which turns the answer into the reply and writes it: no second hand-off
//! between workers. The host runs each request on a thread of its own, so
//! a slow method stalls only its own caller — as on CPython's
//! thread-per-connection server.
//!
//! A host may also run calls on the calling worker's own thread
//! ([`InlineHost`], the Redis gateway): the step that parks the call only
//! queues it, and the worker runs it once the step is over and the
//! connection parked, then applies the answer at once. A call then costs
//! no thread hand-off at all, but the worker's other connections wait for
//! it, so a host makes only short calls inline and gives back the rest.
//!
//! The host may also answer a `create` with a recipe for a built-in object
//! ([`HostAnswer::Native`]): a `queue.Queue` the callable returned becomes
//! a Rust queue with the same items, served without the host from then on.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::objects::hosted::HostedObject;
use crate::objects::{ClientId, ObjectId, ObjectTable, SharedObject, Wakes};
use crate::pickle::decode;
use crate::protocol::reply::format_traceback;
use crate::protocol::{parse_request, Reply, Request};

use super::blocking::{HostPurpose, HostWait};
use super::core::Core;
use super::dispatch::{self, Outcome};
use super::mailbox::{ConnRef, Delivery};
use super::peers::PeerProcess;
use super::Shared;

/// A ticket's low bits are the index of the worker whose connection
/// waits for its answer (the rest count up).
const TICKET_WORKER_BITS: u32 = 16;

/// The worker that waits for the answer to `ticket`.
fn worker_of(ticket: u64) -> usize {
    (ticket & ((1 << TICKET_WORKER_BITS) - 1)) as usize
}

/// What the server asks of the host.
#[derive(Debug)]
pub enum HostRequest {
    /// `create(typeid, *args, **kwds)` for a typeid the host registered;
    /// `frame` is the client's request pickle, `(None, 'create', args, kwds)`.
    Create { ticket: u64, typeid: String, frame: Vec<u8> },
    /// A call on the object the host keeps under `key`; `frame` is the
    /// client's request pickle `(ident, method, args, kwds)`. `connection`
    /// is the calling connection, unique for the server's life: as in
    /// CPython, where each client thread has its own connection, it is
    /// the caller's identity (an `RLock`'s owner).
    Call { ticket: u64, key: u64, connection: ClientId, frame: Vec<u8> },
    /// Nobody refers to the object under `key` any more: drop it.
    Release { key: u64 },
    /// A connection that called hosted objects has closed: what it owned
    /// (an `RLock` it holds) is released, as the embedded server does
    /// for its own objects. Sent after every request of that connection.
    Disconnected { connection: ClientId },
}

/// How the host answers a request.
#[derive(Debug)]
pub enum HostAnswer {
    /// The whole reply message, pickled by the host (`('#RETURN', x)`,
    /// `('#ERROR', e)`, `('#TRACEBACK', text)`, ...).
    Reply(Vec<u8>),
    /// A new object of `typeid` the host keeps under `key` (unique per
    /// answer) and serves with these method names.
    Hosted { typeid: String, key: u64, exposed: Vec<String> },
    /// A built-in object made from `create`, a pickled `(None, 'create',
    /// (kind, *args), kwds)` request, then changed by each of `calls`
    /// (pickled `(None, method, args, kwds)` requests, e.g. `put_nowait`).
    /// `shared` is the host's identity for an object its program keeps
    /// (the queue a `lambda: q` closes over): every later answer with the
    /// same identity means the same object, which lives as long as the
    /// server. Without it the object is new and refcounted as usual.
    /// `typeid` is what clients see (the registered name), whatever the
    /// kind.
    Native { typeid: String, shared: Option<u64>, create: Vec<u8>, calls: Vec<Vec<u8>> },
}

/// The host's end of the bridge; any of its threads may use it.
pub struct HostEnd {
    /// Behind a lock so that the end is `Sync`: one thread at a time waits
    /// for requests, while others answer.
    requests: std::sync::Mutex<Receiver<HostRequest>>,
    answers: Sender<(u64, HostAnswer)>,
    /// The worker waiting for an answer takes it (any worker may apply
    /// all that are there).
    shared: Arc<Shared>,
}

/// The server has stopped: no more requests will come.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerGone;

impl HostEnd {
    /// The next request, waiting at most `timeout`; `Ok(None)` on timeout.
    pub fn next_request(&self, timeout: Duration) -> Result<Option<HostRequest>, ServerGone> {
        let requests = self.requests.lock().map_err(|_| ServerGone)?;
        match requests.recv_timeout(timeout) {
            Ok(r) => Ok(Some(r)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(ServerGone),
        }
    }

    /// Whether the connection that sent request `ticket` still waits for
    /// its answer. A host that takes something for a waiting call (an
    /// item from a queue kept elsewhere) asks first, so that a caller who
    /// left long ago is not handed, and does not lose, what it took; the
    /// window left is the time between this check and the answer.
    pub fn is_waiting(&self, ticket: u64) -> bool {
        self.shared.lock().state.blocked.waits_for_host(ticket)
    }

    /// Answers the request `ticket`.
    pub fn answer(&self, ticket: u64, answer: HostAnswer) -> Result<(), ServerGone> {
        self.answers.send((ticket, answer)).map_err(|_| ServerGone)?;
        // Counted after the send: a worker that takes the count takes
        // the answer too (`Shared::take_host_answers`).
        self.shared.host_answers.fetch_add(1, Ordering::Release);
        let worker = worker_of(ticket) % self.shared.mailboxes.len();
        // An inline call's worker applies its answers right after it.
        if INLINE_ON.get() != Some(worker) {
            self.shared.mailboxes[worker].nudge();
        }
        Ok(())
    }
}

thread_local! {
    /// The worker whose thread this is, while it runs inline calls.
    static INLINE_ON: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` (inline calls) on worker `worker`'s thread: answers for its
/// own connections need not wake it.
pub(super) fn running_inline<R>(worker: usize, f: impl FnOnce() -> R) -> R {
    INLINE_ON.set(Some(worker));
    let r = f();
    INLINE_ON.set(None);
    r
}

/// A host that runs calls on the worker thread that received them.
pub trait InlineHost: Send + Sync {
    /// Runs `request` (a [`HostRequest::Call`]) now, answering it through
    /// [`HostEnd::answer`] (at once, or later if it waits), or gives it
    /// back to be sent to the host's own threads. `parsed`: its frame as
    /// the worker already read it, when the worker has it at hand.
    fn call_inline(&self, request: HostRequest, parsed: Option<&Request<'_, '_>>) -> Option<HostRequest>;

    /// Runs calls read from several connections in one loop turn, in as
    /// few round trips as the host can (the Redis gateway pipelines
    /// them); returns those given back. By default one by one.
    fn call_inline_batch(&self, requests: Vec<HostRequest>) -> Vec<HostRequest> {
        requests.into_iter().filter_map(|r| self.call_inline(r, None)).collect()
    }
}

impl HostEnd {
    /// From now on, calls on hosted objects run on the calling worker's
    /// thread through `host` (creates, releases and disconnections still
    /// come through [`HostEnd::next_request`]). Held weakly: the host
    /// owns this end.
    pub fn serve_calls_inline(&self, host: Weak<dyn InlineHost>) {
        let _ = self.shared.inline_host.set(host);
        if let Some(link) = self.shared.lock().host.as_mut() {
            link.inline = true;
        }
    }
}

/// Stops a running server from another thread.
#[derive(Clone)]
pub struct Stopper {
    pub(super) shared: Arc<Shared>,
}

impl Stopper {
    pub fn stop(&self) {
        self.shared.stop();
    }
}

/// The server's end of the bridge.
pub struct HostLink {
    requests: Sender<HostRequest>,
    answers: Receiver<(u64, HostAnswer)>,
    next_ticket: u64,
    /// Built-in objects made for a host object its program keeps.
    shared: HashMap<u64, ObjectId>,
    /// Calls run on the worker's thread (`InlineHost`): those a step
    /// forwarded, for its worker to run after the step.
    inline: bool,
    inline_calls: Vec<HostRequest>,
}

impl HostLink {
    pub(super) fn new(shared: Arc<Shared>) -> (HostLink, HostEnd) {
        let (request_tx, request_rx) = mpsc::channel();
        let (answer_tx, answer_rx) = mpsc::channel();
        let link = HostLink {
            requests: request_tx,
            answers: answer_rx,
            next_ticket: 1,
            shared: HashMap::new(),
            inline: false,
            inline_calls: Vec::new(),
        };
        (link, HostEnd { requests: std::sync::Mutex::new(request_rx), answers: answer_tx, shared })
    }
}

impl Core {
    /// Hands a request to the host and parks the connection until the
    /// answer; without a host, answers with the error CPython would give
    /// for an unknown typeid.
    pub(super) fn forward_to_host(
        &mut self,
        conn: ConnRef,
        peer: Option<PeerProcess>,
        frame: &[u8],
        typeid: &str,
        call_on: Option<(ObjectId, u64)>,
        out: &mut Vec<Delivery>,
    ) {
        let Some(host) = self.host.as_mut() else {
            let reply = Reply::traceback(&crate::protocol::PyException::key_error(format!("'{typeid}'")));
            out.push(Delivery { conn, reply, close: true, parked_on: None });
            return;
        };
        let ticket = (host.next_ticket << TICKET_WORKER_BITS) | conn.worker as u64;
        host.next_ticket += 1;
        let (request, purpose) = match call_on {
            None => (HostRequest::Create { ticket, typeid: typeid.to_string(), frame: frame.to_vec() }, HostPurpose::Create { peer }),
            Some((object, key)) => {
                let request = HostRequest::Call { ticket, key, connection: conn.client, frame: frame.to_vec() };
                (request, HostPurpose::Call { object, peer })
            }
        };
        if host.inline && matches!(request, HostRequest::Call { .. }) {
            host.inline_calls.push(request);
        } else if host.requests.send(request).is_err() {
            let reply = Reply::Traceback(format_traceback("RuntimeError: the host of this object has stopped"));
            out.push(Delivery { conn, reply, close: call_on.is_none(), parked_on: None });
            return;
        }
        self.state.blocked.park_for_host(ticket, HostWait { conn, purpose });
    }

    /// Moves the calls to run inline that this step forwarded to `into`.
    pub(super) fn take_inline_calls(&mut self, into: &mut Vec<HostRequest>) {
        if let Some(host) = self.host.as_mut()
            && !host.inline_calls.is_empty()
        {
            into.append(&mut host.inline_calls);
        }
    }

    /// Sends a call the inline host gave back to the host's threads.
    pub(super) fn send_to_host(&mut self, request: HostRequest) {
        if let Some(host) = self.host.as_ref() {
            let _ = host.requests.send(request);
        }
    }

    /// Applies every answer the host has sent.
    pub(super) fn on_host_answers(&mut self, out: &mut Vec<Delivery>) {
        loop {
            let Some(host) = self.host.as_mut() else { return };
            let Ok((ticket, answer)) = host.answers.try_recv() else { return };
            let Some(wait) = self.state.blocked.take_host_wait(ticket) else {
                // The client left meanwhile: keep nothing made for it.
                if let HostAnswer::Hosted { key, .. } = answer {
                    let _ = host.requests.send(HostRequest::Release { key });
                }
                continue;
            };
            let made = match answer {
                HostAnswer::Reply(bytes) => Err(Reply::Pickled(bytes)),
                HostAnswer::Hosted { typeid, key, exposed } => {
                    let object = SharedObject::Hosted(HostedObject::new(key, &exposed));
                    Ok((self.state.objects.insert(&typeid, object, false), typeid))
                }
                HostAnswer::Native { typeid, shared, create, calls } => {
                    self.make_native(&typeid, shared, &create, &calls).map(|id| (id, typeid))
                }
            };
            let conn = wait.conn;
            match (wait.purpose, made) {
                (HostPurpose::Create { .. }, Err(reply)) => out.push(Delivery { conn, reply, close: true, parked_on: None }),
                (HostPurpose::Create { peer }, Ok((id, typeid))) => {
                    let reply = dispatch::created(&mut self.state, id, &typeid, peer);
                    out.push(Delivery { conn, reply, close: true, parked_on: None });
                }
                (HostPurpose::Call { object, peer }, Err(reply)) => {
                    self.apply(conn, peer, object, Outcome::Reply { reply, wake: Wakes::new() }, out);
                }
                (HostPurpose::Call { object, peer }, Ok((id, typeid))) => {
                    // `method_to_typeid`: the result is served as a new object.
                    let outcome = dispatch::proxy_to(&mut self.state, id, &typeid);
                    self.apply(conn, peer, object, outcome, out);
                }
            }
        }
    }

    /// Builds a built-in object from the host's recipe.
    fn make_native(&mut self, typeid: &str, shared: Option<u64>, create: &[u8], calls: &[Vec<u8>]) -> Result<ObjectId, Reply> {
        let host = self.host.as_ref().expect("answers come from a host");
        if let Some(&id) = shared.and_then(|s| host.shared.get(&s))
            && self.state.objects.get(id).is_some()
        {
            return Ok(id);
        }
        let limits = self.pickle_limits;
        let bad = |what: &str, e: &dyn std::fmt::Display| Err(Reply::Traceback(format_traceback(&format!("RuntimeError: host sent a bad {what}: {e}"))));
        let pickle = match decode(create, &limits) {
            Ok(p) => p,
            Err(e) => return bad("recipe", &e),
        };
        let req = match parse_request(&pickle) {
            Ok(r) => r,
            Err(e) => return bad("recipe", &e),
        };
        let Some(kind) = req.args.first().and_then(|&a| pickle.as_str(a)) else { return bad("recipe", &"no kind") };
        let ctor = Request { pickle: &pickle, ident: None, method: "create", args: &req.args[1..], kwds: req.kwds.clone() };
        let id = self.state.registry.create(kind, &ctor, &mut self.state.objects).map_err(|e| Reply::traceback(&e))?;
        if let Some(e) = self.state.objects.get_mut(id) {
            e.typeid = typeid.to_string();
        }
        for call in calls {
            let Ok(pickle) = decode(call, &limits) else { continue };
            let Ok(req) = parse_request(&pickle) else { continue };
            // Filling a new object: nobody waits on it, nothing to wake.
            let _ = dispatch::method_call(&mut self.state, &req, Some(id), 0, Instant::now(), None);
        }
        if let Some(identity) = shared {
            if let Some(e) = self.state.objects.get_mut(id) {
                e.pinned = true;
            }
            self.host.as_mut().expect("checked").shared.insert(identity, id);
        }
        Ok(id)
    }

    /// Tells the host that `client`'s connection, which called the
    /// objects in `touched`, has closed, if any of them is the host's
    /// (read from the id's type tag, so an object freed since counts
    /// too). The requests it sent are already on the channel, before this.
    pub(super) fn host_connection_closed(&mut self, client: ClientId, touched: &[ObjectId]) {
        let Some(host) = self.host.as_ref() else { return };
        if touched.iter().any(|&id| ObjectTable::type_of(id).is_none()) {
            let _ = host.requests.send(HostRequest::Disconnected { connection: client });
        }
    }

    /// Tells the host which of its objects were freed.
    pub(super) fn release_hosted(&mut self) {
        if !self.state.objects.has_freed_hosted() {
            return;
        }
        let freed = self.state.objects.take_freed_hosted();
        if freed.is_empty() {
            return;
        }
        match self.host.as_ref() {
            Some(host) => {
                for key in freed {
                    let _ = host.requests.send(HostRequest::Release { key });
                }
            }
            None => warn!("hosted objects freed without a host"),
        }
    }
}

/// Whether a frame on a serving connection is a call on a hosted object:
/// its key and typeid, if so.
pub(super) fn hosted_target(objects: &ObjectTable, id: ObjectId) -> Option<(u64, String)> {
    let entry = objects.get(id)?;
    match &entry.object {
        SharedObject::Hosted(h) => Some((h.key, entry.typeid.clone())),
        _ => None,
    }
}
