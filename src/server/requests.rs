//! What a worker does with a whole frame: a handshake step, a control
//! request or a method call. Decoding and parsing happen on the worker,
//! without the core's lock; one step under the lock applies the request
//! (`core.rs`); the reply is encoded and written after it.

use std::time::Instant;

use mio::Token;
use tracing::{debug, info, warn};

use crate::objects::{ObjectId, ObjectTable};

use crate::pickle::{decode, Decoded};
use crate::protocol::reply::format_traceback;
use crate::protocol::{parse_request, Reply, Request};

use super::connection::Phase;
use super::core::{ControlDone, Prepared};
use super::dispatch::AfterControl;
use super::identify::{self, Quick};
use super::peers::PeerProcess;
use super::stats::counters::WorkerCounters;
use super::stats::slowlog::SlowCall;
use super::stats::snapshot::Snapshot;
use super::stats::STAT_REQUEST;
use super::worker::Worker;

/// What a handled request was, for the counters and the slow log.
#[derive(Debug, Clone, Copy)]
struct Served {
    /// Its method's counter slot (`stats::counters::MethodNames`).
    slot: usize,
    /// The object a method call named.
    object: Option<ObjectId>,
}

/// A reply buffer that grew past this (a large reply) is not kept.
const KEEP_REPLY_BUFFER: usize = 64 * 1024;

/// Decodes a request frame, or says what the client gets instead: the
/// error its own server would have sent (a `#TRACEBACK`).
fn decode_request<'a>(frame: &'a [u8], limits: &crate::pickle::DecodeLimits) -> Result<Decoded<'a>, Reply> {
    decode(frame, limits).map_err(|e| Reply::Traceback(format_traceback(&format!("_pickle.UnpicklingError: {e}"))))
}

fn parse<'d, 'a>(pickle: &'d Decoded<'a>) -> Result<Request<'d, 'a>, Reply> {
    parse_request(pickle).map_err(|line| Reply::Traceback(format_traceback(&line)))
}

impl Worker {
    /// Handles one frame; returns `false` when it must be handled again
    /// later (its connection waits for its client process to be found),
    /// so the caller keeps it.
    pub(super) fn on_frame(&mut self, token: Token, frame: &[u8]) -> bool {
        let Some(conn) = self.conn(token) else { return true };
        match conn.phase() {
            Phase::AwaitAnswer | Phase::AwaitPeerChallenge | Phase::AwaitPeerWelcome => {
                let config = &self.shared.config;
                let stats = &self.shared.stats;
                let counters = stats.worker(self.index());
                let conn = self.conns[token.0].as_mut().expect("live");
                match conn.on_handshake_frame(&config.authkey, config.allow_legacy_md5, frame) {
                    Err(why) => {
                        WorkerCounters::add(&counters.auth_failed, 1);
                        let who = stats.clients.describe(conn.client());
                        warn!(conn = token.0, client = %who, "authentication failed: {why}");
                    }
                    Ok(()) if conn.phase() == Phase::AwaitControl => {
                        WorkerCounters::add(&counters.auth_ok, 1);
                        stats.clients.authenticated(conn.client());
                        debug!(conn = token.0, client = %stats.clients.describe(conn.client()), "authenticated");
                    }
                    Ok(()) => {}
                }
                true
            }
            Phase::AwaitControl => {
                conn.note_request(frame);
                let started = Instant::now();
                let done = self.on_control(token, frame);
                if let Some(call) = done {
                    self.count_request(token, call, frame.len(), started);
                }
                done.is_some()
            }
            Phase::Serving => {
                conn.note_request(frame);
                let started = Instant::now();
                let call = self.on_call(token, frame);
                self.count_request(token, call, frame.len(), started);
                true
            }
        }
    }

    /// Counts a handled request, and logs it if it was slow.
    fn count_request(&mut self, token: Token, call: Served, bytes: usize, started: Instant) {
        let took = started.elapsed();
        let stats = &self.shared.stats;
        stats.worker(self.index()).request(call.slot, bytes, took);
        if stats.slow.is_slow(took) {
            WorkerCounters::add(&stats.worker(self.index()).slow_calls, 1);
            let client = self.conns.get(token.0).and_then(Option::as_ref).map_or(0, |c| c.client());
            stats.slow.record(SlowCall {
                at: 0.0,
                method: stats.methods.names()[call.slot].to_string(),
                typeid: call.object.and_then(ObjectTable::type_of).map_or_else(String::new, |t| t.typeid.to_string()),
                object: call.object.map_or_else(String::new, |id| stats.object_name(id)),
                bytes,
                us: took.as_micros() as u64,
                client: stats.clients.describe(client),
            });
        }
    }

    /// Handles a control request; `None` when it must be handled again
    /// later (see [`Worker::on_frame`]).
    fn on_control(&mut self, token: Token, frame: &[u8]) -> Option<Served> {
        let limits = self.shared.config.limits.pickle;
        let other = Served { slot: self.shared.stats.methods.other(), object: None };
        let parsed = decode_request(frame, &limits);
        let pickle = match parsed {
            Ok(p) => p,
            Err(reply) => return self.answer_and_close(token, reply).then_some(other),
        };
        let req = match parse(&pickle) {
            Ok(r) => r,
            Err(reply) => return self.answer_and_close(token, reply).then_some(other),
        };
        let served = Served { slot: self.shared.stats.methods.slot(req.method), object: None };
        debug!(conn = token.0, request = req.method, "control request");
        if req.method == STAT_REQUEST {
            let json = Snapshot::take(&self.shared).to_json();
            return self.answer_and_close(token, Reply::Return(crate::protocol::ReplyValue::Str(json))).then_some(served);
        }
        // References change hands (`create`, `incref`), or, while some
        // process holds references, a reference is dropped or a connection
        // starts serving (its closing is how a killed client is noticed at
        // once): the client's process must be known first. Not otherwise:
        // a search per connection would cost a program that opens
        // thousands of idle ones (each search reads its every socket).
        let changes_refs = match req.method {
            "create" | "incref" => true,
            "decref" | "accept_connection" => self.conns[token.0].as_ref().is_some_and(|c| c.known_peer().is_some()) || !self.shared.lock().state.owners.is_empty(),
            _ => false,
        };
        let peer = if changes_refs {
            match self.peer_of(token) {
                Some(peer) => peer,
                None => return None,
            }
        } else {
            None
        };
        if req.method == "accept_connection" {
            let name = req.args.first().and_then(|&a| pickle.as_str(a)).unwrap_or("");
            let conn = self.conns[token.0].as_mut().expect("live");
            conn.set_name(name);
            self.shared.stats.clients.serving(conn.client());
        }
        let me = self.conn_ref(token);
        let done = self.step(|core, out| core.control(me, peer, &pickle, &req, frame, out));
        let Some(conn) = self.conn(token) else { return Some(served) };
        match done {
            ControlDone::Answered(AfterControl::Serve) => conn.start_serving(),
            ControlDone::Answered(AfterControl::Close) => {}
            ControlDone::Answered(AfterControl::Shutdown) => {
                info!("shutdown requested by a client");
                self.shared.stop();
            }
            ControlDone::Waiting => conn.park(),
        }
        Some(served)
    }

    /// Answers a control request the core does not see (one that could
    /// not be read, or `stat`), and closes, as after any control request.
    fn answer_and_close(&mut self, token: Token, reply: Reply) -> bool {
        self.send(token, reply);
        if let Some(conn) = self.conn(token) {
            conn.close_when_flushed();
        }
        true
    }

    fn on_call(&mut self, token: Token, frame: &[u8]) -> Served {
        let limits = self.shared.config.limits.pickle;
        let mut served = Served { slot: self.shared.stats.methods.other(), object: None };
        let pickle = match decode_request(frame, &limits) {
            Ok(p) => p,
            Err(reply) => {
                self.send(token, reply);
                return served;
            }
        };
        let req = match parse(&pickle) {
            Ok(r) => r,
            Err(reply) => {
                self.send(token, reply);
                return served;
            }
        };
        let me = self.conn_ref(token);
        let peer = self.conns[token.0].as_ref().and_then(|c| c.known_peer().flatten());
        let prepared = Prepared::read(&pickle, &req, me.client, frame.len());
        // The ident's number, as `Prepared` read it (once per request).
        served = Served { slot: self.shared.stats.methods.slot(req.method), object: prepared.id };
        debug!(conn = token.0, method = req.method, object = req.ident.unwrap_or(""), typeid = prepared.id.and_then(ObjectTable::type_of).map_or("", |t| t.typeid), "call");
        let (object, parked) = self.step(|core, out| {
            let id = core.call(me, peer, &req, prepared, frame, out);
            (id, core.state.blocked.is_parked(me.client))
        });
        if let Some(conn) = self.conn(token) {
            if let Some(id) = object {
                conn.touch(id);
            }
            // Read from the registry: a call parked and answered within
            // its own step (it woke itself) is not parked.
            if parked {
                conn.park();
            }
        }
        // A call on a hosted object may run here now (`host.rs`).
        self.run_inline(Some((token, &req)));
        served
    }

    /// The client process behind `token`: `Some(peer)` when known (`peer`
    /// itself `None` when not knowable), `None` while it is being searched
    /// for (the connection is served again once found).
    fn peer_of(&mut self, token: Token) -> Option<Option<PeerProcess>> {
        let shared = self.shared.clone();
        let conn = self.conns.get_mut(token.0).and_then(Option::as_mut)?;
        if let Some(peer) = conn.known_peer() {
            return Some(peer);
        }
        if conn.is_awaiting_peer() {
            return None;
        }
        match identify::quick(conn.stream()) {
            Quick::Known(peer) => {
                conn.set_peer(peer);
                if let Some(p) = peer {
                    shared.stats.clients.found_pid(conn.client(), p.pid);
                }
                Some(peer)
            }
            Quick::Search { local, peer } => {
                if self.request_peer_search(token, local, peer) {
                    self.conn(token).expect("live").wait_for_peer();
                    None
                } else {
                    self.conn(token).expect("live").set_peer(None);
                    Some(None)
                }
            }
        }
    }

    pub(super) fn send(&mut self, token: Token, reply: Reply) {
        let buffer = std::mem::take(&mut self.reply_buffer);
        let counters = self.shared.stats.worker(self.index());
        if matches!(reply, Reply::Error(_) | Reply::ErrorItem { .. } | Reply::Traceback(_)) {
            WorkerCounters::add(&counters.errors, 1);
        }
        let encoded = reply.into_encoded_in(buffer);
        WorkerCounters::add(&counters.bytes_sent, encoded.len() as u64 + 4);
        if let Some(conn) = self.conns.get_mut(token.0).and_then(Option::as_mut)
            && let Some(spare) = conn.send_encoded(encoded)
            && spare.capacity() <= KEEP_REPLY_BUFFER
        {
            self.reply_buffer = spare;
        }
    }
}
