//! A named `Event` in Redis: a hash per name, `fm:{e:NAME}:event`, with
//! the flag (`set`, 0 or 1) and the count of `set()` calls (`sets`). A
//! `wait` that finds the flag clear parks in this gateway's waiters with
//! the count it read, and is answered `True` once the flag is set or the
//! count has moved: as on the embedded server (and in CPython, where
//! `set()` notifies the waiters), a waiter woken by a `set()` returns
//! `True` even if a `clear()` came before it ran. `set()` publishes a
//! wake-up while some gateway waits on the event (the `waiting` flag, as
//! for queues).

use std::sync::LazyLock;
use std::time::Instant;

use redis::{ConnectionLike, RedisResult, Script};

use crate::objects::sync::event::{parse_call, EventCall};
use crate::protocol::{Reply, ReplyValue, Request};

use super::conn::Lazy;
use super::queue::{For, FLAG_TTL_MS, WAKE_CHANNEL};
use super::waiters::SyncWaiter;
use super::{Caller, Gateway, Named, Ran};

/// `KEYS`: the event, the flag. `ARGV`: channel, name.
static SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('HSET', KEYS[1], 'set', 1)
         redis.call('HINCRBY', KEYS[1], 'sets', 1)
         if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PUBLISH', ARGV[1], ARGV[2]) end",
    )
});

/// `KEYS`: the event, the flag. `ARGV`: whether to set the flag first
/// (parked waits), its TTL. The flag and the count of sets.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if ARGV[1] == '1' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
         local e = redis.call('HMGET', KEYS[1], 'set', 'sets')
         return {tonumber(e[1] or '0'), tonumber(e[2] or '0')}",
    )
});

/// The event's flag and count of sets.
fn read(c: &mut dyn ConnectionLike, q: &Named, by: For) -> RedisResult<(bool, u64)> {
    let (set, sets): (i64, u64) = READ.key(&q.key).key(&q.flag).arg(by.flag()).arg(FLAG_TTL_MS).invoke(c)?;
    Ok((set == 1, sets))
}

fn bool_reply(b: bool) -> Reply {
    Reply::Return(ReplyValue::Bool(b))
}

/// One call on event `object`; `None` once parked.
pub fn call(gw: &Gateway, conn: &mut Lazy, q: &Named, by: Caller, req: &Request<'_, '_>) -> Ran {
    let Caller { ticket, object, connection } = by;
    let now = Instant::now();
    // `since` is read from Redis below, with the flag.
    Ok(match parse_call(req, now, 0)? {
        EventCall::IsSet => conn.with(&gw.connector, |c| read(c, q, For::Caller)).map(|(set, _)| Some(bool_reply(set))),
        EventCall::Set => {
            let done = conn.with(&gw.connector, |c| super::replicas::waited(c, q.replicas, |c| SET.key(&q.key).key(&q.flag).arg(WAKE_CHANNEL).arg(&q.name).invoke::<()>(c)));
            if done.is_ok() && gw.waiters.has_sync(object) {
                gw.waiters.kick();
            }
            done.map(|()| Some(Reply::none()))
        }
        EventCall::Clear => {
            conn.with(&gw.connector, |c| super::replicas::waited(c, q.replicas, |c| redis::cmd("HSET").arg(&q.key).arg("set").arg(0).exec(c))).map(|()| Some(Reply::none()))
        }
        EventCall::Wait { timeout, deadline, .. } => conn.with(&gw.connector, |c| read(c, q, For::Caller)).map(|(set, sets)| {
            if set {
                return Some(bool_reply(true));
            }
            // As CPython: the timeout is looked at only if the flag is clear.
            match timeout {
                Err(e) => Some(Reply::Error(e)),
                Ok(Some(t)) if t <= 0.0 => Some(bool_reply(false)),
                Ok(_) => {
                    gw.waiters.park_sync(object, SyncWaiter { ticket, deadline, connection, since: sets });
                    None
                }
            }
        }),
    })
}

/// The waker's pass over event `object`: every parked wait whose event
/// is set, or was set since it came, returns `True`.
pub fn serve(gw: &Gateway, conn: &mut Lazy, object: usize) -> RedisResult<()> {
    let Some(q) = gw.objects.get(object) else { return Ok(()) };
    let q = &*q;
    let (set, sets) = conn.with(&gw.connector, |c| read(c, q, For::Parked))?;
    gw.waiters.with_sync(object, |parked| {
        parked.retain(|w| {
            let woken = set || w.since != sets;
            if woken {
                gw.answer(w.ticket, bool_reply(true));
            }
            !woken && gw.end.is_waiting(w.ticket)
        })
    });
    Ok(())
}
