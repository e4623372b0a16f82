//! What a worker does with a whole frame: a handshake step, a control
//! request or a method call. Decoding and parsing happen on the worker,
//! without the core's lock; one step under the lock applies the request
//! (`core.rs`); the reply is encoded and written after it.

use mio::Token;
use tracing::{debug, info, warn};

use crate::pickle::{decode, Decoded};
use crate::protocol::reply::format_traceback;
use crate::protocol::{parse_request, Reply, Request};

use super::connection::Phase;
use super::core::{ControlDone, Prepared};
use super::dispatch::AfterControl;
use super::identify::{self, Quick};
use super::peers::PeerProcess;
use super::worker::Worker;

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
                let conn = self.conns[token.0].as_mut().expect("live");
                if let Err(why) = conn.on_handshake_frame(&config.authkey, config.allow_legacy_md5, frame) {
                    warn!(conn = token.0, "authentication failed: {why}");
                }
                true
            }
            Phase::AwaitControl => {
                conn.note_request(frame);
                self.on_control(token, frame)
            }
            Phase::Serving => {
                conn.note_request(frame);
                self.on_call(token, frame);
                true
            }
        }
    }

    fn on_control(&mut self, token: Token, frame: &[u8]) -> bool {
        let limits = self.shared.config.limits.pickle;
        let parsed = decode_request(frame, &limits);
        let pickle = match parsed {
            Ok(p) => p,
            Err(reply) => return self.refuse_control(token, reply),
        };
        let req = match parse(&pickle) {
            Ok(r) => r,
            Err(reply) => return self.refuse_control(token, reply),
        };
        debug!(conn = token.0, request = req.method, "control request");
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
                None => return false,
            }
        } else {
            None
        };
        if req.method == "accept_connection" {
            let name = req.args.first().and_then(|&a| pickle.as_str(a)).unwrap_or("");
            self.conns[token.0].as_mut().expect("live").set_name(name);
        }
        let me = self.conn_ref(token);
        let done = self.step(|core, out| core.control(me, peer, &pickle, &req, frame, out));
        let Some(conn) = self.conn(token) else { return true };
        match done {
            ControlDone::Answered(AfterControl::Serve) => conn.start_serving(),
            ControlDone::Answered(AfterControl::Close) => {}
            ControlDone::Answered(AfterControl::Shutdown) => {
                info!("shutdown requested by a client");
                self.shared.stop();
            }
            ControlDone::Waiting => conn.park(),
        }
        true
    }

    /// Answers a control request that could not be read, and closes.
    fn refuse_control(&mut self, token: Token, reply: Reply) -> bool {
        self.send(token, reply);
        if let Some(conn) = self.conn(token) {
            conn.close_when_flushed();
        }
        true
    }

    fn on_call(&mut self, token: Token, frame: &[u8]) {
        let limits = self.shared.config.limits.pickle;
        let pickle = match decode_request(frame, &limits) {
            Ok(p) => p,
            Err(reply) => return self.send(token, reply),
        };
        let req = match parse(&pickle) {
            Ok(r) => r,
            Err(reply) => return self.send(token, reply),
        };
        let me = self.conn_ref(token);
        let peer = self.conns[token.0].as_ref().and_then(|c| c.known_peer().flatten());
        let prepared = Prepared::read(&pickle, &req, me.client, frame.len());
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
    }

    /// The client process behind `token`: `Some(peer)` when known (`peer`
    /// itself `None` when not knowable), `None` while it is being searched
    /// for (the connection is served again once found).
    fn peer_of(&mut self, token: Token) -> Option<Option<PeerProcess>> {
        let conn = self.conn(token)?;
        if let Some(peer) = conn.known_peer() {
            return Some(peer);
        }
        if conn.is_awaiting_peer() {
            return None;
        }
        match identify::quick(conn.stream()) {
            Quick::Known(peer) => {
                conn.set_peer(peer);
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
        if let Some(conn) = self.conns.get_mut(token.0).and_then(Option::as_mut)
            && let Some(spare) = conn.send_encoded(reply.into_encoded_in(buffer))
            && spare.capacity() <= KEEP_REPLY_BUFFER
        {
            self.reply_buffer = spare;
        }
    }
}
