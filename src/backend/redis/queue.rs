//! A named `Queue` (or `JoinableQueue`: SyncManager's are both
//! `queue.Queue`) in Redis: one list per name, `fm:{q:NAME}:items`, the
//! count of unfinished tasks `fm:{q:NAME}:unfinished` (`task_done`,
//! `join`), a flag `fm:{q:NAME}:waiting`, and for delivery each
//! gateway's pending hash and lease and the set of gateways that took
//! items (`pending.rs`); the hash tag puts them all in one slot.
//! Items are the client's standalone pickles, as the embedded server
//! stores them.
//!
//! A take is plain commands in one pipeline ([`Take`]: `LMOVE` into this
//! gateway's taken list, `pending.rs`), and so is a lone `put` on an
//! unbounded queue that no gateway waits on ([`Push`]); a `put` on a
//! bounded queue (the maxsize check and the push are atomic) or on one
//! that some gateway waits on (the wake-up goes out in the same round
//! trip), or in a pipeline of the loop turn's calls (`batch.rs`), is a
//! Lua script. A push (or a take from a bounded queue, which may unblock
//! a `put`) publishes the queue's name on [`WAKE_CHANNEL`], which each
//! gateway's one subscriber connection hears (`waiters.rs`), but only
//! while the flag says that some gateway has calls parked on the queue: a
//! publish in a cluster reaches every node, which a busy queue without
//! waiters should not pay for. A gateway with parked calls sets the flag (with a TTL it
//! renews each retry) before its next try, in the same round trip, so a
//! push after that try publishes and one before it is found by the try.

use std::sync::LazyLock;
use std::time::Instant;

use redis::{Cmd, ConnectionLike, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind, Value};

use crate::objects::queue::QueueCall;
use crate::pickle::Item;
use crate::protocol::{PyException, Reply, ReplyValue};

use super::conn::pipelined;
use super::pending::{ack_cmds, Delivery, LEASE, RENEW};
use super::replicas::waited;
use super::Named;

/// The one pub/sub channel of every gateway: the payload is the name of
/// a queue that changed.
pub const WAKE_CHANNEL: &str = "fm:wake";

/// How long a waiting flag lives unless renewed, in ms: several retries
/// (`waiters::RETRY`), so a gateway that still waits keeps it set.
pub(super) const FLAG_TTL_MS: u64 = 2000;

/// `KEYS`: the list, the flag, the unfinished count, this gateway's
/// taken list. `ARGV`: item, maxsize (0: unbounded), channel, name,
/// whether to set the flag first (a parked put's retry), its TTL, then
/// delivered items to acknowledge (`pending.rs`). 1 if pushed, 0 if the
/// queue is full.
const PUT_LUA: &str = "for i = 7, #ARGV do redis.call('LREM', KEYS[4], 1, ARGV[i]) end
         if ARGV[5] == '1' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[6]) end
         local max = tonumber(ARGV[2])
         if max > 0 and redis.call('LLEN', KEYS[1]) >= max then return 0 end
         redis.call('RPUSH', KEYS[1], ARGV[1])
         redis.call('INCR', KEYS[3])
         if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
         return 1";
static PUT: LazyLock<Script> = LazyLock::new(|| Script::new(PUT_LUA));

/// A lone `put` (not in a pipeline of the loop turn's calls, `batch.rs`)
/// on an unbounded queue that no gateway was seen waiting on: `RPUSH`,
/// `INCR` of the unfinished count, `EXISTS` of the flag (and `LREM`s of
/// the acks it carries), pipelined, not atomic. That needs no atomicity:
/// a waiter's try sets the flag before it looks for an item, in one round
/// trip ([`Take`]), so a push before the try is found by it, and one after
/// it finds the flag set and publishes, in a second round trip. The queue is then
/// watched (`Named::watched`) for [`FLAG_TTL_MS`], its puts going by
/// script (one round trip), since waiters come back. Why: on the development machine a
/// `PUT` script took 60 µs from the gateway to a master with a replica,
/// these commands 50 µs and a lone `RPUSH` 47 (medians of 20,000); at one
/// client the Redis CPU per call fell from 100-111 µs to 88-94. In a
/// pipeline the script's cost is shared and the push's three commands
/// cost more (four clients: 78-82 µs against 81-86), so batches keep it.
pub(super) struct Push;

impl Push {
    /// Whether a `put` by `from` on `q` goes as a push.
    pub(super) fn fits(q: &Named, maxsize: i64, from: For, now: Instant) -> bool {
        maxsize == 0 && matches!(from, For::Caller) && q.replicas.is_none() && !q.watched.holds(now)
    }

    /// Its commands: as many replies come back.
    fn cmds(q: &Named, item: &[u8], acks: &[Item]) -> Vec<Cmd> {
        let mut cmds: Vec<Cmd> = ack_cmds(&q.taken, acks).collect();
        cmds.push(redis::cmd("RPUSH").arg(&q.key).arg(item).to_owned());
        cmds.push(redis::cmd("INCR").arg(&q.unfinished).to_owned());
        cmds.push(redis::cmd("EXISTS").arg(&q.flag).to_owned());
        cmds
    }

    /// From its replies, whether some gateway waits on the queue (then
    /// [`Push::publish_cmd`]); the first error among them, if any.
    fn waited_on(replies: Vec<Value>) -> RedisResult<bool> {
        let flag = replies_ok(replies)?.pop().ok_or((ErrorKind::Client, "a push got no replies"))?;
        Ok(i64::from_redis_value(flag)? == 1)
    }

    /// The wake-up a push owes the waiters it found; the queue's puts go
    /// by script for a while. The item is in the queue by then: a failed
    /// publish only makes waiters find it at their next retry
    /// (`waiters::RETRY`), so its error is the caller's to log, not the
    /// `put`'s.
    fn publish_cmd(q: &Named, now: Instant) -> Cmd {
        q.watched.set(now, std::time::Duration::from_millis(FLAG_TTL_MS));
        wake_cmd(q)
    }
}

/// The wake-up of the gateways waiting on `q`.
fn wake_cmd(q: &Named) -> Cmd {
    redis::cmd("PUBLISH").arg(WAKE_CHANNEL).arg(&q.name).to_owned()
}

/// Sends `cmd` and logs its failure: a wake-up after the change it tells
/// of, whose loss only delays waiters to their next retry.
pub(super) fn wake(conn: &mut dyn ConnectionLike, q: &Named, cmd: &Cmd) {
    if let Err(e) = cmd.query::<i64>(conn) {
        tracing::warn!(error = %e, queue = %q.name, "redis backend: a wake-up failed");
    }
}

/// The replies of a pipeline, or the first error among them.
fn replies_ok(replies: Vec<Value>) -> RedisResult<Vec<Value>> {
    replies.into_iter().map(Value::extract_error).collect()
}

/// A take of up to `count` items of a queue, oldest first, each moved to
/// the end of this gateway's taken list (`pending.rs`) by an `LMOVE`, in
/// one pipeline of plain commands: the `LREM`s of the acks it carries;
/// where the lease thread has not renewed this gateway's lease lately,
/// `SADD` of the gateway to the queue's set and `SET` of its lease (so
/// that the lease pass of others finds what it takes if it dies); for
/// parked `get`s, `SET` of the waiting flag (before the try, `waiters.rs`);
/// the `LMOVE`s; from a bounded queue, `EXISTS` of the flag, since a take
/// there may make room for a parked `put` (then a `PUBLISH` after). No
/// atomicity is needed beyond each `LMOVE`'s: an item is always in the
/// queue or in one gateway's taken list. Why not a script: on the
/// development machine the script that did this (moving the item into a
/// hash under an id) took 78-86 µs from the gateway, an `LMOVE` ~50.
pub(super) struct Take {
    count: usize,
    acks: usize,
    lease: bool,
    flag: bool,
    bounded: bool,
}

impl Take {
    pub(super) fn new(q: &Named, maxsize: i64, count: usize, from: For, now: Instant) -> Take {
        Take { count, acks: 0, lease: !q.leased.holds(now), flag: matches!(from, For::Parked), bounded: maxsize > 0 }
    }

    /// Its commands, carrying `acks`: [`Take::len`] replies come back.
    pub(super) fn cmds(&mut self, q: &Named, delivery: &Delivery, acks: &[Item]) -> Vec<Cmd> {
        self.acks = acks.len();
        let mut cmds: Vec<Cmd> = ack_cmds(&q.taken, acks).collect();
        if self.lease {
            cmds.push(redis::cmd("SADD").arg(&q.gateways).arg(&delivery.gateway).to_owned());
            cmds.push(redis::cmd("SET").arg(&q.lease).arg(1).arg("PX").arg(LEASE.as_millis() as u64).to_owned());
        }
        if self.flag {
            cmds.push(redis::cmd("SET").arg(&q.flag).arg(1).arg("PX").arg(FLAG_TTL_MS).to_owned());
        }
        let mv = redis::cmd("LMOVE").arg(&q.key).arg(&q.taken).arg("LEFT").arg("RIGHT").to_owned();
        cmds.extend(std::iter::repeat_n(mv, self.count));
        if self.bounded {
            cmds.push(redis::cmd("EXISTS").arg(&q.flag).to_owned());
        }
        cmds
    }

    /// How many commands (and replies) it has.
    pub(super) fn len(&self) -> usize {
        self.first_move() + self.count + self.bounded as usize
    }

    /// The index of its first `LMOVE`.
    fn first_move(&self) -> usize {
        self.acks + 2 * self.lease as usize + self.flag as usize
    }

    /// From its replies, the items taken and whether to wake waiters; the
    /// first error among them, if any (its queue is then swept,
    /// `pending.rs`, for any item an `LMOVE` moved).
    pub(super) fn items(&self, replies: Vec<Value>) -> RedisResult<(Vec<Item>, bool)> {
        if replies.len() != self.len() {
            return Err((ErrorKind::Client, "a take got replies that do not match its commands").into());
        }
        let replies = replies_ok(replies)?;
        let flag_set = self.bounded && replies.last() == Some(&Value::Int(1));
        let mut items = Vec::new();
        // Not atomic: a push between two `LMOVE`s that found none lets a
        // later one take an item, which must not be left unseen.
        for reply in replies.into_iter().skip(self.first_move()).take(self.count) {
            match reply {
                Value::BulkString(bytes) => items.push(Item::from(bytes)),
                Value::Nil => {}
                other => return Err((ErrorKind::Client, "an LMOVE answered neither an item nor nil", format!("{other:?}")).into()),
            }
        }
        let waited_on = flag_set && !items.is_empty();
        Ok((items, waited_on))
    }

    /// What the take came to: the items are noted in flight, or, if it
    /// failed, the queue is to be swept. `wake`: its wake-up.
    pub(super) fn taken(&self, q: &Named, delivery: &Delivery, now: Instant, result: RedisResult<(Vec<Item>, bool)>) -> RedisResult<(Vec<Item>, Option<Cmd>)> {
        match result {
            Ok((items, waited_on)) => {
                delivery.took(&q.taken, &items);
                if self.lease {
                    q.leased.set(now, LEASE - RENEW);
                }
                Ok((items, waited_on.then(|| wake_cmd(q))))
            }
            Err(e) => {
                delivery.take_failed(&q.taken);
                Err(e)
            }
        }
    }
}

/// A moment until which something holds (ms after [`EPOCH`]; 0: none).
#[derive(Default)]
pub struct Until(std::sync::atomic::AtomicU64);

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

impl Until {
    fn holds(&self, now: Instant) -> bool {
        let until = self.0.load(std::sync::atomic::Ordering::Relaxed);
        until != 0 && (now.saturating_duration_since(*EPOCH).as_millis() as u64) < until
    }

    pub(super) fn set(&self, now: Instant, lasts: std::time::Duration) {
        let until = (now.saturating_duration_since(*EPOCH) + lasts).as_millis() as u64;
        self.0.store(until.max(1), std::sync::atomic::Ordering::Relaxed);
    }
}

/// How a script call names its script: by hash (`EVALSHA`, loading it on
/// `NOSCRIPT`), or with its source (`EVAL`: in a pipeline, where a script
/// found missing halfway could not be loaded before the commands after
/// it; `batch.rs`).
#[derive(Clone, Copy)]
pub enum ScriptBy {
    Sha,
    Source,
}

/// The command that calls `script` (whose source is `source`) with its
/// `KEYS` and then `ARGV` given by `args`.
fn script_cmd(by: ScriptBy, script: &Script, source: &str, keys: usize) -> Cmd {
    let mut cmd = match by {
        ScriptBy::Sha => redis::cmd("EVALSHA").arg(script.get_hash()).to_owned(),
        ScriptBy::Source => redis::cmd("EVAL").arg(source).to_owned(),
    };
    cmd.arg(keys);
    cmd
}

/// Runs a script's command, loading the script where Redis does not have
/// it (a restarted or promoted node) and running it again.
fn run_script<T: FromRedisValue>(conn: &mut dyn ConnectionLike, script: &Script, cmd: &Cmd) -> RedisResult<T> {
    match cmd.query(conn) {
        Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            script.prepare_invoke().load(conn)?;
            cmd.query(conn)
        }
        r => r,
    }
}

/// The `PUT` script's command: `item` onto `q` unless full, carrying
/// `acks` (`pending.rs`).
pub(super) fn put_cmd(by: ScriptBy, q: &Named, maxsize: i64, item: &[u8], from: For, acks: &[Item]) -> Cmd {
    let mut cmd = script_cmd(by, &PUT, PUT_LUA, 4);
    cmd.arg(&q.key).arg(&q.flag).arg(&q.unfinished).arg(&q.taken);
    cmd.arg(item).arg(maxsize).arg(WAKE_CHANNEL).arg(&q.name).arg(from.flag()).arg(FLAG_TTL_MS);
    for ack in acks {
        cmd.arg(&ack[..]);
    }
    cmd
}

/// Whether a call comes from parked calls (and so sets the waiting flag
/// first).
#[derive(Clone, Copy)]
pub enum For {
    Caller,
    Parked,
}

impl For {
    pub(super) fn flag(self) -> &'static str {
        match self {
            For::Caller => "0",
            For::Parked => "1",
        }
    }
}

/// `KEYS`: the unfinished count, the flag. `ARGV`: channel, name. The
/// count left, or -1 if there was none to finish; reaching 0 publishes
/// (for parked `join`s).
static TASK_DONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if tonumber(redis.call('GET', KEYS[1]) or '0') <= 0 then return -1 end
         local n = redis.call('DECR', KEYS[1])
         if n == 0 and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
         return n",
    )
});

/// `KEYS`: the flag, the unfinished count. `ARGV`: the flag's TTL. Sets
/// the flag (parked `join`s), then reads the count.
static UNFINISHED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
         return tonumber(redis.call('GET', KEYS[2]) or '0')",
    )
});

/// Pushes `item` unless the queue is full; whether it was pushed. The
/// script carries the queue's waiting acks. With
/// `--backend-wait-replicas`, a push fewer replicas acknowledged is an
/// error (`replicas.rs`).
pub fn put(conn: &mut dyn ConnectionLike, q: &Named, maxsize: i64, item: &[u8], by: For, delivery: &Delivery) -> RedisResult<bool> {
    let now = Instant::now();
    if Push::fits(q, maxsize, by, now) {
        let waited_on = delivery.carrying_acks(&q.taken, |acks| {
            Push::waited_on(pipelined(conn, &Push::cmds(q, item, acks))?)
        })?;
        if waited_on {
            // Not an error of the put's (whose item is in): see `publish_cmd`.
            wake(conn, q, &Push::publish_cmd(q, now));
        }
        return Ok(true);
    }
    let pushed: i64 = waited(conn, q.replicas, |c| {
        delivery.carrying_acks(&q.taken, |acks| run_script(c, &PUT, &put_cmd(ScriptBy::Sha, q, maxsize, item, by, acks)))
    })?;
    Ok(pushed == 1)
}

/// Takes up to `count` items, oldest first, into this gateway's taken
/// list ([`Take`]), carrying the queue's waiting acks.
pub fn take(conn: &mut dyn ConnectionLike, q: &Named, maxsize: i64, count: usize, by: For, delivery: &Delivery) -> RedisResult<Vec<Item>> {
    let now = Instant::now();
    let mut take = Take::new(q, maxsize, count, by, now);
    let result = delivery.carrying_acks(&q.taken, |acks| {
        let cmds = take.cmds(q, delivery, acks);
        take.items(pipelined(conn, &cmds)?)
    });
    let (items, wake_cmd) = take.taken(q, delivery, now, result)?;
    if let Some(cmd) = wake_cmd {
        wake(conn, q, &cmd);
    }
    Ok(items)
}

/// What a `put` comes to once its script answered whether it `pushed`.
pub(super) fn put_step(pushed: bool, item: &Item, block: bool, deadline: Option<Instant>, now: Instant) -> Step {
    if pushed {
        Step::Answer(Reply::none())
    } else if !block || deadline.is_some_and(|d| d <= now) {
        Step::Answer(Reply::Error(PyException::queue_full()))
    } else {
        Step::WaitPut { item: item.clone(), deadline }
    }
}

/// What a `get` comes to once its take of one item answered.
pub(super) fn get_step(taken: Vec<Item>, block: bool, deadline: Option<Instant>, now: Instant) -> Step {
    match taken.into_iter().next() {
        Some(item) => Step::Took(item),
        None if !block || deadline.is_some_and(|d| d <= now) => Step::Answer(Reply::Error(PyException::queue_empty())),
        None => Step::WaitGet { deadline },
    }
}

/// The unfinished count, for parked `join`s (setting the flag first).
pub fn unfinished(conn: &mut dyn ConnectionLike, q: &Named) -> RedisResult<i64> {
    UNFINISHED.key(&q.flag).key(&q.unfinished).arg(FLAG_TTL_MS).invoke(conn)
}

pub fn item_reply(item: Item) -> Reply {
    Reply::Return(ReplyValue::Item(item))
}

/// What a queue call comes to: answered now, or waiting in this gateway.
pub enum Step {
    Answer(Reply),
    /// A `get` took this item (in flight until acknowledged, `pending.rs`).
    Took(Item),
    /// A `get` to park (until `deadline`, `None`: forever).
    WaitGet { deadline: Option<Instant> },
    /// A `put` of `item` to park, the queue being full.
    WaitPut { item: Item, deadline: Option<Instant> },
    /// A `join` to park until no task is unfinished.
    WaitJoin,
}

/// One call on queue `q`. `getters_waiting`: whether this gateway already
/// parks `get`s on it, in which case a blocking `get` queues behind them
/// (FIFO per gateway) instead of taking an item first.
pub fn call(
    conn: &mut dyn ConnectionLike,
    q: &Named,
    maxsize: i64,
    call: &QueueCall,
    getters_waiting: bool,
    now: Instant,
    delivery: &Delivery,
) -> RedisResult<Step> {
    Ok(match call {
        &QueueCall::Put { ref item, block, deadline } => {
            let item = item.as_ref().expect("a parsed put has its item");
            put_step(put(conn, q, maxsize, item, For::Caller, delivery)?, item, block, deadline, now)
        }
        &QueueCall::Get { block, deadline, .. } => {
            if block && getters_waiting {
                return Ok(Step::WaitGet { deadline });
            }
            get_step(take(conn, q, maxsize, 1, For::Caller, delivery)?, block, deadline, now)
        }
        QueueCall::Qsize => Step::Answer(Reply::Return(ReplyValue::Int(len(conn, q)?))),
        QueueCall::Empty => Step::Answer(Reply::Return(ReplyValue::Bool(len(conn, q)? == 0))),
        QueueCall::Full => Step::Answer(Reply::Return(ReplyValue::Bool(maxsize > 0 && len(conn, q)? >= maxsize))),
        QueueCall::TaskDone => {
            let left: i64 =
                waited(conn, q.replicas, |c| TASK_DONE.key(&q.unfinished).key(&q.flag).arg(WAKE_CHANNEL).arg(&q.name).invoke(c))?;
            if left < 0 {
                Step::Answer(Reply::Error(PyException::value_error("task_done() called too many times")))
            } else {
                Step::Answer(Reply::none())
            }
        }
        QueueCall::Join => {
            let left: Option<i64> = redis::cmd("GET").arg(&q.unfinished).query(conn)?;
            if left.unwrap_or(0) <= 0 { Step::Answer(Reply::none()) } else { Step::WaitJoin }
        }
        QueueCall::Shutdown { .. } => Step::Answer(super::not_served("shutdown of a Queue")),
    })
}

fn len(conn: &mut dyn ConnectionLike, q: &Named) -> RedisResult<i64> {
    redis::cmd("LLEN").arg(&q.key).query(conn)
}
