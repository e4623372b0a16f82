//! A named `Semaphore` or `BoundedSemaphore` in Redis: a hash per name,
//! `fm:{s:NAME}:sem`, with the free units (`value`) and the start-up
//! value (`initial`, a bounded semaphore's bound), and
//! `fm:{s:NAME}:held`, the units taken through each gateway (field: the
//! gateway's id). Every script first sets both fields from the
//! `--register` value if the hash is absent, so the first gateway's value
//! holds and a gateway that starts later does not reset it.
//!
//! Semaphores have no owner, as in `threading` and on the embedded
//! server: anyone may release, and a client that leaves keeps its units
//! taken. What a gateway's death gives back: the units held through it.
//! A release counts against the releasing gateway's units first, then
//! against other gateways' (a unit taken through A and released through B
//! is no longer A's), so the units held stay the units taken and not
//! given back; when a gateway's lease on the semaphore expires, a live
//! gateway's lease pass adds its units back and publishes a wake-up.
//!
//! With `--backend-wait-replicas`, acquires and releases wait for
//! replicas as a lock's do (`lock.rs`): units fewer replicas confirmed are
//! given back and their callers get an error; a release under a shortfall
//! stays done and fails saying so.

use std::sync::LazyLock;
use std::time::Instant;

use redis::{ConnectionLike, RedisError, RedisResult, Script};
use tracing::{info, warn};

use crate::objects::sync::semaphore::{over_release, parse_call, SemaphoreCall};
use crate::protocol::{Reply, ReplyValue, Request};

use super::conn::Lazy;
use super::pending::LEASE;
use super::replicas;
use super::queue::{For, FLAG_TTL_MS, WAKE_CHANNEL};
use super::waiters::SyncWaiter;
use super::{Caller, Gateway, Named, Ran, ObjectKind};

/// Sets the hash `KEYS[1]` from `ARGV[1]` if absent (the start of every
/// script).
const INIT: &str = "if redis.call('EXISTS', KEYS[1]) == 0 then
         redis.call('HSET', KEYS[1], 'value', ARGV[1], 'initial', ARGV[1])
     end
     ";

/// `KEYS`: the semaphore, the units held, the flag, this gateway's lease.
/// `ARGV`: initial value, this gateway's id, lease ms, whether to set the
/// flag first (parked calls), its TTL, units wanted. The units taken (at
/// most as many as free), counted as this gateway's.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{INIT}if ARGV[4] == '1' then redis.call('SET', KEYS[3], '1', 'PX', ARGV[5]) end
         local n = math.min(tonumber(redis.call('HGET', KEYS[1], 'value')), tonumber(ARGV[6]))
         if n <= 0 then return 0 end
         redis.call('HINCRBY', KEYS[1], 'value', -n)
         redis.call('HINCRBY', KEYS[2], ARGV[2], n)
         redis.call('SET', KEYS[4], '1', 'PX', ARGV[3])
         return n"
    ))
});

/// `KEYS`: the semaphore, the units held, the flag. `ARGV`: initial
/// value, units released, whether bounded, this gateway's id, channel,
/// name. -1 if a bounded semaphore would pass its bound, else the free
/// units after; publishes if some gateway waits.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{INIT}local n = tonumber(ARGV[2])
         if ARGV[3] == '1' and tonumber(redis.call('HGET', KEYS[1], 'value')) + n
             > tonumber(redis.call('HGET', KEYS[1], 'initial')) then
             return -1
         end
         local value = redis.call('HINCRBY', KEYS[1], 'value', n)
         local function give(gw, left)
             local held = tonumber(redis.call('HGET', KEYS[2], gw) or '0')
             local k = math.min(held, left)
             if k > 0 then
                 if k == held then redis.call('HDEL', KEYS[2], gw) else redis.call('HINCRBY', KEYS[2], gw, -k) end
             end
             return left - k
         end
         local left = give(ARGV[4], n)
         if left > 0 then
             for _, gw in ipairs(redis.call('HKEYS', KEYS[2])) do
                 left = give(gw, left)
                 if left == 0 then break end
             end
         end
         if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
         return value"
    ))
});

/// The lease pass of one semaphore. `KEYS`: the semaphore, the units
/// held, the flag, this gateway's lease. `ARGV`: initial value, the keys'
/// prefix, this gateway's id, lease ms, channel, name. Renews the lease;
/// gives back the units of every gateway without one (their count).
static LEASE_PASS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{INIT}redis.call('SET', KEYS[4], '1', 'PX', ARGV[4])
         local back = 0
         local all = redis.call('HGETALL', KEYS[2])
         for i = 1, #all, 2 do
             local gw = all[i]
             if gw ~= ARGV[3] and redis.call('EXISTS', ARGV[2] .. 'lease:' .. gw) == 0 then
                 back = back + tonumber(all[i + 1])
                 redis.call('HDEL', KEYS[2], gw)
             end
         end
         if back > 0 then
             redis.call('HINCRBY', KEYS[1], 'value', back)
             if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
         end
         return back"
    ))
});

fn held_key(q: &Named) -> String {
    format!("{}held", q.prefix)
}

fn params(q: &Named) -> (u64, bool) {
    match q.kind {
        ObjectKind::Semaphore { bounded, initial } => (initial, bounded),
        _ => unreachable!("a semaphore"),
    }
}

fn acquire(c: &mut dyn ConnectionLike, gw: &Gateway, q: &Named, wanted: usize, by: For) -> RedisResult<usize> {
    let mut call = ACQUIRE.key(&q.key);
    call.key(held_key(q)).key(&q.flag).key(&q.lease).arg(params(q).0).arg(&gw.delivery.gateway);
    call.arg(LEASE.as_millis() as u64).arg(by.flag()).arg(FLAG_TTL_MS).arg(wanted);
    Ok(call.invoke::<i64>(c)?.max(0) as usize)
}

/// [`acquire`] with `--backend-wait-replicas`: the units taken, and if
/// fewer replicas than asked confirmed them, the error for their callers
/// (the units given back meanwhile).
fn acquire_replicated(gw: &Gateway, conn: &mut Lazy, q: &Named, wanted: usize, by: For) -> RedisResult<(usize, Option<RedisError>)> {
    let (got, short) = conn.with(&gw.connector, |c| replicas::waited_noting(c, q.replicas, |c| acquire(c, gw, q, wanted, by)))?;
    match short {
        Some(short) if got > 0 => {
            give_back(gw, conn, q, got as u64);
            Ok((got, Some(short.undone())))
        }
        _ => Ok((got, None)),
    }
}

/// Adds back `n` units that no caller will hold (it left, or they were not
/// replicated). This does not wait for replicas, as a lock's give-back
/// (`lock.rs`): no client is told of it.
fn give_back(gw: &Gateway, conn: &mut Lazy, q: &Named, n: u64) {
    if let Err(e) = conn.with(&gw.connector, |c| release(c, gw, q, n, false)) {
        warn!(error = %e, object = %q.name, units = n, "redis backend: cannot give back units that no caller holds");
    }
    gw.waiters.kick();
}

fn release(c: &mut dyn ConnectionLike, gw: &Gateway, q: &Named, n: u64, bounded: bool) -> RedisResult<i64> {
    let mut call = RELEASE.key(&q.key);
    call.key(held_key(q)).key(&q.flag).arg(params(q).0).arg(n).arg(if bounded { "1" } else { "0" });
    call.arg(&gw.delivery.gateway).arg(WAKE_CHANNEL).arg(&q.name);
    call.invoke(c)
}

/// One call on semaphore `object`; `None` once parked or answered.
pub fn call(gw: &Gateway, conn: &mut Lazy, q: &Named, by: Caller, req: &Request<'_, '_>) -> Ran {
    let Caller { ticket, object, connection } = by;
    let now = Instant::now();
    let (_, bounded) = params(q);
    Ok(match parse_call(req, now, bounded)? {
        SemaphoreCall::Acquire { blocking, deadline } => {
            let passed = deadline.is_some_and(|d| d <= now);
            // Behind this gateway's parked acquires (FIFO), unless it
            // would not wait anyway.
            if blocking && !passed && gw.waiters.has_sync(object) {
                gw.waiters.park_sync(object, SyncWaiter { ticket, deadline, connection, since: 0 });
                return Ok(Ok(None));
            }
            match acquire_replicated(gw, conn, q, 1, For::Caller) {
                Err(e) | Ok((_, Some(e))) => Err(e),
                Ok((1, None)) => Ok(granted(gw, conn, ticket, q)),
                Ok(_) if !blocking || passed => Ok(Some(Reply::Return(ReplyValue::Bool(false)))),
                Ok(_) => {
                    gw.waiters.park_sync(object, SyncWaiter { ticket, deadline, connection, since: 0 });
                    Ok(None)
                }
            }
        }
        SemaphoreCall::Release { n } => {
            let released = conn.with(&gw.connector, |c| replicas::waited_noting(c, q.replicas, |c| release(c, gw, q, n, bounded)));
            released.and_then(|(value, short)| {
                if value < 0 {
                    return Ok(Some(Reply::Error(over_release())));
                }
                if gw.waiters.has_sync(object) {
                    gw.waiters.kick();
                }
                // Done on the master all the same: the caller is told it
                // may be lost.
                short.map_or(Ok(Some(Reply::none())), |short| Err(short.kept("release")))
            })
        }
    })
}

/// After a unit was taken for `ticket`: `True` for its caller, or the
/// unit back if the caller has left (it will read no answer).
fn granted(gw: &Gateway, conn: &mut Lazy, ticket: u64, q: &Named) -> Option<Reply> {
    if gw.end.is_waiting(ticket) {
        return Some(Reply::Return(ReplyValue::Bool(true)));
    }
    give_back(gw, conn, q, 1);
    None
}

/// The waker's pass over semaphore `object`: as many units as are free
/// go to the oldest parked acquires, in one round trip.
pub fn serve(gw: &Gateway, conn: &mut Lazy, object: usize) -> RedisResult<()> {
    let Some(q) = gw.objects.get(object) else { return Ok(()) };
    let q = &*q;
    let waiting = gw.waiters.with_sync(object, |parked| {
        parked.retain(|w| gw.end.is_waiting(w.ticket));
        parked.len()
    });
    if waiting == 0 {
        return Ok(());
    }
    let (got, short) = acquire_replicated(gw, conn, q, waiting, For::Parked)?;
    // Only this thread removes parked calls: the first `got` are the same.
    let served: Vec<SyncWaiter> = gw.waiters.with_sync(object, |parked| parked.drain(..got.min(parked.len())).collect());
    for w in served {
        let reply = match &short {
            // Given back: the callers hear why, as unparked acquires would.
            Some(e) => Some(gw.backend_error(e)),
            None => granted(gw, conn, w.ticket, q),
        };
        if let Some(reply) = reply {
            gw.answer(w.ticket, reply);
        }
    }
    Ok(())
}

/// The lease pass of semaphore `q`: renews this gateway's lease, and gives
/// back the units held through gateways whose lease has expired (without
/// waiting for replicas, as a lock's pass: no client is told, and units a
/// failover loses are given back again by the next pass).
pub fn lease_pass(gw: &Gateway, conn: &mut Lazy, q: &Named) {
    let result: RedisResult<i64> = conn.with(&gw.connector, |c| {
        let mut call = LEASE_PASS.key(&q.key);
        call.key(held_key(q)).key(&q.flag).key(&q.lease).arg(params(q).0).arg(&q.prefix);
        call.arg(&gw.delivery.gateway).arg(LEASE.as_millis() as u64).arg(WAKE_CHANNEL).arg(&q.name);
        call.invoke(c)
    });
    match result {
        Ok(0) => {}
        Ok(n) => info!(object = %q.name, units = n, "redis backend: gave back units held through a gateway whose lease expired"),
        Err(e) => warn!(error = %e, object = %q.name, "redis backend: lease pass failed; retrying"),
    }
}
