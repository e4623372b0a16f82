//! A named `Lock` or `RLock` in Redis: one hash per name,
//! `fm:{k:NAME}:lock`, absent while unlocked, with the fields `owner` (the
//! holder: this gateway's id and the caller's connection, `GATEWAY:CONN`,
//! unique across gateways and their restarts, since a gateway's id is
//! random per start), `gateway` (the holder's gateway, for its lease) and
//! `count` (an `RLock`'s recursion depth; 1 for a `Lock`). Acquire and
//! release are Lua scripts, so the check and the change are one step.
//!
//! Ownership is as on the embedded server (`objects::sync`): an `RLock`
//! belongs to the connection that acquired it (each client thread has its
//! own connection), only it may release it, and its connection closing
//! releases it (`HostRequest::Disconnected`); a `Lock` may be released
//! by anyone, and stays held when its client leaves.
//!
//! What the embedded server cannot face: the gateway itself dying. Each
//! gateway holds a lease per lock, `fm:{k:NAME}:lease:GATEWAY` (the
//! queues' [`LEASE`], renewed every second by the lease thread,
//! `pending.rs`); a live gateway's pass releases a lock whose holder's
//! gateway has no lease left, `Lock` and `RLock` alike, and publishes a
//! wake-up.
//!
//! A blocked `acquire` parks in this gateway's waiters (FIFO per lock),
//! woken by this gateway's releases directly and by other gateways'
//! through the wake channel (published while the lock's `waiting` flag
//! is set, as for queues).
//!
//! With `--backend-wait-replicas`, a client's acquire and release wait
//! for replicas (`replicas.rs`): an acquire fewer replicas confirmed is
//! given back and fails (a failover could lose it and let a second holder
//! in), a release under a shortfall stays done and fails saying so.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use redis::{ConnectionLike, RedisError, RedisResult, Script};
use tracing::{info, warn};

use crate::objects::sync::lock::{parse_call, release_error, LockCall, LockKind};
use crate::protocol::{Reply, ReplyValue, Request};

use super::conn::Lazy;
use super::pending::LEASE;
use super::replicas;
use super::queue::{For, FLAG_TTL_MS, WAKE_CHANNEL};
use super::waiters::SyncWaiter;
use super::{Caller, Gateway, Named, Ran, ObjectKind};

/// `KEYS`: the lock, the flag, this gateway's lease. `ARGV`: owner,
/// whether re-entrant (`1`: an RLock), gateway, lease ms, whether to set
/// the flag first (parked calls), its TTL, whether only a re-entry may
/// acquire (`1`: this gateway has older calls parked on the lock). 1 if
/// acquired.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if ARGV[5] == '1' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[6]) end
         local count = tonumber(redis.call('HGET', KEYS[1], 'count') or '0')
         if count > 0 then
             if ARGV[2] == '1' and redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
                 redis.call('HINCRBY', KEYS[1], 'count', 1)
                 return 1
             end
             return 0
         end
         if ARGV[7] == '1' then return 0 end
         redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'gateway', ARGV[3], 'count', 1)
         redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
         return 1",
    )
});

/// `KEYS`: the lock, the flag. `ARGV`: owner, whether only the owner may
/// release (`1`: an RLock, or an acquire undone), whether to release
/// every level (`1`: its owner's connection closed), channel, name. -1 if
/// the release may not happen, else the depth left (0: unlocked, which
/// publishes if some gateway waits).
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local count = tonumber(redis.call('HGET', KEYS[1], 'count') or '0')
         if count == 0 then return -1 end
         if ARGV[2] == '1' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return -1 end
         if count > 1 and ARGV[3] ~= '1' then return redis.call('HINCRBY', KEYS[1], 'count', -1) end
         redis.call('DEL', KEYS[1])
         if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
         return 0",
    )
});

/// The lease pass of one lock. `KEYS`: the lock, the flag, this
/// gateway's lease. `ARGV`: the keys' prefix, this gateway's id, the
/// lease in ms, channel, name. Renews the lease; releases the lock if
/// its holder's gateway has none (1).
static LEASE_PASS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
         local gw = redis.call('HGET', KEYS[1], 'gateway')
         if gw and gw ~= ARGV[2] and redis.call('EXISTS', ARGV[1] .. 'lease:' .. gw) == 0 then
             redis.call('DEL', KEYS[1])
             if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
             return 1
         end
         return 0",
    )
});

/// The RLocks each connection of this gateway holds (their objects), so
/// that a closed connection costs Redis work only if it holds one. An
/// entry may outlive the holding (the lease pass of another gateway
/// released it): releasing it again is a no-op.
#[derive(Default)]
pub struct Holders(Mutex<HashMap<u64, Vec<usize>>>);

impl Holders {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<usize>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, connection: u64, object: usize) {
        let mut all = self.lock();
        let held = all.entry(connection).or_default();
        if !held.contains(&object) {
            held.push(object);
        }
    }

    fn remove(&self, connection: u64, object: usize) {
        let mut all = self.lock();
        if let Some(held) = all.get_mut(&connection) {
            held.retain(|&o| o != object);
            if held.is_empty() {
                all.remove(&connection);
            }
        }
    }

    fn take(&self, connection: u64) -> Vec<usize> {
        self.lock().remove(&connection).unwrap_or_default()
    }
}

fn kind(q: &Named) -> LockKind {
    if q.kind == ObjectKind::RLock { LockKind::RLock } else { LockKind::Lock }
}

/// The owner a connection of this gateway is in Redis.
fn owner(gw: &Gateway, connection: u64) -> String {
    format!("{}:{connection}", gw.delivery.gateway)
}

fn try_acquire(c: &mut dyn ConnectionLike, gw: &Gateway, q: &Named, owner: &str, by: For, only_reentry: bool) -> RedisResult<bool> {
    let mut call = ACQUIRE.key(&q.key);
    call.key(&q.flag).key(&q.lease).arg(owner).arg(if kind(q) == LockKind::RLock { "1" } else { "0" });
    call.arg(&gw.delivery.gateway).arg(LEASE.as_millis() as u64).arg(by.flag()).arg(FLAG_TTL_MS);
    call.arg(if only_reentry { "1" } else { "0" });
    Ok(call.invoke::<i64>(c)? == 1)
}

/// [`try_acquire`] with `--backend-wait-replicas`: whether the lock was
/// taken, and if so but fewer replicas than asked confirmed it, the error
/// for its caller (the acquire given back meanwhile).
fn acquire_replicated(gw: &Gateway, conn: &mut Lazy, q: &Named, by: Caller, only_reentry: bool, who: For) -> RedisResult<(bool, Option<RedisError>)> {
    let me = owner(gw, by.connection);
    let (taken, short) =
        conn.with(&gw.connector, |c| replicas::waited_noting(c, q.replicas, |c| try_acquire(c, gw, q, &me, who, only_reentry)))?;
    match short {
        Some(short) if taken => {
            give_back(gw, conn, q, by, "redis backend: cannot give back an acquire that was not replicated");
            Ok((true, Some(short.undone())))
        }
        _ => Ok((taken, None)),
    }
}

/// Undoes one acquire of `by` that its caller will not hold (it left, or
/// the acquire was not replicated). Such releases do not wait for
/// replicas: no client is told of them, and the acquire they undo was
/// itself unconfirmed (a failover loses both) or its client is gone (a
/// failover that loses the release leaves the lock held by a caller that
/// is gone, as a lost release of a client's would: waiting could only
/// report that, to nobody).
fn give_back(gw: &Gateway, conn: &mut Lazy, q: &Named, by: Caller, failed: &str) {
    let me = owner(gw, by.connection);
    match conn.with(&gw.connector, |c| release(c, q, &me, true, false)) {
        Ok(0) => {
            gw.locks.remove(by.connection, by.object);
            gw.waiters.kick();
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, object = %q.name, "{failed}"),
    }
}

/// `owner_only`: the release must be the owner's; `all`: every level.
fn release(c: &mut dyn ConnectionLike, q: &Named, owner: &str, owner_only: bool, all: bool) -> RedisResult<i64> {
    let flag = |b: bool| if b { "1" } else { "0" };
    let mut call = RELEASE.key(&q.key);
    call.key(&q.flag).arg(owner).arg(flag(owner_only)).arg(flag(all)).arg(WAKE_CHANNEL).arg(&q.name);
    call.invoke(c)
}

/// One call on lock `object` by `connection`; `None` once parked or
/// answered.
pub fn call(gw: &Gateway, conn: &mut Lazy, q: &Named, by: Caller, req: &Request<'_, '_>) -> Ran {
    let Caller { ticket, object, connection } = by;
    let now = Instant::now();
    let me = owner(gw, connection);
    Ok(match parse_call(req, now)? {
        LockCall::Acquire(a) => {
            let passed = a.deadline.is_some_and(|d| d <= now);
            // Behind this gateway's parked acquires (FIFO), unless it
            // would not wait anyway; an RLock's owner re-enters at once.
            let only_reentry = a.blocking && !passed && gw.waiters.has_sync(object);
            match acquire_replicated(gw, conn, q, by, only_reentry, For::Caller) {
                Err(e) | Ok((_, Some(e))) => Err(e),
                Ok((true, None)) => Ok(granted(gw, conn, ticket, object, connection)),
                Ok((false, _)) if !a.blocking || passed => Ok(Some(Reply::Return(ReplyValue::Bool(false)))),
                Ok((false, _)) => {
                    gw.waiters.park_sync(object, SyncWaiter { ticket, deadline: a.deadline, connection, since: 0 });
                    Ok(None)
                }
            }
        }
        LockCall::Release => {
            let reentrant = kind(q) == LockKind::RLock;
            let released = conn.with(&gw.connector, |c| replicas::waited_noting(c, q.replicas, |c| release(c, q, &me, reentrant, false)));
            released.and_then(|(left, short)| {
                if left < 0 {
                    return Ok(Some(Reply::Error(release_error(kind(q)))));
                }
                if left == 0 {
                    gw.locks.remove(connection, object);
                    if gw.waiters.has_sync(object) {
                        gw.waiters.kick();
                    }
                }
                // Done on the master all the same: the caller is told it
                // may be lost.
                short.map_or(Ok(Some(Reply::none())), |short| Err(short.kept("release")))
            })
        }
    })
}

/// After an acquire for `ticket`: `True` for its caller, or, if the caller
/// has left (it will read no answer), the acquire undone. The holding is
/// noted before the check, so a `Disconnected` that comes after the check
/// finds it.
fn granted(gw: &Gateway, conn: &mut Lazy, ticket: u64, object: usize, connection: u64) -> Option<Reply> {
    let Some(q) = gw.objects.get(object) else { return Some(super::created::gone()) };
    let q = &*q;
    if kind(q) == LockKind::RLock {
        gw.locks.add(connection, object);
    }
    if gw.end.is_waiting(ticket) {
        return Some(Reply::Return(ReplyValue::Bool(true)));
    }
    let by = Caller { ticket, object, connection };
    give_back(gw, conn, q, by, "redis backend: cannot undo an acquire for a client that left");
    None
}

/// The waker's pass over lock `object`: the oldest parked acquire that
/// is still waited for takes the lock if it is free.
pub fn serve(gw: &Gateway, conn: &mut Lazy, object: usize) -> RedisResult<()> {
    let Some(q) = gw.objects.get(object) else { return Ok(()) };
    let q = &*q;
    let front = gw.waiters.with_sync(object, |parked| {
        parked.retain(|w| gw.end.is_waiting(w.ticket));
        parked.front().map(|w| (w.ticket, w.connection))
    });
    let Some((ticket, connection)) = front else { return Ok(()) };
    let (taken, short) = acquire_replicated(gw, conn, q, Caller { ticket, object, connection }, false, For::Parked)?;
    if taken {
        // Only this thread removes parked calls: the front is the same.
        let w = gw.waiters.with_sync(object, |parked| parked.pop_front()).expect("the front acquire");
        match short {
            // Given back: the caller hears why, as an unparked acquire would.
            Some(e) => gw.answer(w.ticket, gw.backend_error(&e)),
            None => {
                if let Some(reply) = granted(gw, conn, w.ticket, object, connection) {
                    gw.answer(w.ticket, reply);
                }
            }
        }
    }
    Ok(())
}

/// A connection of this gateway closed: the RLocks it holds are released
/// (without waiting for replicas, as [`give_back`]: no client is told).
pub fn disconnected(gw: &Gateway, conn: &mut Lazy, connection: u64) {
    let me = owner(gw, connection);
    for object in gw.locks.take(connection) {
        let Some(q) = gw.objects.get(object) else { continue };
        let q = &*q;
        match conn.with(&gw.connector, |c| release(c, q, &me, true, true)) {
            Ok(0) => {
                info!(object = %q.name, "redis backend: released an RLock whose client left");
                gw.waiters.kick();
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, object = %q.name, "redis backend: cannot release the RLock of a client that left"),
        }
    }
}

/// The lease pass of lock `q`: renews this gateway's lease, and releases
/// the lock if it is held through a gateway whose lease has expired. It
/// does not wait for replicas: it answers no client, and a release that a
/// failover loses is made again by the next pass on the new master.
pub fn lease_pass(gw: &Gateway, conn: &mut Lazy, q: &Named) {
    let result: RedisResult<i64> = conn.with(&gw.connector, |c| {
        let mut call = LEASE_PASS.key(&q.key);
        call.key(&q.flag).key(&q.lease).arg(&q.prefix).arg(&gw.delivery.gateway);
        call.arg(LEASE.as_millis() as u64).arg(WAKE_CHANNEL).arg(&q.name);
        call.invoke(c)
    });
    match result {
        Ok(0) => {}
        Ok(_) => info!(object = %q.name, "redis backend: released a lock whose gateway's lease expired"),
        Err(e) => warn!(error = %e, object = %q.name, "redis backend: lease pass failed; retrying"),
    }
}
