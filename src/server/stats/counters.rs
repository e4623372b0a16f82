//! The counts each worker keeps of what it served. A worker writes only
//! its own block, on cache lines no other thread writes, so counting costs
//! no contention; a reader (`stat`, `/metrics`) sums every worker's block.
//! With one writer per counter an add is a relaxed load and store (no
//! locked instruction): readers may see a count a moment late, never a
//! torn or lost one.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use rustc_hash::FxHashMap;

/// The request latency histogram's upper bounds, in microseconds (the
/// last bucket, beyond them, is `+Inf`). A round trip on loopback costs
/// ~20 µs, so the server's own share lives in the first buckets; the rest
/// catch a stalled step.
pub const LATENCY_BOUNDS_US: [u64; 14] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 100_000];

/// Every method name a request can carry that the server knows: control
/// requests, then every exposed method of every type. Others (a hosted
/// type's own methods, names no type exposes) count as `other`.
pub struct MethodNames {
    names: Vec<&'static str>,
    index: FxHashMap<&'static str, usize>,
}

const CONTROL: &[&str] = &[
    "accept_connection", "create", "incref", "decref", "dummy", "shutdown",
    "number_of_objects", "debug_info", "get_methods", super::STAT_REQUEST,
];

impl MethodNames {
    pub fn new() -> MethodNames {
        let mut names: Vec<&'static str> = Vec::new();
        let all = CONTROL.iter().copied().chain(crate::objects::TYPES.iter().flat_map(|t| t.exposed.iter().copied()));
        let mut index = FxHashMap::default();
        for name in all {
            if !index.contains_key(name) {
                index.insert(name, names.len());
                names.push(name);
            }
        }
        names.push("other");
        MethodNames { names, index }
    }

    /// The slot of `method` (the last one for a name no type knows).
    pub fn slot(&self, method: &str) -> usize {
        self.index.get(method).copied().unwrap_or_else(|| self.other())
    }

    /// The slot of requests that could not be read, and of unknown names.
    pub fn other(&self) -> usize {
        self.names.len() - 1
    }

    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

/// One worker's counts. Aligned so two workers' blocks share no cache line.
#[repr(align(128))]
pub struct WorkerCounters {
    /// Requests by method slot ([`MethodNames`]).
    pub requests: Box<[AtomicU64]>,
    /// Requests answered with an exception (a `#ERROR` or `#TRACEBACK`).
    pub errors: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Server time of requests by [`LATENCY_BOUNDS_US`] bucket.
    pub latency: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    pub latency_sum_ns: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub auth_ok: AtomicU64,
    pub auth_failed: AtomicU64,
    pub slow_calls: AtomicU64,
}

impl WorkerCounters {
    pub fn new(methods: &MethodNames) -> WorkerCounters {
        WorkerCounters {
            requests: methods.names().iter().map(|_| AtomicU64::new(0)).collect(),
            errors: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            latency: Default::default(),
            latency_sum_ns: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            auth_ok: AtomicU64::new(0),
            auth_failed: AtomicU64::new(0),
            slow_calls: AtomicU64::new(0),
        }
    }

    /// One request of method slot `slot` that took `took` of server time.
    /// Only the worker that owns this block calls it (as every add).
    pub fn request(&self, slot: usize, bytes: usize, took: Duration) {
        Self::add(&self.requests[slot], 1);
        Self::add(&self.bytes_received, bytes as u64);
        let ns = took.as_nanos();
        let bucket = LATENCY_BOUNDS_US.iter().position(|&b| ns <= u128::from(b) * 1000).unwrap_or(LATENCY_BOUNDS_US.len());
        Self::add(&self.latency[bucket], 1);
        Self::add(&self.latency_sum_ns, took.as_nanos() as u64);
    }

    /// Adds `n` to one of this block's counters; its owning worker is its
    /// only writer.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }
}

/// Every worker's counts added up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub requests: Vec<u64>,
    pub errors: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub latency: Vec<u64>,
    pub latency_sum_ns: u64,
    pub accepted: u64,
    pub refused: u64,
    pub auth_ok: u64,
    pub auth_failed: u64,
    pub slow_calls: u64,
}

impl Totals {
    pub fn sum(workers: &[WorkerCounters]) -> Totals {
        let load = |f: &dyn Fn(&WorkerCounters) -> &AtomicU64| workers.iter().map(|w| f(w).load(Relaxed)).sum::<u64>();
        let slots = workers.first().map_or(0, |w| w.requests.len());
        Totals {
            requests: (0..slots).map(|i| workers.iter().map(|w| w.requests[i].load(Relaxed)).sum()).collect(),
            errors: load(&|w| &w.errors),
            bytes_received: load(&|w| &w.bytes_received),
            bytes_sent: load(&|w| &w.bytes_sent),
            latency: (0..=LATENCY_BOUNDS_US.len()).map(|i| workers.iter().map(|w| w.latency[i].load(Relaxed)).sum()).collect(),
            latency_sum_ns: load(&|w| &w.latency_sum_ns),
            accepted: load(&|w| &w.accepted),
            refused: load(&|w| &w.refused),
            auth_ok: load(&|w| &w.auth_ok),
            auth_failed: load(&|w| &w.auth_failed),
            slow_calls: load(&|w| &w.slow_calls),
        }
    }

    pub fn total_requests(&self) -> u64 {
        self.requests.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_upper_bounds() {
        let names = MethodNames::new();
        let c = WorkerCounters::new(&names);
        c.request(names.slot("put"), 10, Duration::from_nanos(500));
        c.request(names.slot("put"), 10, Duration::from_micros(1));
        c.request(names.slot("get"), 10, Duration::from_micros(7));
        c.request(names.slot("no_such_method"), 10, Duration::from_secs(1));
        let t = Totals::sum(std::slice::from_ref(&c));
        assert_eq!(t.latency[0], 2, "500 ns and 1 µs are both <= 1 µs");
        assert_eq!(t.latency[3], 1, "7 µs is in (5, 10]");
        assert_eq!(t.latency[LATENCY_BOUNDS_US.len()], 1, "1 s is beyond the last bound");
        assert_eq!(t.requests[names.slot("put")], 2);
        assert_eq!(t.requests[names.names().len() - 1], 1, "an unknown method counts as other");
        assert_eq!(t.bytes_received, 40);
    }
}
