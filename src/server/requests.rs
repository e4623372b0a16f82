//! What happens to a whole frame: a handshake step, a control request or
//! a method call, and what the call's outcome does (a reply sent, a call
//! parked, waiters woken and retried). `mod.rs` reads and writes the
//! connections; this is the part that interprets what they carry.

use std::time::Instant;

use mio::Token;
use tracing::{debug, info, warn};

use crate::objects::{CallContext, ClientId, ObjectId, ObjectTable, WaitKey, Wakes};
use crate::pickle::decode;
use crate::protocol::reply::format_traceback;
use crate::protocol::{parse_request, Reply};

use super::blocking::Parked;
use super::connection::Phase;
use super::dispatch::{self, AfterControl, Outcome};
use super::{host, Server};

/// A reply buffer that grew past this (a large reply) is not kept.
const KEEP_REPLY_BUFFER: usize = 64 * 1024;

impl Server {
    pub(super) fn on_frame(&mut self, token: Token, frame: &[u8]) {
        let limits = self.config.limits.pickle;
        let Some(conn) = self.conns.get_mut(token.0).and_then(Option::as_mut) else { return };
        match conn.phase {
            Phase::AwaitAnswer | Phase::AwaitPeerChallenge | Phase::AwaitPeerWelcome => {
                if let Err(why) = conn.on_handshake_frame(&self.config.authkey, self.config.allow_legacy_md5, frame) {
                    warn!(conn = token.0, "authentication failed: {why}");
                }
            }
            Phase::AwaitControl => {
                let (reply, after) = match decode(frame, &limits) {
                    Err(e) => (Reply::Traceback(format_traceback(&format!("_pickle.UnpicklingError: {e}"))), AfterControl::Close),
                    Ok(pickle) => match parse_request(&pickle) {
                        Err(line) => (Reply::Traceback(format_traceback(&line)), AfterControl::Close),
                        Ok(req) => {
                            debug!(conn = token.0, request = req.method, "control request");
                            // The serving connection of a process holding
                            // references is identified too: its closing
                            // is how a killed client is noticed at once.
                            let changes_refs = match req.method {
                                "create" | "incref" => true,
                                "decref" | "accept_connection" => !self.state.owners.is_empty(),
                                _ => false,
                            };
                            if req.method == "create"
                                && let Some(typeid) = req.args.first().and_then(|&a| pickle.as_str(a))
                                && self.state.registry.is_hosted(typeid)
                            {
                                let typeid = typeid.to_string();
                                self.forward_to_host(token, frame, &typeid, None);
                                return;
                            }
                            let peer = if changes_refs { self.peer_of(token) } else { None };
                            if req.method == "accept_connection" {
                                let name = req.args.first().and_then(|&a| pickle.as_str(a)).unwrap_or("");
                                self.conns[token.0].as_mut().expect("live").name = name.to_string();
                            }
                            match self.memory.admit_control(&self.state.objects, &req, frame.len()) {
                                Ok(()) => dispatch::control(&mut self.state, &req, peer),
                                Err(e) => (Reply::Error(e), AfterControl::Close),
                            }
                        }
                    },
                };
                let conn = self.conns[token.0].as_mut().expect("live");
                conn.send_frame_owned(reply.encode());
                match after {
                    AfterControl::Serve => conn.phase = Phase::Serving,
                    AfterControl::Close => conn.close_after_flush = true,
                    AfterControl::Shutdown => {
                        conn.close_after_flush = true;
                        info!("shutdown requested by a client");
                        self.stopping = true;
                    }
                }
            }
            Phase::Serving => {
                let client = conn.client;
                let mut object = 0;
                let outcome = match decode(frame, &limits) {
                    Err(e) => Outcome::Reply {
                        reply: Reply::Traceback(format_traceback(&format!("_pickle.UnpicklingError: {e}"))),
                        wake: Wakes::new(),
                    },
                    Ok(pickle) => match parse_request(&pickle) {
                        Err(line) => Outcome::Reply { reply: Reply::Traceback(format_traceback(&line)), wake: Wakes::new() },
                        Ok(req) => {
                            let id = req.ident.and_then(|i| self.state.objects.parse_ident(i));
                            if let Some((key, typeid)) = id.and_then(|id| host::hosted_target(&self.state.objects, id)) {
                                let id = id.expect("hosted");
                                conn.touch(id);
                                self.forward_to_host(token, frame, &typeid, Some((id, key)));
                                return;
                            }
                            if let Some(id) = id {
                                conn.touch(id);
                                object = id;
                                if crate::protocol::token::names_proxy(&pickle) {
                                    self.state.objects.get_mut(id).expect("exists").may_hold_proxies = true;
                                }
                            }
                            self.memory.within_caps(&mut self.state, &req, id, frame.len(), |state| {
                                dispatch::method_call(state, &req, id, client, Instant::now())
                            })
                        }
                    },
                };
                self.apply(token, client, object, outcome);
            }
        }
    }

    /// Sends a reply and wakes what it changed, or parks the call.
    pub(super) fn apply(&mut self, token: Token, client: ClientId, object: ObjectId, outcome: Outcome) {
        match outcome {
            Outcome::Reply { reply, wake } => {
                self.state.objects.refresh_holds(object, reply.carries_items());
                if let Reply::Proxy { token: proxy, .. } = &reply
                    && let Some(id) = self.state.objects.parse_ident(&proxy.id)
                    && let Some(peer) = self.peer_of(token)
                {
                    // The reference the server took for the client's new
                    // proxy, which that client drops once it holds its own.
                    self.state.owners.acquired(peer, id);
                }
                self.send(token, reply);
                if let Some(conn) = self.conn(token)
                    && conn.parked {
                        conn.parked = false;
                        self.resume.push_back(token);
                    }
                for key in wake {
                    self.wake(key);
                }
            }
            Outcome::Park { key, call, wake } => {
                let deadline = call.deadline();
                self.state.blocked.park(Parked { conn: token, client, object, key, call, deadline });
                if let Some(conn) = self.conn(token) {
                    conn.parked = true;
                }
                for key in wake {
                    self.wake(key);
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

    /// Retries the requests parked on `key` after it was woken, oldest
    /// first, until a pass completes none of them.
    pub(super) fn wake(&mut self, key: WaitKey) {
        loop {
            let mut progressed = false;
            for park_id in self.state.blocked.waiters(key) {
                let Some(parked) = self.state.blocked.get_mut(park_id) else { continue };
                let conn_token = parked.conn;
                // A client that went away gets nothing: the item stays for
                // the next getter instead of vanishing into a dead socket.
                if self.conns.get(conn_token.0).and_then(Option::as_ref).is_none_or(|c| c.eof) {
                    self.state.blocked.remove(park_id);
                    continue;
                }
                let ctx = CallContext { client: parked.client, this: parked.object, now: Instant::now() };
                let Some(entry) = self.state.objects.get_mut(parked.object) else {
                    // The object was freed while a call waited on it.
                    let p = self.state.blocked.remove(park_id).expect("present");
                    let reply = Reply::traceback(&crate::protocol::PyException::key_error(format!(
                        "'{}'",
                        ObjectTable::ident(p.object)
                    )));
                    self.apply(p.conn, p.client, p.object, Outcome::Reply { reply, wake: Wakes::new() });
                    continue;
                };
                let attempt = entry.object.attempt(&mut parked.call, &ctx);
                if let crate::objects::Attempt::Block { on } = attempt
                    && on == key {
                        continue;
                    }
                let p = self.state.blocked.remove(park_id).expect("present");
                let outcome = dispatch::resolve(&mut self.state, attempt, p.call);
                progressed |= matches!(outcome, Outcome::Reply { .. });
                self.apply(p.conn, p.client, p.object, outcome);
            }
            if !progressed || !self.state.blocked.has_waiters(key) {
                break;
            }
        }
    }

    pub(super) fn expire_deadlines(&mut self, now: Instant) {
        for mut parked in self.state.blocked.take_expired(now) {
            let ctx = CallContext { client: parked.client, this: parked.object, now };
            let Some(entry) = self.state.objects.get_mut(parked.object) else { continue };
            let attempt = entry.object.timed_out(&mut parked.call, &ctx);
            // A call that must still reacquire a lock parks again; its
            // deadline() is None from now on (the SharedType contract).
            let outcome = dispatch::resolve(&mut self.state, attempt, parked.call);
            self.apply(parked.conn, parked.client, parked.object, outcome);
        }
    }
}
