//! A named `Queue` (or `JoinableQueue`: SyncManager's are both
//! `queue.Queue`) in Redis: one list per name, `fm:{q:NAME}:items`, the
//! count of unfinished tasks `fm:{q:NAME}:unfinished` (`task_done`,
//! `join`), a flag `fm:{q:NAME}:waiting`, and for delivery each
//! gateway's pending hash and lease and the set of gateways that took
//! items (`pending.rs`); the hash tag puts them all in one slot.
//! Items are the client's standalone pickles, as the embedded server
//! stores them.
//!
//! A take is a Lua script (the item moves into the pending hash under an
//! id the gateway chose, which needs the item), and so is a `put` on a
//! bounded queue (the maxsize check and the push are atomic) or on one
//! that some gateway waits on (the wake-up goes out in the same round
//! trip). Any other lone `put` is plain commands in one pipeline
//! ([`Push`]): a script cost 10-15 µs more per call than the same
//! commands. A push (or a take from a bounded queue, which may unblock a
//! `put`) publishes
//! the queue's name on [`WAKE_CHANNEL`], which each gateway's one
//! subscriber connection hears (`waiters.rs`), but only while the flag
//! says that some gateway has calls parked on the queue: a publish in a
//! cluster reaches every node, which a busy queue without waiters should
//! not pay for. A gateway with parked calls sets the flag (with a TTL it
//! renews each retry) in the same script as its next try, so a push
//! after that try publishes and one before it is found by the try.

use std::sync::LazyLock;
use std::time::Instant;

use redis::{Cmd, ConnectionLike, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind};

use crate::objects::queue::QueueCall;
use crate::pickle::Item;
use crate::protocol::{PyException, Reply, ReplyValue};

use super::pending::{Delivery, LEASE};
use super::replicas::waited;
use super::Named;

/// The one pub/sub channel of every gateway: the payload is the name of
/// a queue that changed.
pub const WAKE_CHANNEL: &str = "fm:wake";

/// How long a waiting flag lives unless renewed, in ms: several retries
/// (`waiters::RETRY`), so a gateway that still waits keeps it set.
pub(super) const FLAG_TTL_MS: u64 = 2000;

/// `KEYS`: the list, the flag, the unfinished count, this gateway's
/// pending hash. `ARGV`: item, maxsize (0: unbounded), channel, name,
/// whether to set the flag first (a parked put's retry), its TTL, then
/// the ids of delivered items to acknowledge (`pending.rs`). 1 if pushed,
/// 0 if the queue is full.
const PUT_LUA: &str = "if #ARGV > 6 then redis.call('HDEL', KEYS[4], unpack(ARGV, 7)) end
         if ARGV[5] == '1' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[6]) end
         local max = tonumber(ARGV[2])
         if max > 0 and redis.call('LLEN', KEYS[1]) >= max then return 0 end
         redis.call('RPUSH', KEYS[1], ARGV[1])
         redis.call('INCR', KEYS[3])
         if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
         return 1";
static PUT: LazyLock<Script> = LazyLock::new(|| Script::new(PUT_LUA));

/// `KEYS`: the list, the flag, the unfinished count (unused), this
/// gateway's pending hash, the gateways set, this gateway's lease. `ARGV`:
/// count, maxsize, channel, name, whether to set the flag first (parked
/// gets' retry), its TTL, this gateway's id, the lease in ms, the first
/// id, then the ids of delivered items to acknowledge. Up to `count`
/// items, oldest first, each moved into the pending hash under the next
/// id (`pending.rs`); a take from a bounded queue publishes, since it may
/// make room for a parked `put`. The lease is set (and the gateway added
/// to the set) only where it lapsed: the lease thread renews both, so a
/// live lease means the gateway is in the set.
const TAKE_LUA: &str = "if #ARGV > 9 then redis.call('HDEL', KEYS[4], unpack(ARGV, 10)) end
         if ARGV[5] == '1' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[6]) end
         local items = redis.call('LPOP', KEYS[1], ARGV[1])
         if items then
             if redis.call('SET', KEYS[6], '1', 'PX', ARGV[8], 'NX') then redis.call('SADD', KEYS[5], ARGV[7]) end
             local first = tonumber(ARGV[9])
             for i, item in ipairs(items) do redis.call('HSET', KEYS[4], tostring(first + i - 1), item) end
             if tonumber(ARGV[2]) > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
                 redis.call('PUBLISH', ARGV[3], ARGV[4])
             end
         end
         return items";
static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(TAKE_LUA));

/// A lone `put` (not in a pipeline of the loop turn's calls, `batch.rs`)
/// on an unbounded queue that no gateway was seen waiting on: `RPUSH`,
/// `INCR` of the unfinished count, `EXISTS` of the flag (and `HDEL` of
/// the acks it carries), pipelined, not atomic. That needs no atomicity:
/// a waiter's try sets the flag and looks for an item in one script, so a
/// push before the try is found by it, and one after it finds the flag
/// set and publishes, in a second round trip. The queue is then
/// [`Watched`] for [`FLAG_TTL_MS`], its puts going by script (one round
/// trip), since waiters come back. Why: on the development machine a
/// `PUT` script took 60 µs from the gateway to a master with a replica,
/// these commands 50 µs and a lone `RPUSH` 47 (medians of 20,000); at one
/// client the Redis CPU per call fell from 100-111 µs to 88-94. In a
/// pipeline the script's cost is shared and the push's three commands
/// cost more (four clients: 78-82 µs against 81-86), so batches keep it.
pub(super) struct Push;

impl Push {
    /// Whether a `put` by `from` on `q` goes as a push.
    pub(super) fn fits(q: &Named, maxsize: i64, from: For, now: Instant) -> bool {
        maxsize == 0 && matches!(from, For::Caller) && q.replicas.is_none() && !q.watched.now(now)
    }

    /// Its commands: as many replies come back.
    pub(super) fn cmds(q: &Named, item: &[u8], acks: &[u64]) -> Vec<Cmd> {
        let mut cmds = vec![
            redis::cmd("RPUSH").arg(&q.key).arg(item).to_owned(),
            redis::cmd("INCR").arg(&q.unfinished).to_owned(),
            redis::cmd("EXISTS").arg(&q.flag).to_owned(),
        ];
        if !acks.is_empty() {
            cmds.push(redis::cmd("HDEL").arg(&q.pending).arg(acks).to_owned());
        }
        cmds
    }

    /// From its replies, whether some gateway waits on the queue (then
    /// [`Push::publish`]); the first error among them, if any.
    pub(super) fn waited_on(replies: Vec<redis::Value>) -> RedisResult<bool> {
        let mut flag = None;
        for (i, reply) in replies.into_iter().enumerate() {
            let reply = reply.extract_error()?;
            if i == 2 {
                flag = Some(i64::from_redis_value(reply)? == 1);
            }
        }
        flag.ok_or_else(|| (ErrorKind::Client, "a push got too few replies").into())
    }

    /// The wake-up a push owes the waiters it found; the queue's puts go
    /// by script for a while. The item is in the queue by then: a failed
    /// publish only makes waiters find it at their next retry
    /// (`waiters::RETRY`), so its error is the caller's to log, not the
    /// `put`'s.
    pub(super) fn publish_cmd(q: &Named, now: Instant) -> Cmd {
        q.watched.set(now);
        redis::cmd("PUBLISH").arg(WAKE_CHANNEL).arg(&q.name).to_owned()
    }
}

/// Until when a queue counts as waited on (ms after [`EPOCH`]; 0: not).
#[derive(Default)]
pub struct Watched(std::sync::atomic::AtomicU64);

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

impl Watched {
    fn now(&self, now: Instant) -> bool {
        let until = self.0.load(std::sync::atomic::Ordering::Relaxed);
        until != 0 && (now.saturating_duration_since(*EPOCH).as_millis() as u64) < until
    }

    fn set(&self, now: Instant) {
        let until = now.saturating_duration_since(*EPOCH).as_millis() as u64 + FLAG_TTL_MS;
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
pub(super) fn put_cmd(by: ScriptBy, q: &Named, maxsize: i64, item: &[u8], from: For, acks: &[u64]) -> Cmd {
    let mut cmd = script_cmd(by, &PUT, PUT_LUA, 4);
    cmd.arg(&q.key).arg(&q.flag).arg(&q.unfinished).arg(&q.pending);
    cmd.arg(item).arg(maxsize).arg(WAKE_CHANNEL).arg(&q.name).arg(from.flag()).arg(FLAG_TTL_MS).arg(acks);
    cmd
}

/// The `TAKE` script's command: up to `count` items of `q` into this
/// gateway's pending hash, the first under id `first`, carrying `acks`.
pub(super) fn take_cmd(by: ScriptBy, q: &Named, maxsize: i64, count: usize, from: For, delivery: &Delivery, first: u64, acks: &[u64]) -> Cmd {
    let mut cmd = script_cmd(by, &TAKE, TAKE_LUA, 6);
    cmd.arg(&q.key).arg(&q.flag).arg(&q.unfinished).arg(&q.pending).arg(&q.gateways).arg(&q.lease);
    cmd.arg(count).arg(maxsize).arg(WAKE_CHANNEL).arg(&q.name).arg(from.flag()).arg(FLAG_TTL_MS);
    cmd.arg(&delivery.gateway).arg(LEASE.as_millis() as u64).arg(first).arg(acks);
    cmd
}

/// Whether a script call comes from parked calls (and so sets the
/// waiting flag first).
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
        let waited_on = delivery.carrying_acks(&q.pending, |acks| {
            let cmds = Push::cmds(q, item, acks);
            let packed: Vec<u8> = cmds.iter().flat_map(|c| c.get_packed_command()).collect();
            Push::waited_on(conn.req_packed_commands(&packed, 0, cmds.len())?)
        })?;
        if waited_on {
            // Not an error of the put's (whose item is in): see `publish_cmd`.
            if let Err(e) = Push::publish_cmd(q, now).query::<i64>(conn) {
                tracing::warn!(error = %e, queue = %q.name, "redis backend: a wake-up after a put failed");
            }
        }
        return Ok(true);
    }
    let pushed: i64 = waited(conn, q.replicas, |c| {
        delivery.carrying_acks(&q.pending, |acks| run_script(c, &PUT, &put_cmd(ScriptBy::Sha, q, maxsize, item, by, acks)))
    })?;
    Ok(pushed == 1)
}

/// Items taken: the `n`th has id `first + n`, and stays pending until
/// acknowledged or put back (`pending.rs`).
pub struct Taken {
    pub first: u64,
    pub items: Vec<Vec<u8>>,
}

impl Taken {
    pub fn ids(&self) -> Vec<u64> {
        (self.first..self.first + self.items.len() as u64).collect()
    }
}

/// Takes up to `count` items, oldest first, into this gateway's pending
/// hash. The ids of items not taken (or of a failed try) are given up.
pub fn take(conn: &mut dyn ConnectionLike, q: &Named, maxsize: i64, count: usize, by: For, delivery: &Delivery) -> RedisResult<Taken> {
    let first = delivery.reserve(count);
    let result = delivery.carrying_acks(&q.pending, |acks| {
        run_script(conn, &TAKE, &take_cmd(ScriptBy::Sha, q, maxsize, count, by, delivery, first, acks))
    });
    taken(delivery, first, count, result)
}

/// What a `TAKE` script of `count` items from id `first` answered; the
/// ids it did not use (all of them, if it failed) are given up.
pub(super) fn taken(delivery: &Delivery, first: u64, count: usize, result: RedisResult<Option<Vec<Vec<u8>>>>) -> RedisResult<Taken> {
    let used = match &result {
        Ok(items) => items.as_ref().map_or(0, Vec::len) as u64,
        Err(_) => 0,
    };
    delivery.release(first + used..first + count as u64);
    Ok(Taken { first, items: result?.unwrap_or_default() })
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
pub(super) fn get_step(taken: Taken, block: bool, deadline: Option<Instant>, now: Instant) -> Step {
    match taken.items.into_iter().next() {
        Some(item) => Step::Took { id: taken.first, item },
        None if !block || deadline.is_some_and(|d| d <= now) => Step::Answer(Reply::Error(PyException::queue_empty())),
        None => Step::WaitGet { deadline },
    }
}

/// The unfinished count, for parked `join`s (setting the flag first).
pub fn unfinished(conn: &mut dyn ConnectionLike, q: &Named) -> RedisResult<i64> {
    UNFINISHED.key(&q.flag).key(&q.unfinished).arg(FLAG_TTL_MS).invoke(conn)
}

pub fn item_reply(bytes: Vec<u8>) -> Reply {
    Reply::Return(ReplyValue::Item(Item::from(bytes)))
}

/// What a queue call comes to: answered now, or waiting in this gateway.
pub enum Step {
    Answer(Reply),
    /// A `get` took this item (pending until delivered, `pending.rs`).
    Took { id: u64, item: Vec<u8> },
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
