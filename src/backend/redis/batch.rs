//! The inline calls of one worker loop turn, pipelined
//! (`server::host::InlineHost::call_inline_batch`): where several of a
//! worker's connections are ready at once, their queue `put`s and `get`s
//! go to Redis in one pipeline (one write and one read per node) instead
//! of one round trip each. A round trip's fixed cost is most of what a
//! call costs Redis and the gateway: on the development machine a
//! `PUT` script cost Redis ~40 µs of CPU alone, ~16 µs in pipelines of 4
//! and ~8 µs in pipelines of 16 (README, "Redis Cluster backend").
//!
//! Only the calls whose whole work is one script run here: a `put`, and
//! a `get` that takes an item or finds none (parking it, where it must
//! wait, is this gateway's own business). The others go back to the
//! request threads, as every call of a busy worker did before. The
//! scripts go by source (`EVAL`), since a script that a node has lost (a
//! restart, a failover) could not be loaded halfway through a pipeline.
//!
//! A pipeline that fails as a whole tells nothing of which of its
//! scripts ran. On a transient error (a dropped connection, a failover)
//! its calls go back to the request threads, as a single inline call's
//! first command does (`inline.rs`): a `put` may then be pushed twice
//! (at-least-once, README). On any other error each call gets it; a
//! `get`'s item, if its script ran, stays in this gateway's pending hash
//! and the lease pass puts it back (`pending.rs`).

use std::time::Instant;

use redis::{from_redis_value, RedisError, Value};
use tracing::warn;

use crate::objects::queue::QueueCall;
use crate::pickle::Item;
use crate::server::host::HostRequest;

use super::conn::{transient, Lazy};
use super::queue::{self, For, ScriptBy};
use super::{Caller, Gateway, Named, ObjectKind};

/// A call whose script went into the pipeline.
struct Sent {
    by: Caller,
    queue: std::sync::Arc<Named>,
    call: Script,
    /// The acks its script carries (`pending.rs`).
    acks: Vec<u64>,
    /// To give back if the pipeline fails.
    request: HostRequest,
}

enum Script {
    Put { item: Item, block: bool, deadline: Option<Instant> },
    /// The id reserved for the item (`pending.rs`).
    Take { first: u64, block: bool, deadline: Option<Instant> },
}

impl Gateway {
    /// Runs the queue `put`s and `get`s of `requests` in one pipeline on
    /// `conn`, answering or parking each; returns the requests given back
    /// to the request threads, and whether the pipeline failed on a
    /// transient error (the worker then pauses its inline calls).
    pub(super) fn call_batch(&self, conn: &mut Lazy, requests: Vec<HostRequest>) -> (Vec<HostRequest>, bool) {
        let now = Instant::now();
        let mut back = Vec::new();
        let mut sent = Vec::new();
        let mut cmds = Vec::new();
        for request in requests {
            match self.prepare(request, now) {
                Ok(Some((s, cmd))) => {
                    sent.push(s);
                    cmds.push(cmd);
                }
                Ok(None) => {}
                Err(request) => back.push(request),
            }
        }
        if cmds.is_empty() {
            return (back, false);
        }
        match conn.pipeline(&self.connector, cmds) {
            Ok(values) if values.len() == sent.len() => {
                for (s, value) in sent.into_iter().zip(values) {
                    self.finish(conn, s, value, now);
                }
                (back, false)
            }
            Ok(values) => {
                let e = RedisError::from((redis::ErrorKind::Client, "a pipeline's replies do not match its commands", format!("{} for {}", values.len(), sent.len())));
                self.failed(sent, &e, &mut back);
                (back, false)
            }
            Err(e) => {
                let gave_up = transient(&e);
                self.failed(sent, &e, &mut back);
                (back, gave_up)
            }
        }
    }

    /// The script command of a call that is one script, with what its
    /// answer needs; `Ok(None)` once parked here without Redis; the
    /// request back for a call that is more than one script.
    fn prepare(&self, request: HostRequest, now: Instant) -> Result<Option<(Sent, redis::Cmd)>, HostRequest> {
        let HostRequest::Call { ticket, key, connection, ref frame } = request else { return Err(request) };
        let object = key as usize;
        let by = Caller { ticket, object, connection };
        let Some(q) = self.objects.get(object) else { return Err(request) };
        let ObjectKind::Queue { maxsize } = q.kind else { return Err(request) };
        if q.replicas.is_some() {
            return Err(request);
        }
        let call = match self.with_request(frame, |req| crate::objects::queue::parse_call(req, now)) {
            Ok(Ok(call)) => call,
            _ => return Err(request),
        };
        match call {
            QueueCall::Put { item: Some(item), block, deadline } => {
                let acks = self.delivery.take_acks(&q.pending);
                let cmd = queue::put_cmd(ScriptBy::Source, &q, maxsize, &item, For::Caller, &acks);
                let call = Script::Put { item, block, deadline };
                Ok(Some((Sent { by, queue: q, call, acks, request }, cmd)))
            }
            QueueCall::Get { block, deadline, .. } => {
                // FIFO behind the getters this gateway parks already.
                if block && self.waiters.has_getters(object) {
                    self.waiters.park_get(object, ticket, deadline);
                    return Ok(None);
                }
                let first = self.delivery.reserve(1);
                let acks = self.delivery.take_acks(&q.pending);
                let cmd = queue::take_cmd(ScriptBy::Source, &q, maxsize, 1, For::Caller, &self.delivery, first, &acks);
                let call = Script::Take { first, block, deadline };
                Ok(Some((Sent { by, queue: q, call, acks, request }, cmd)))
            }
            _ => Err(request),
        }
    }

    /// Answers (or parks) a call from its script's reply, as a call run
    /// on its own would be (`queue::call`, `Gateway::queue_step`).
    fn finish(&self, conn: &mut Lazy, s: Sent, value: Value, now: Instant) {
        self.delivery.acks_sent(&s.queue.pending, s.acks, !matches!(value, Value::ServerError(_)));
        let wakes = matches!(s.call, Script::Put { .. });
        let step: redis::RedisResult<queue::Step> = match s.call {
            Script::Put { item, block, deadline } => {
                let pushed = from_redis_value::<i64>(value).map_err(RedisError::from);
                pushed.map(|pushed| queue::put_step(pushed == 1, &item, block, deadline, now))
            }
            Script::Take { first, block, deadline } => {
                let result = from_redis_value::<Option<Vec<Vec<u8>>>>(value).map_err(RedisError::from);
                queue::taken(&self.delivery, first, 1, result).map(|taken| queue::get_step(taken, block, deadline, now))
            }
        };
        let reply = match step {
            Ok(step) => self.queue_step(conn, &s.queue, s.by, step, wakes),
            Err(e) => Some(self.backend_error(&e)),
        };
        if let Some(reply) = reply {
            self.answer(s.by.ticket, reply);
        }
    }

    /// A pipeline that failed as a whole: its acks wait again and its
    /// reserved ids are given up; on a transient error its calls go back
    /// (into `back`), else each gets the error.
    fn failed(&self, sent: Vec<Sent>, e: &RedisError, back: &mut Vec<HostRequest>) {
        warn!(error = %e, calls = sent.len(), "redis backend: a pipeline of inline calls failed");
        for s in sent {
            self.delivery.acks_sent(&s.queue.pending, s.acks, false);
            if let Script::Take { first, .. } = s.call {
                self.delivery.release(first..first + 1);
            }
            if transient(e) {
                back.push(s.request);
            } else {
                self.answer(s.by.ticket, self.backend_error(e));
            }
        }
    }
}
