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

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use redis::{ConnectionLike, RedisResult, Script};
use tracing::{info, warn};

use crate::objects::sync::lock::{parse_call, release_error, LockCall, LockKind};
use crate::protocol::{Reply, ReplyValue, Request};

use super::conn::Lazy;
use super::pending::LEASE;
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
            match conn.with(&gw.connector, |c| try_acquire(c, gw, q, &me, For::Caller, only_reentry)) {
                Err(e) => Err(e),
                Ok(true) => Ok(granted(gw, conn, ticket, object, connection)),
                Ok(false) if !a.blocking || passed => Ok(Some(Reply::Return(ReplyValue::Bool(false)))),
                Ok(false) => {
                    gw.waiters.park_sync(object, SyncWaiter { ticket, deadline: a.deadline, connection, since: 0 });
                    Ok(None)
                }
            }
        }
        LockCall::Release => {
            let reentrant = kind(q) == LockKind::RLock;
            conn.with(&gw.connector, |c| release(c, q, &me, reentrant, false)).map(|left| {
                if left < 0 {
                    return Some(Reply::Error(release_error(kind(q))));
                }
                if left == 0 {
                    gw.locks.remove(connection, object);
                    if gw.waiters.has_sync(object) {
                        gw.waiters.kick();
                    }
                }
                Some(Reply::none())
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
    let me = owner(gw, connection);
    match conn.with(&gw.connector, |c| release(c, q, &me, true, false)) {
        Ok(0) => {
            gw.locks.remove(connection, object);
            gw.waiters.kick();
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, object = %q.name, "redis backend: cannot undo an acquire for a client that left"),
    }
    None
}

/// The waker's pass over lock `object`: the oldest parked acquire that
/// is still waited for takes the lock if it is free.
pub fn serve(gw: &Gateway, conn: &mut Lazy, object: usize) -> RedisResult<()> {
    let Some(q) = gw.objects.get(object) else { return Ok(()) };
    let q = &*q;
    let front = gw.waiters.with_sync(object, |parked| {
        parked.retain(|w| gw.end.is_waiting(w.ticket));
        parked.front().map(|w| w.connection)
    });
    let Some(connection) = front else { return Ok(()) };
    let me = owner(gw, connection);
    if conn.with(&gw.connector, |c| try_acquire(c, gw, q, &me, For::Parked, false))? {
        // Only this thread removes parked calls: the front is the same.
        let w = gw.waiters.with_sync(object, |parked| parked.pop_front()).expect("the front acquire");
        if let Some(reply) = granted(gw, conn, w.ticket, object, connection) {
            gw.answer(w.ticket, reply);
        }
    }
    Ok(())
}

/// A connection of this gateway closed: the RLocks it holds are released.
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
/// the lock if it is held through a gateway whose lease has expired.
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
