//! The inline calls of one worker loop turn, pipelined
//! (`server::host::InlineHost::call_inline_batch`): where several of a
//! worker's connections are ready at once, their queue `put`s and `get`s
//! go to Redis in one pipeline (one write and one read per node) instead
//! of one round trip each. A round trip's fixed cost is most of what a
//! call costs Redis and the gateway: on the development machine a
//! `PUT` script cost Redis ~40 µs of CPU alone, ~16 µs in pipelines of 4
//! and ~8 µs in pipelines of 16 (README, "Redis Cluster backend").
//!
//! Only the calls whose whole work is one step in Redis run here: a
//! `put` (a script) and a `get` that takes an item or finds none (plain
//! commands, `queue::Take`; parking it, where it must wait, is this
//! gateway's own business). The others go back to the request threads,
//! as every call of a busy worker did before. Puts stay scripts here,
//! unlike lone ones (`queue::Push`): in a pipeline the script's fixed cost
//! is shared, and its three commands cost more. The scripts go by source
//! (`EVAL`), since a script that a node has lost (a restart, a failover)
//! could not be loaded halfway through a pipeline.
//!
//! A pipeline that fails as a whole tells nothing of which of its
//! commands ran. On a transient error (a dropped connection, a failover)
//! its calls go back to the request threads, as a single inline call's
//! first command does (`inline.rs`): a `put` may then be pushed twice
//! (at-least-once, README). On any other error each call gets it; a
//! `get`'s item, if its `LMOVE` ran, stays in this gateway's taken list
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

/// A call whose commands went into the pipeline.
struct Sent {
    by: Caller,
    queue: std::sync::Arc<Named>,
    call: Step,
    /// The acks its commands carry (`pending.rs`).
    acks: Vec<Item>,
    /// To give back if the pipeline fails.
    request: HostRequest,
}

enum Step {
    /// A `PUT` script: one reply.
    Put { item: Item, block: bool, deadline: Option<Instant> },
    /// Its commands' replies.
    Take { take: queue::Take, block: bool, deadline: Option<Instant> },
}

impl Step {
    fn replies(&self) -> usize {
        match self {
            Step::Put { .. } => 1,
            Step::Take { take, .. } => take.len(),
        }
    }
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
                Ok(Some((s, call_cmds))) => {
                    sent.push(s);
                    cmds.extend(call_cmds);
                }
                Ok(None) => {}
                Err(request) => back.push(request),
            }
        }
        if cmds.is_empty() {
            return (back, false);
        }
        let expected: usize = sent.iter().map(|s| s.call.replies()).sum();
        match conn.pipeline(&self.connector, cmds) {
            Ok(values) if values.len() == expected => {
                let mut values = values.into_iter();
                for s in sent {
                    let replies = values.by_ref().take(s.call.replies()).collect();
                    self.finish(conn, s, replies, now);
                }
                (back, false)
            }
            Ok(values) => {
                let e = RedisError::from((redis::ErrorKind::Client, "a pipeline's replies do not match its commands", format!("{} for {expected}", values.len())));
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

    /// The commands of a call that is one step in Redis, with what its
    /// answer needs; `Ok(None)` once parked here without Redis; the
    /// request back for any other call.
    fn prepare(&self, request: HostRequest, now: Instant) -> Result<Option<(Sent, Vec<redis::Cmd>)>, HostRequest> {
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
                let acks = self.delivery.take_acks(&q.taken);
                let cmd = queue::put_cmd(ScriptBy::Source, &q, maxsize, &item, For::Caller, &acks);
                let call = Step::Put { item, block, deadline };
                Ok(Some((Sent { by, queue: q, call, acks, request }, vec![cmd])))
            }
            QueueCall::Get { block, deadline, .. } => {
                // FIFO behind the getters this gateway parks already.
                if block && self.waiters.has_getters(object) {
                    self.waiters.park_get(object, ticket, deadline);
                    return Ok(None);
                }
                let acks = self.delivery.take_acks(&q.taken);
                let mut take = queue::Take::new(&q, maxsize, 1, For::Caller, now);
                let cmds = take.cmds(&q, &self.delivery, &acks);
                let call = Step::Take { take, block, deadline };
                Ok(Some((Sent { by, queue: q, call, acks, request }, cmds)))
            }
            _ => Err(request),
        }
    }

    /// Answers (or parks) a call from its commands' replies, as a call
    /// run on its own would be (`queue::call`, `Gateway::queue_step`).
    fn finish(&self, conn: &mut Lazy, s: Sent, mut replies: Vec<Value>, now: Instant) {
        let ran = !replies.iter().any(|v| matches!(v, Value::ServerError(_)));
        self.delivery.acks_sent(&s.queue.taken, s.acks, ran);
        let wakes = matches!(s.call, Step::Put { .. });
        let step: redis::RedisResult<queue::Step> = match s.call {
            Step::Put { item, block, deadline } => {
                let pushed = from_redis_value::<i64>(replies.remove(0)).map_err(RedisError::from);
                pushed.map(|pushed| queue::put_step(pushed == 1, &item, block, deadline, now))
            }
            Step::Take { take, block, deadline } => {
                let result = take.taken(&s.queue, &self.delivery, now, take.items(replies));
                result.map(|(items, wake)| {
                    if let Some(cmd) = wake {
                        let _ = conn.with(&self.connector, |c| {
                            queue::wake(c, &s.queue, &cmd);
                            Ok(())
                        });
                    }
                    queue::get_step(items, block, deadline, now)
                })
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

    /// A pipeline that failed as a whole: its queues are to be swept for
    /// acks and takes that may have run (`pending.rs`); on a transient
    /// error its calls go back (into `back`), else each gets the error.
    fn failed(&self, sent: Vec<Sent>, e: &RedisError, back: &mut Vec<HostRequest>) {
        warn!(error = %e, calls = sent.len(), "redis backend: a pipeline of inline calls failed");
        for s in sent {
            self.delivery.acks_sent(&s.queue.taken, s.acks, false);
            if let Step::Take { .. } = s.call {
                self.delivery.take_failed(&s.queue.taken);
            }
            if transient(e) {
                back.push(s.request);
            } else {
                self.answer(s.by.ticket, self.backend_error(e));
            }
        }
    }
}
