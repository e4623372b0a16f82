//! At-least-once delivery of queue items. A take does not remove an item
//! from Redis: it moves it (`LMOVE`, one plain command) from the queue's
//! list to the end of this gateway's list of taken items,
//! `fm:{q:NAME}:taken:GATEWAY`, in the queue's slot. Once the reply is
//! handed to the server for writing, the item is removed from that list
//! (the ack: `LREM` of one element equal to it); if the caller has left by
//! then, the gateway moves it back to the queue's front itself.
//!
//! Items are known by value, not by an id: a take by plain command cannot
//! name what it moves, and on the development machine a script that could
//! (moving the item into a hash under an id) cost 78-86 µs a call against
//! 47-50 µs for a plain write. Twins (equal pickles) are interchangeable:
//! an ack that removes the twin of the item it was for leaves the list
//! with the same multiset of values as removing that item would.
//!
//! The ack does not cost a round trip of its own: the values of delivered
//! items wait in [`Delivery`] and ride on the next put or take of the
//! same queue (same slot), or, when none comes within [`ACK_IDLE`], a
//! request thread sends them alone (`flush_acks`). Until its `LREM` has
//! run a value stays in flight; a gateway that dies first leaves those
//! items to the lease pass, which puts them back: duplicates (README).
//!
//! Each gateway holds a lease per queue, `fm:{q:NAME}:lease:GATEWAY`, a
//! key with a [`LEASE`] TTL that the lease thread renews every [`RENEW`]
//! (and a take sets where this gateway has not renewed it lately). The
//! same pass (one script per queue) moves the taken lists of every
//! gateway whose lease has expired (listed in `fm:{q:NAME}:gateways`)
//! back to the queue's front, oldest first, and publishes a wake-up: a
//! dead gateway's items come back.
//!
//! The gateway's id is random per process start, so a restarted gateway
//! never mistakes a dead one's list for its own.
//!
//! A take that failed may have run in Redis without this gateway seeing
//! its items (a connection dropped after the command went out). The queue
//! is then marked for a sweep: the next lease pass gets the values this
//! gateway has in flight on it and puts back every other item of its own
//! list. A take under way during that pass has its item put back too
//! while it still delivers it, and so does an ack under way whose `LREM`
//! has not run yet: duplicates, only after a failed call.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::{Cmd, ConnectionLike, RedisResult, Script};
use tracing::{info, warn};

use crate::pickle::Item;

use super::conn::{pipelined, Lazy};
use super::queue::WAKE_CHANNEL;
use super::{Gateway, Named, ObjectKind};

/// How long a gateway's lease on a queue lives unless renewed: a dead
/// gateway's taken items go back to the queue this long after its last
/// renewal (plus up to [`RENEW`]). Longer than the failover stalls
/// measured (2.3-3.3 s), during which a live gateway cannot renew.
pub const LEASE: Duration = Duration::from_secs(5);
/// How often the lease thread renews and reaps.
pub const RENEW: Duration = Duration::from_secs(1);

/// How long delivered items' acks wait for a put or take of their queue
/// to carry them before they are sent alone.
pub const ACK_IDLE: Duration = Duration::from_millis(2);
/// At most this many acks ride on one call (each is an `LREM`).
const ACKS_PER_CALL: usize = 256;

/// Test-only: milliseconds a gateway waits between taking items for
/// parked `get`s and answering them, read once at start-up, so that a
/// test can SIGKILL it while it holds them.
const STALL_ENV: &str = "FASTMANAGER_TEST_STALL_AFTER_TAKE_MS";

/// This gateway's side of delivery: its id and, per queue, the items it
/// has taken and not yet acknowledged or put back.
pub struct Delivery {
    pub gateway: String,
    state: Mutex<State>,
    stall: Option<Duration>,
}

#[derive(Default)]
struct State {
    /// By the queue's taken list.
    queues: HashMap<String, Held>,
    /// When the oldest waiting ack was made.
    acks_since: Option<Instant>,
}

/// One queue's items in this gateway.
#[derive(Default)]
struct Held {
    /// Taken and not yet acknowledged in Redis nor put back: how many of
    /// each value.
    in_flight: HashMap<Item, u32>,
    /// Of those, the ones whose ack or put-back is under way. A sweep does
    /// not count them in flight: were their `LREM` to run between its
    /// snapshot and its script, it would keep an unknown equal twin in
    /// their place. Not counted, one whose `LREM` has not run yet is put
    /// back by the sweep (a duplicate, for an ack).
    leaving: HashMap<Item, u32>,
    /// Delivered, their `LREM` not yet sent (still in flight).
    acks: Vec<Item>,
    /// A take failed: the list may hold items nobody here knows of.
    sweep: bool,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.in_flight.is_empty() && self.leaving.is_empty() && self.acks.is_empty() && !self.sweep
    }

    /// An item that was leaving is gone: acknowledged or put back (or left
    /// to a sweep).
    fn gone(&mut self, item: &Item) {
        remove(&mut self.leaving, item);
        remove(&mut self.in_flight, item);
    }
}

fn add(counts: &mut HashMap<Item, u32>, item: &Item) {
    *counts.entry(item.clone()).or_default() += 1;
}

fn remove(counts: &mut HashMap<Item, u32>, item: &Item) {
    if let Some(n) = counts.get_mut(item) {
        *n -= 1;
        if *n == 0 {
            counts.remove(item);
        }
    }
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
        Delivery { gateway, state: Mutex::new(State::default()), stall }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes items a take moved into the queue's taken list `taken`.
    pub fn took(&self, taken: &str, items: &[Item]) {
        if items.is_empty() {
            return;
        }
        let mut all = self.lock();
        let held = held(&mut all, taken);
        for item in items {
            add(&mut held.in_flight, item);
        }
    }

    /// A take on `taken` failed: what it may have moved is for the next
    /// lease pass to find.
    pub fn take_failed(&self, taken: &str) {
        held(&mut self.lock(), taken).sweep = true;
    }

    /// Items about to be put back ([`Delivery::returned`] once done).
    pub fn returning(&self, taken: &str, items: &[Item]) {
        let mut all = self.lock();
        let held = held(&mut all, taken);
        for item in items {
            add(&mut held.leaving, item);
        }
    }

    /// Forgets items put back or acknowledged (or, if `failed`, left for
    /// the lease pass: the queue is swept).
    pub fn returned(&self, taken: &str, items: &[Item], failed: bool) {
        let mut all = self.lock();
        let held = held(&mut all, taken);
        for item in items {
            held.gone(item);
        }
        held.sweep |= failed;
        if held.is_empty() {
            all.queues.remove(taken);
        }
    }

    /// Notes delivered items of the queue whose taken list is `taken`:
    /// their acks go with the next call on it (or alone, `flush_acks`).
    pub fn ack_later(&self, taken: &str, items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        let mut all = self.lock();
        all.acks_since.get_or_insert_with(Instant::now);
        held(&mut all, taken).acks.extend(items);
    }

    /// Runs `call` with the acks waiting for queue `taken` to carry
    /// (`Delivery::acks_sent`).
    pub fn carrying_acks<T>(&self, taken: &str, call: impl FnOnce(&[Item]) -> RedisResult<T>) -> RedisResult<T> {
        let acks = self.take_acks(taken);
        let result = call(&acks);
        self.acks_sent(taken, acks, result.is_ok());
        result
    }

    /// The acks waiting for queue `taken` that its next call is to carry;
    /// [`Delivery::acks_sent`] once it ran or failed.
    pub(super) fn take_acks(&self, taken: &str) -> Vec<Item> {
        let mut all = self.lock();
        let Some(held) = all.queues.get_mut(taken) else { return Vec::new() };
        let n = held.acks.len().min(ACKS_PER_CALL);
        let acks: Vec<Item> = held.acks.drain(..n).collect();
        for item in &acks {
            add(&mut held.leaving, item);
        }
        if all.queues.values().all(|h| h.acks.is_empty()) {
            all.acks_since = None;
        }
        acks
    }

    /// Acks sent for queue `taken`, which ran if `done`. Either way they
    /// are forgotten: an `LREM` sent again after a failed call that ran it
    /// would remove an equal twin still in flight, a loss if that twin were
    /// put back or its gateway died. A failed call's queue is swept
    /// instead: an item whose ack did not run is put back, a duplicate.
    pub(super) fn acks_sent(&self, taken: &str, acks: Vec<Item>, done: bool) {
        if !acks.is_empty() {
            self.returned(taken, &acks, !done);
        }
    }

    /// Whether acks wait, and since when.
    pub fn acks_waiting_since(&self) -> Option<Instant> {
        self.lock().acks_since
    }

    /// For the lease pass of queue `taken`: if a failed take left it to be
    /// swept, the values in flight on it and not leaving (the flag
    /// cleared; set again by [`Delivery::take_failed`] if the pass fails).
    fn sweep(&self, taken: &str) -> Option<Vec<Item>> {
        let mut all = self.lock();
        let held = all.queues.get_mut(taken).filter(|h| h.sweep)?;
        held.sweep = false;
        let staying = |(item, &n): (&Item, &u32)| n.saturating_sub(held.leaving.get(item).copied().unwrap_or(0));
        let flying = held.in_flight.iter().flat_map(|e| std::iter::repeat_n(e.0.clone(), staying(e) as usize)).collect();
        if held.is_empty() {
            all.queues.remove(taken);
        }
        Some(flying)
    }

    /// The test-only stall after a take for parked calls.
    pub fn stall(&self) {
        if let Some(s) = self.stall {
            std::thread::sleep(s);
        }
    }
}

fn held<'a>(all: &'a mut State, taken: &str) -> &'a mut Held {
    if !all.queues.contains_key(taken) {
        all.queues.insert(taken.to_string(), Held::default());
    }
    all.queues.get_mut(taken).expect("just inserted")
}

/// The `LREM`s of `acks` on the taken list `taken`: one reply each.
pub(super) fn ack_cmds(taken: &str, acks: &[Item]) -> impl Iterator<Item = Cmd> {
    acks.iter().map(move |item| redis::cmd("LREM").arg(taken).arg(1).arg(&item[..]).to_owned())
}

/// `KEYS`: the taken list, the queue's list, the flag. `ARGV`: channel,
/// name, then items, newest first. Moves each item found in the taken
/// list back to the queue's front (so the oldest ends first), publishing
/// if someone waits; how many.
static REQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local n = 0
         for i = 3, #ARGV do
             if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
                 redis.call('LPUSH', KEYS[2], ARGV[i])
                 n = n + 1
             end
         end
         if n > 0 and redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
         return n",
    )
});

/// The lease pass of one queue. `KEYS`: the list, the gateways set, the
/// flag, this gateway's lease, this gateway's taken list. `ARGV`: the
/// keys' common prefix (`fm:{q:NAME}:`), this gateway's id, the lease in
/// ms, channel, name, whether to sweep this gateway's own list, then the
/// items it has in flight. Renews the lease, with this gateway in the
/// set; moves back to the queue's front, in order, the taken list of
/// every gateway without a lease, and, sweeping, every item of its own
/// list beyond those in flight (a failed take's). A dead gateway of a
/// build before the taken lists kept its items in a hash,
/// `pending:GATEWAY` (field: an id in take order); its items go back too,
/// oldest first, so that gateways can be upgraded one at a time. Other
/// gateways' keys are in the same slot (the prefix's hash tag), which a
/// script without flags may reach. The number of items put back.
static LEASE_PASS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local prefix, me = ARGV[1], ARGV[2]
         redis.call('SET', KEYS[4], '1', 'PX', ARGV[3])
         redis.call('SADD', KEYS[2], me)
         local moved = 0
         for _, gw in ipairs(redis.call('SMEMBERS', KEYS[2])) do
             if gw ~= me and redis.call('EXISTS', prefix .. 'lease:' .. gw) == 0 then
                 while redis.call('LMOVE', prefix .. 'taken:' .. gw, KEYS[1], 'RIGHT', 'LEFT') do moved = moved + 1 end
                 local old = redis.call('HGETALL', prefix .. 'pending:' .. gw)
                 local entries = {}
                 for i = 1, #old, 2 do table.insert(entries, {tonumber(old[i]), old[i + 1]}) end
                 table.sort(entries, function(a, b) return a[1] > b[1] end)
                 for _, e in ipairs(entries) do redis.call('LPUSH', KEYS[1], e[2]); moved = moved + 1 end
                 redis.call('DEL', prefix .. 'pending:' .. gw)
                 redis.call('SREM', KEYS[2], gw)
             end
         end
         if ARGV[6] == '1' then
             local flying, back = {}, {}
             for i = 7, #ARGV do flying[ARGV[i]] = (flying[ARGV[i]] or 0) + 1 end
             for _, item in ipairs(redis.call('LRANGE', KEYS[5], 0, -1)) do
                 if (flying[item] or 0) > 0 then flying[item] = flying[item] - 1 else table.insert(back, item) end
             end
             for i = #back, 1, -1 do
                 redis.call('LREM', KEYS[5], 1, back[i])
                 redis.call('LPUSH', KEYS[1], back[i])
                 moved = moved + 1
             end
         end
         if moved > 0 then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
         return moved",
    )
});

/// Sends every ack still waiting, each queue's in one pipeline: no call
/// of its queue came to carry them within [`ACK_IDLE`], or the gateway
/// stops.
pub fn flush_acks(gw: &Gateway, conn: &mut Lazy) {
    let taken_lists: Vec<String> =
        gw.delivery.lock().queues.iter().filter(|(_, h)| !h.acks.is_empty()).map(|(k, _)| k.clone()).collect();
    for taken in taken_lists {
        let result = conn.with(&gw.connector, |c| {
            gw.delivery.carrying_acks(&taken, |acks| {
                if acks.is_empty() {
                    return Ok(());
                }
                let cmds: Vec<Cmd> = ack_cmds(&taken, acks).collect();
                for reply in pipelined(c, &cmds)? {
                    reply.extract_error()?;
                }
                Ok(())
            })
        });
        if let Err(e) = result {
            warn!(error = %e, taken = %taken, "redis backend: cannot acknowledge delivered items; the lease pass will sweep them");
        }
    }
}

/// Moves taken items back to the queue's front, in their order.
pub fn requeue(conn: &mut dyn ConnectionLike, q: &Named, items: &[Item]) -> RedisResult<i64> {
    if items.is_empty() {
        return Ok(0);
    }
    let mut call = REQUEUE.key(&q.taken);
    call.key(&q.key).key(&q.flag).arg(WAKE_CHANNEL).arg(&q.name);
    for item in items.iter().rev() {
        call.arg(&item[..]);
    }
    call.invoke(conn)
}

/// Hands a taken item's reply to the server if its caller still waits,
/// then acknowledges it (with the queue's next call); else puts it back.
/// The window left: a caller that leaves after the check loses the item
/// (README).
pub fn deliver(gw: &Gateway, conn: &mut Lazy, q: &Named, ticket: u64, item: Item) {
    if gw.end.is_waiting(ticket) {
        gw.answer(ticket, super::queue::item_reply(item.clone()));
        settle(gw, conn, q, vec![item], &[]);
    } else {
        settle(gw, conn, q, Vec::new(), &[item]);
    }
}

/// Acknowledges `delivered` (with the queue's next call, in flight until
/// then) and puts back `returned` now, then forgets those.
pub fn settle(gw: &Gateway, conn: &mut Lazy, q: &Named, delivered: Vec<Item>, returned: &[Item]) {
    gw.delivery.ack_later(&q.taken, delivered);
    if returned.is_empty() {
        return;
    }
    gw.delivery.returning(&q.taken, returned);
    let result = conn.with(&gw.connector, |c| requeue(c, q, returned));
    if let Err(e) = &result {
        // What stays in the taken list is put back by the lease pass.
        warn!(error = %e, object = %q.name, "redis backend: cannot put back taken items; the lease pass will");
    }
    gw.delivery.returned(&q.taken, returned, result.is_err());
}

/// The lease thread: renews this gateway's leases and puts back what
/// dead gateways held, every [`RENEW`].
pub fn run_leases(gw: Arc<Gateway>) {
    let mut conn = Lazy::default();
    info!(gateway = %gw.delivery.gateway, lease_ms = LEASE.as_millis() as u64, "redis backend: gateway id");
    while !gw.waiters.stopped() {
        let started = Instant::now();
        for q in gw.objects.all().iter().filter(|o| matches!(o.kind, ObjectKind::Queue { .. })) {
            let sweep = gw.delivery.sweep(&q.taken);
            let result: RedisResult<i64> = conn.with(&gw.connector, |c| {
                let mut call = LEASE_PASS.key(&q.key);
                call.key(&q.gateways).key(&q.flag).key(&q.lease).key(&q.taken);
                call.arg(&q.prefix).arg(&gw.delivery.gateway).arg(LEASE.as_millis() as u64);
                call.arg(WAKE_CHANNEL).arg(&q.name).arg(if sweep.is_some() { "1" } else { "0" });
                for item in sweep.iter().flatten() {
                    call.arg(&item[..]);
                }
                call.invoke(c)
            });
            match result {
                Ok(n) => {
                    q.leased.set(started, LEASE - RENEW);
                    if n > 0 {
                        info!(object = %q.name, items = n, "redis backend: put back items of a dead gateway or a failed take");
                    }
                }
                Err(e) => {
                    if sweep.is_some() {
                        gw.delivery.take_failed(&q.taken);
                    }
                    warn!(error = %e, object = %q.name, "redis backend: lease pass failed; retrying");
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "fm:{q:t}:taken:gw";

    fn items(values: &[&str]) -> Vec<Item> {
        values.iter().map(|v| Item::from(v.as_bytes())).collect()
    }

    fn sorted(mut v: Vec<Item>) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = v.drain(..).map(|i| i.to_vec()).collect();
        out.sort();
        out
    }

    #[test]
    fn an_acknowledged_item_is_forgotten_and_nothing_is_swept() {
        let d = Delivery::new();
        d.took(Q, &items(&["a"]));
        d.ack_later(Q, items(&["a"]));
        assert!(d.acks_waiting_since().is_some());
        let acks = d.take_acks(Q);
        assert_eq!(sorted(acks.clone()), vec![b"a".to_vec()]);
        assert!(d.acks_waiting_since().is_none());
        d.acks_sent(Q, acks, true);
        assert!(d.sweep(Q).is_none());
        assert!(d.lock().queues.is_empty(), "nothing is kept for a queue with nothing in flight");
    }

    #[test]
    fn twins_are_counted_and_a_failed_ack_is_not_sent_again_but_swept() {
        let d = Delivery::new();
        d.took(Q, &items(&["a", "a", "b"]));
        d.ack_later(Q, items(&["a"]));
        let acks = d.take_acks(Q);
        d.acks_sent(Q, acks, false);
        // Not waiting again: a second LREM could remove the twin in flight.
        assert!(d.take_acks(Q).is_empty());
        // The sweep keeps what is still in flight: one `a` and the `b`.
        assert_eq!(sorted(d.sweep(Q).expect("a failed call marks the queue")), vec![b"a".to_vec(), b"b".to_vec()]);
        assert!(d.sweep(Q).is_none(), "one sweep per failure");
    }

    #[test]
    fn a_failed_take_or_put_back_marks_the_queue_for_a_sweep() {
        let d = Delivery::new();
        d.take_failed(Q);
        assert_eq!(d.sweep(Q).expect("marked").len(), 0);
        d.took(Q, &items(&["x", "y"]));
        d.returned(Q, &items(&["x"]), false);
        assert!(d.sweep(Q).is_none());
        d.returned(Q, &items(&["y"]), true);
        assert_eq!(d.sweep(Q).expect("marked").len(), 0, "a failed put-back is left to the sweep");
    }

    #[test]
    fn an_item_whose_ack_or_put_back_is_under_way_is_not_counted_in_flight_by_a_sweep() {
        let d = Delivery::new();
        d.took(Q, &items(&["a", "a", "b", "c"]));
        d.ack_later(Q, items(&["a"]));
        let acks = d.take_acks(Q);
        d.returning(Q, &items(&["b"]));
        d.take_failed(Q);
        // Only the `a` not being acknowledged and the `c` stay.
        assert_eq!(sorted(d.sweep(Q).expect("marked")), vec![b"a".to_vec(), b"c".to_vec()]);
        d.acks_sent(Q, acks, true);
        d.returned(Q, &items(&["b"]), false);
        d.take_failed(Q);
        assert_eq!(sorted(d.sweep(Q).expect("marked")), vec![b"a".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn at_most_acks_per_call_ride_on_one_call() {
        let d = Delivery::new();
        let many: Vec<Item> = (0..ACKS_PER_CALL + 3).map(|i| Item::from(i.to_string().as_bytes())).collect();
        d.took(Q, &many);
        d.ack_later(Q, many);
        assert_eq!(d.take_acks(Q).len(), ACKS_PER_CALL);
        assert!(d.acks_waiting_since().is_some());
        assert_eq!(d.take_acks(Q).len(), 3);
    }
}
