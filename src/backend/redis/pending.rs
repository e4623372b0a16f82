//! At-least-once delivery of queue items. A take does not remove an item
//! from Redis: the take script moves it from the queue's list into this
//! gateway's pending hash, `fm:{q:NAME}:pending:GATEWAY` (field: an id
//! unique in this gateway, value: the item), in the queue's slot. Once the
//! reply is handed to the server for writing, the entry is deleted (the
//! ack); if the caller has left by then, the gateway puts the item back at
//! the queue's front itself.
//!
//! The ack does not cost a round trip of its own: the ids of delivered
//! items wait in [`Delivery`] and ride on the next put or take script of
//! the same queue (same slot), or, when none comes within [`ACK_IDLE`],
//! a request thread sends them alone (`flush_acks`). Until its HDEL has
//! run an id stays in flight, so the lease pass leaves its entry alone;
//! a gateway that dies first leaves those entries to the lease pass,
//! which puts the delivered items back: duplicates (README).
//!
//! Each gateway holds a lease per queue, `fm:{q:NAME}:lease:GATEWAY`, a
//! key with a [`LEASE`] TTL that the lease thread renews every [`RENEW`]
//! and every take sets. The same pass (one script per queue) moves the
//! pending entries of every gateway whose lease has expired (listed in
//! `fm:{q:NAME}:gateways`) back to the queue's front, oldest first, and
//! publishes a wake-up: a dead gateway's items come back.
//!
//! The gateway's id is random per process start, so a restarted gateway
//! never mistakes a dead one's entries for its own.
//!
//! A take whose connection dropped may have run in Redis without this
//! gateway seeing its items: its ids were given up, so the lease pass finds
//! them in this gateway's own hash, not in flight, and puts them back too.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::{ConnectionLike, RedisResult, Script};
use tracing::{info, warn};

use super::conn::Lazy;
use super::queue::WAKE_CHANNEL;
use super::{Gateway, Named, ObjectKind};

/// How long a gateway's lease on a queue lives unless renewed: a dead
/// gateway's taken items go back to the queue this long after its last
/// renewal (plus up to [`RENEW`]). Longer than the failover stalls
/// measured (2.3-3.3 s), during which a live gateway cannot renew.
pub const LEASE: Duration = Duration::from_secs(5);
/// How often the lease thread renews and reaps.
pub const RENEW: Duration = Duration::from_secs(1);

/// How long delivered items' acks wait for a put or take script of their
/// queue to carry them before they are sent alone.
pub const ACK_IDLE: Duration = Duration::from_millis(2);
/// At most this many acks ride on one script (Lua's `unpack` limit is far
/// above; a script stays short).
const ACKS_PER_SCRIPT: usize = 256;

/// Test-only: milliseconds a gateway waits between taking items for
/// parked `get`s and answering them, read once at start-up, so that a
/// test can SIGKILL it while it holds them.
const STALL_ENV: &str = "FASTMANAGER_TEST_STALL_AFTER_TAKE_MS";

/// This gateway's side of delivery: its id and the ids of the items it
/// has taken and not yet acknowledged or put back.
pub struct Delivery {
    pub gateway: String,
    ids: Mutex<Ids>,
    stall: Option<Duration>,
}

#[derive(Default)]
struct Ids {
    next: u64,
    in_flight: BTreeSet<u64>,
    /// Delivered items' ids not yet acknowledged in Redis, by the queue's
    /// pending hash; still in flight.
    acks: HashMap<String, Vec<u64>>,
    /// When the oldest of them was delivered.
    acks_since: Option<Instant>,
}

impl Delivery {
    pub fn new() -> Delivery {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("the OS random source is available");
        let gateway: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let stall = std::env::var(STALL_ENV).ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
        if let Some(s) = stall {
            warn!(stall_ms = s.as_millis() as u64, "{STALL_ENV} is set: answers to parked gets wait (tests only)");
        }
        Delivery { gateway, ids: Mutex::new(Ids { next: 1, ..Ids::default() }), stall }
    }

    fn lock(&self) -> MutexGuard<'_, Ids> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `n` ids for a take about to be sent; the first.
    pub fn reserve(&self, n: usize) -> u64 {
        let mut ids = self.lock();
        let first = ids.next;
        let end = first + n as u64;
        ids.next = end;
        ids.in_flight.extend(first..end);
        first
    }

    /// Gives up ids: acknowledged, put back, or never taken.
    pub fn release(&self, ids: impl IntoIterator<Item = u64>) {
        let mut all = self.lock();
        for id in ids {
            all.in_flight.remove(&id);
        }
    }

    /// Notes delivered items of the queue whose pending hash is `pending`:
    /// their acks go with the next script on it (or alone, `flush_acks`).
    pub fn ack_later(&self, pending: &str, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let mut all = self.lock();
        all.acks_since.get_or_insert_with(Instant::now);
        match all.acks.get_mut(pending) {
            Some(waiting) => waiting.extend_from_slice(ids),
            None => {
                all.acks.insert(pending.to_string(), ids.to_vec());
            }
        }
    }

    /// Runs `script` with the acks waiting for queue `pending` to carry
    /// (its `ARGV` tail); they are done once it succeeds, and wait for the
    /// next one if it fails (a repeated HDEL is harmless).
    pub fn carrying_acks<T>(&self, pending: &str, script: impl FnOnce(&[u64]) -> RedisResult<T>) -> RedisResult<T> {
        let acks = self.take_acks(pending);
        let result = script(&acks);
        self.acks_sent(pending, acks, result.is_ok());
        result
    }

    /// The acks waiting for queue `pending` that its next script is to
    /// carry; [`Delivery::acks_sent`] once it ran or failed.
    pub(super) fn take_acks(&self, pending: &str) -> Vec<u64> {
        let mut all = self.lock();
        match all.acks.get_mut(pending) {
            Some(waiting) if waiting.len() > ACKS_PER_SCRIPT => waiting.drain(..ACKS_PER_SCRIPT).collect(),
            Some(_) => all.acks.remove(pending).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Acks sent for queue `pending`: forgotten if `done`, else waiting again.
    pub(super) fn acks_sent(&self, pending: &str, acks: Vec<u64>, done: bool) {
        if acks.is_empty() {
            return;
        }
        let mut all = self.lock();
        if done {
            for id in &acks {
                all.in_flight.remove(id);
            }
        } else {
            all.acks_since.get_or_insert_with(Instant::now);
            all.acks.entry(pending.to_string()).or_default().extend(acks);
        }
        if all.acks.is_empty() {
            all.acks_since = None;
        }
    }

    /// Whether acks wait, and since when.
    pub fn acks_waiting_since(&self) -> Option<Instant> {
        self.lock().acks_since
    }

    /// The highest id handed out, and the ids in flight.
    fn snapshot(&self) -> (u64, Vec<u64>) {
        let ids = self.lock();
        (ids.next - 1, ids.in_flight.iter().copied().collect())
    }

    /// The test-only stall after a take for parked calls.
    pub fn stall(&self) {
        if let Some(s) = self.stall {
            std::thread::sleep(s);
        }
    }
}

/// `KEYS`: the list, the pending hash, the flag. `ARGV`: channel, name,
/// then ids, newest first. Puts those entries back at the list's front
/// (so the oldest ends first), publishing if someone waits.
static REQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local n = 0
         for i = 3, #ARGV do
             local v = redis.call('HGET', KEYS[2], ARGV[i])
             if v then
                 redis.call('HDEL', KEYS[2], ARGV[i])
                 redis.call('LPUSH', KEYS[1], v)
                 n = n + 1
             end
         end
         if n > 0 and redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
         return n",
    )
});

/// The lease pass of one queue. `KEYS`: the list, the gateways set, the
/// flag, this gateway's lease, this gateway's pending hash. `ARGV`: the
/// keys' common prefix (`fm:{q:NAME}:`), this gateway's id, the lease in
/// ms, channel, name, the highest id this gateway handed out, then its
/// ids in flight. Renews the lease, with this gateway in the set (a take
/// that finds the lease adds neither, `queue.rs`); puts back every entry of a gateway
/// without a lease, and this gateway's own entries that are neither in
/// flight nor newer than the highest id (a take it gave up). Other
/// gateways' keys are in the same slot (the prefix's hash tag), which a
/// script without flags may reach. The number of items put back.
static LEASE_PASS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local prefix, me = ARGV[1], ARGV[2]
         redis.call('SET', KEYS[4], '1', 'PX', ARGV[3])
         redis.call('SADD', KEYS[2], me)
         local moved = 0
         local function requeue(pending, keep)
             local all = redis.call('HGETALL', pending)
             local entries = {}
             for i = 1, #all, 2 do
                 if not keep(all[i]) then table.insert(entries, {tonumber(all[i]), all[i], all[i + 1]}) end
             end
             table.sort(entries, function(a, b) return a[1] > b[1] end)
             for _, e in ipairs(entries) do
                 redis.call('LPUSH', KEYS[1], e[3])
                 redis.call('HDEL', pending, e[2])
                 moved = moved + 1
             end
         end
         for _, gw in ipairs(redis.call('SMEMBERS', KEYS[2])) do
             if gw ~= me and redis.call('EXISTS', prefix .. 'lease:' .. gw) == 0 then
                 requeue(prefix .. 'pending:' .. gw, function(id) return false end)
                 redis.call('DEL', prefix .. 'pending:' .. gw)
                 redis.call('SREM', KEYS[2], gw)
             end
         end
         if redis.call('HLEN', KEYS[5]) > 0 then
             local max, flying = tonumber(ARGV[6]), {}
             for i = 7, #ARGV do flying[ARGV[i]] = true end
             requeue(KEYS[5], function(id) return flying[id] or tonumber(id) > max end)
         end
         if moved > 0 then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
         return moved",
    )
});

/// Sends every ack still waiting, each queue's in one HDEL: none of its
/// scripts came to carry them within [`ACK_IDLE`], or the gateway stops.
pub fn flush_acks(gw: &Gateway, conn: &mut Lazy) {
    let pendings: Vec<String> = gw.delivery.lock().acks.keys().cloned().collect();
    for pending in pendings {
        let result = conn.with(&gw.connector, |c| {
            gw.delivery.carrying_acks(&pending, |ids| {
                if ids.is_empty() {
                    return Ok(());
                }
                redis::cmd("HDEL").arg(&pending).arg(ids).exec(c)
            })
        });
        if let Err(e) = result {
            warn!(error = %e, pending = %pending, "redis backend: cannot acknowledge delivered items; retrying");
        }
    }
}

/// Puts taken items back at the queue's front, in their order.
pub fn requeue(conn: &mut dyn ConnectionLike, q: &Named, ids: &[u64]) -> RedisResult<i64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let mut newest_first = ids.to_vec();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    REQUEUE.key(&q.key).key(&q.pending).key(&q.flag).arg(WAKE_CHANNEL).arg(&q.name).arg(newest_first).invoke(conn)
}

/// Hands a taken item's reply to the server if its caller still waits,
/// then acknowledges it (with the queue's next script); else puts it
/// back. The window left: a caller that leaves after the check loses the
/// item (README).
pub fn deliver(gw: &Gateway, conn: &mut Lazy, q: &Named, ticket: u64, id: u64, item: Vec<u8>) {
    let delivered = gw.end.is_waiting(ticket);
    if delivered {
        gw.answer(ticket, super::queue::item_reply(item));
    }
    let (one, none) = ([id], []);
    let (acked, returned): (&[u64], &[u64]) = if delivered { (&one, &none) } else { (&none, &one) };
    settle(gw, conn, q, acked, returned);
}

/// Acknowledges `delivered` (with the queue's next script, ids in flight
/// until then) and puts back `returned` now, then forgets those.
pub fn settle(gw: &Gateway, conn: &mut Lazy, q: &Named, delivered: &[u64], returned: &[u64]) {
    gw.delivery.ack_later(&q.pending, delivered);
    if returned.is_empty() {
        return;
    }
    if let Err(e) = conn.with(&gw.connector, |c| requeue(c, q, returned)) {
        // What stays pending is put back by the lease pass.
        warn!(error = %e, object = %q.name, "redis backend: cannot put back taken items; the lease pass will");
    }
    gw.delivery.release(returned.iter().copied());
}

/// The lease thread: renews this gateway's leases and puts back what
/// dead gateways held, every [`RENEW`].
pub fn run_leases(gw: Arc<Gateway>) {
    let mut conn = Lazy::default();
    info!(gateway = %gw.delivery.gateway, lease_ms = LEASE.as_millis() as u64, "redis backend: gateway id");
    while !gw.waiters.stopped() {
        let started = Instant::now();
        for q in gw.objects.all().iter().filter(|o| matches!(o.kind, ObjectKind::Queue { .. })) {
            let (max, flying) = gw.delivery.snapshot();
            let result: RedisResult<i64> = conn.with(&gw.connector, |c| {
                let mut call = LEASE_PASS.key(&q.key);
                call.key(&q.gateways).key(&q.flag).key(&q.lease).key(&q.pending);
                call.arg(&q.prefix).arg(&gw.delivery.gateway).arg(LEASE.as_millis() as u64);
                call.arg(WAKE_CHANNEL).arg(&q.name).arg(max).arg(&flying);
                call.invoke(c)
            });
            match result {
                Ok(0) => {}
                Ok(n) => info!(object = %q.name, items = n, "redis backend: put back items whose gateway's lease expired"),
                Err(e) => warn!(error = %e, object = %q.name, "redis backend: lease pass failed; retrying"),
            }
        }
        // Locks and semaphores held through a dead gateway (their files).
        for q in gw.objects.all().iter() {
            match q.kind {
                ObjectKind::Lock | ObjectKind::RLock => super::lock::lease_pass(&gw, &mut conn, q),
                ObjectKind::Semaphore { .. } => super::semaphore::lease_pass(&gw, &mut conn, q),
                _ => {}
            }
        }
        std::thread::sleep(RENEW.saturating_sub(started.elapsed()));
    }
}
