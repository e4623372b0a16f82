//! What the server tells an operator (issue 17): counts of what it served,
//! who is connected, the slow calls, and a snapshot of all of it with the
//! objects' depths, for `fastmanager stat` (asked over the manager
//! protocol itself, as the control request [`STAT_REQUEST`]) and for the
//! Prometheus endpoint (`metrics`).
//!
//! Counting is always on: each worker adds to its own counters
//! (`counters`), so it costs a few uncontended atomic adds and two clock
//! readings per request (benches/metrics_cost.py measures it).

pub mod clients;
pub mod counters;
pub mod metrics;
pub mod slowlog;
pub mod snapshot;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::objects::ObjectId;
use clients::Clients;
use counters::{MethodNames, Totals, WorkerCounters};
use slowlog::SlowLog;

/// The control request `fastmanager stat` and `fastmanager.stat()` send:
/// `(None, 'fastmanager_stat', (), {})`, answered with the snapshot as a
/// JSON string. Stock clients never send it; CPython's server answers it
/// with its usual "unrecognized" error.
pub const STAT_REQUEST: &str = "fastmanager_stat";

pub struct Stats {
    pub methods: MethodNames,
    workers: Box<[WorkerCounters]>,
    pub clients: Clients,
    pub slow: SlowLog,
    pub started: Instant,
    rates: Mutex<Rates>,
    /// The `--register` names (fixed once the server is bound), so a slow
    /// call names its object as the operator does.
    names: FxHashMap<ObjectId, String>,
}

/// Requests per second by method, from the last two samples.
struct Rates {
    at: Instant,
    last: Vec<u64>,
    per_sec: Vec<f64>,
}

impl Stats {
    pub fn new<'a>(workers: usize, slow_call: Option<Duration>, named: impl Iterator<Item = (&'a str, ObjectId)>) -> Stats {
        let methods = MethodNames::new();
        let slots = methods.names().len();
        Stats {
            workers: (0..workers).map(|_| WorkerCounters::new(&methods)).collect(),
            methods,
            clients: Clients::default(),
            slow: SlowLog::new(slow_call),
            started: Instant::now(),
            rates: Mutex::new(Rates { at: Instant::now(), last: vec![0; slots], per_sec: vec![0.0; slots] }),
            names: named.map(|(n, id)| (id, n.to_string())).collect(),
        }
    }

    /// How logs and `stat` name object `id`: its `--register` name, or
    /// its ident.
    pub fn object_name(&self, id: ObjectId) -> String {
        self.names.get(&id).cloned().unwrap_or_else(|| crate::objects::ObjectTable::ident(id))
    }

    /// Worker `index`'s own counters.
    pub fn worker(&self, index: usize) -> &WorkerCounters {
        &self.workers[index]
    }

    pub fn totals(&self) -> Totals {
        Totals::sum(&self.workers)
    }

    /// Worker 0 samples about once a second: the requests per second of
    /// each method since the previous sample.
    pub fn sample(&self, now: Instant) {
        let totals = self.totals();
        let mut r = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        let secs = now.saturating_duration_since(r.at).as_secs_f64();
        if secs < 0.5 {
            return;
        }
        let per_sec = totals.requests.iter().zip(&r.last).map(|(&n, &was)| n.saturating_sub(was) as f64 / secs).collect();
        r.per_sec = per_sec;
        r.last = totals.requests;
        r.at = now;
    }

    /// Requests per second by method slot, as last sampled.
    pub fn rates(&self) -> Vec<f64> {
        self.rates.lock().unwrap_or_else(|e| e.into_inner()).per_sec.clone()
    }
}
