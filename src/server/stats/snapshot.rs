//! One picture of the server, as `fastmanager stat` prints it and
//! `fastmanager.stat()` returns it (JSON; field names are the interface).
//! The objects' part is read under the core lock, in one pass over the
//! object table.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::objects::{ObjectId, ObjectTable};

use super::counters::LATENCY_BOUNDS_US;
use super::slowlog::SlowCall;
use crate::server::Shared;

#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub version: &'static str,
    pub pid: u32,
    pub address: String,
    pub uptime_s: f64,
    pub threads: usize,
    pub connections: Connections,
    pub requests: Requests,
    pub objects: Objects,
    /// Every `--register` name, with its object's depth.
    pub named: Vec<NamedObject>,
    pub blocked: Blocked,
    pub memory: Memory,
    pub slow_calls: SlowCalls,
}

#[derive(Debug, Serialize)]
pub struct Connections {
    pub open: usize,
    pub authenticated: usize,
    /// Proxies' own connections (past `accept_connection`).
    pub serving: usize,
    /// Connections whose call waits (a blocked `get`, `acquire`, ...).
    pub waiting: usize,
    pub accepted_total: u64,
    pub refused_total: u64,
    pub auth_failed_total: u64,
    pub by_host: BTreeMap<String, usize>,
    /// Open connections by client process, where the process is known.
    pub by_process: Vec<Process>,
}

#[derive(Debug, Serialize)]
pub struct Process {
    pub pid: i32,
    pub host: String,
    pub connections: usize,
}

#[derive(Debug, Serialize)]
pub struct Requests {
    pub total: u64,
    pub per_sec: f64,
    pub errors_total: u64,
    pub bytes_received_total: u64,
    pub bytes_sent_total: u64,
    /// Methods called at least once: total and per second (last second).
    pub by_method: BTreeMap<String, MethodCount>,
    pub latency: Latency,
}

#[derive(Debug, Serialize)]
pub struct MethodCount {
    pub total: u64,
    pub per_sec: f64,
}

/// The server's time per request (read to reply sent or call parked; a
/// parked call's wait is not in it).
#[derive(Debug, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    /// Upper bounds of the buckets holding the median and 99th percentile
    /// (`null` past the last bound).
    pub p50_us_at_most: Option<u64>,
    pub p99_us_at_most: Option<u64>,
    /// `(upper bound in µs or null for +Inf, requests in that bucket)`.
    pub buckets: Vec<(Option<u64>, u64)>,
}

#[derive(Debug, Serialize)]
pub struct Objects {
    pub total: usize,
    /// Items in every queue, named or created.
    pub queued_items: u64,
    pub by_type: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
pub struct NamedObject {
    pub name: String,
    pub typeid: String,
    pub ident: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub len: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unfinished: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    /// Calls waiting on it now.
    pub waiting: usize,
}

#[derive(Debug, Serialize)]
pub struct Blocked {
    pub total: usize,
    /// Waiting calls by object: its name (or typeid and ident), method
    /// and count.
    pub by_object: Vec<BlockedOn>,
}

#[derive(Debug, Serialize)]
pub struct BlockedOn {
    pub object: String,
    pub typeid: String,
    pub waiting: usize,
}

#[derive(Debug, Serialize)]
pub struct Memory {
    /// An upper bound of the bytes the objects store (what the caps count).
    pub stored_bytes: usize,
    pub max_object_bytes: usize,
    pub max_total_bytes: usize,
    pub rss_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct SlowCalls {
    pub threshold_us: Option<u64>,
    pub total: u64,
    /// The last (at most 128), newest first.
    pub recent: Vec<SlowCall>,
}

/// This process's resident memory, from /proc.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

fn latency(counts: &[u64], sum_ns: u64) -> Latency {
    let count: u64 = counts.iter().sum();
    let bound = |i: usize| LATENCY_BOUNDS_US.get(i).copied();
    let quantile = |q: f64| {
        let want = (count as f64 * q).ceil() as u64;
        let mut seen = 0;
        counts.iter().position(|&c| {
            seen += c;
            seen >= want.max(1)
        })
    };
    Latency {
        count,
        mean_us: if count == 0 { 0.0 } else { sum_ns as f64 / count as f64 / 1000.0 },
        p50_us_at_most: quantile(0.5).and_then(bound),
        p99_us_at_most: quantile(0.99).and_then(bound),
        buckets: counts.iter().enumerate().map(|(i, &c)| (bound(i), c)).collect(),
    }
}


impl Snapshot {
    pub(crate) fn take(shared: &Shared) -> Snapshot {
        let stats = &shared.stats;
        let totals = stats.totals();
        let rates = stats.rates();
        let names = stats.methods.names();
        let by_method = names
            .iter()
            .enumerate()
            .filter(|&(i, _)| totals.requests[i] > 0)
            .map(|(i, &n)| (n.to_string(), MethodCount { total: totals.requests[i], per_sec: rates[i] }))
            .collect();
        let clients = stats.clients.all();
        let mut by_host = BTreeMap::new();
        let mut processes: BTreeMap<(i32, String), usize> = BTreeMap::new();
        for (_, c) in &clients {
            *by_host.entry(c.host.clone()).or_insert(0) += 1;
            if let Some(pid) = c.pid {
                *processes.entry((pid, c.host.clone())).or_insert(0) += 1;
            }
        }
        let core = shared.lock();
        let state = &core.state;
        let mut by_type = BTreeMap::new();
        let mut queued_items = 0;
        for id in state.objects.ids() {
            if let Some(e) = state.objects.get(id) {
                *by_type.entry(e.object.info().typeid.to_string()).or_insert(0) += 1;
                if let crate::objects::SharedObject::Queue(q) = &e.object {
                    queued_items += q.qsize() as u64;
                }
            }
        }
        let mut waiting: BTreeMap<ObjectId, usize> = BTreeMap::new();
        for p in state.blocked.parked_calls() {
            *waiting.entry(p.object).or_insert(0) += 1;
        }
        let name_of: BTreeMap<ObjectId, &str> = state.registry.named().map(|(n, id)| (id, n)).collect();
        let mut named: Vec<NamedObject> = state
            .registry
            .named()
            .filter_map(|(name, id)| {
                let e = state.objects.get(id)?;
                let d = e.object.depth();
                Some(NamedObject {
                    name: name.to_string(),
                    typeid: e.object.info().typeid.to_string(),
                    ident: ObjectTable::ident(id),
                    len: d.len,
                    unfinished: d.unfinished,
                    set: d.set,
                    holder: d.holder.map(|c| stats.clients.describe(c)),
                    value: d.value,
                    waiting: waiting.get(&id).copied().unwrap_or(0),
                })
            })
            .collect();
        named.sort_by(|a, b| a.name.cmp(&b.name));
        let by_object = waiting
            .iter()
            .map(|(&id, &n)| BlockedOn {
                object: name_of.get(&id).map_or_else(|| ObjectTable::ident(id), |n| n.to_string()),
                typeid: state.objects.get(id).map_or_else(String::new, |e| e.object.info().typeid.to_string()),
                waiting: n,
            })
            .collect();
        let (stored_bytes, max_object_bytes, max_total_bytes) = core.memory.usage();
        let waiting_clients = state.blocked.waiting_clients();
        let objects = Objects { total: by_type.values().sum(), queued_items, by_type };
        let address = state.address.to_string();
        drop(core);
        Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            address,
            uptime_s: stats.started.elapsed().as_secs_f64(),
            threads: shared.mailboxes.len(),
            connections: Connections {
                open: clients.len(),
                authenticated: clients.iter().filter(|(_, c)| c.authenticated).count(),
                serving: clients.iter().filter(|(_, c)| c.serving).count(),
                waiting: waiting_clients,
                accepted_total: totals.accepted,
                refused_total: totals.refused,
                auth_failed_total: totals.auth_failed,
                by_host,
                by_process: processes.into_iter().map(|((pid, host), connections)| Process { pid, host, connections }).collect(),
            },
            requests: Requests {
                total: totals.total_requests(),
                per_sec: rates.iter().sum(),
                errors_total: totals.errors,
                bytes_received_total: totals.bytes_received,
                bytes_sent_total: totals.bytes_sent,
                by_method,
                latency: latency(&totals.latency, totals.latency_sum_ns),
            },
            objects,
            named,
            blocked: Blocked { total: waiting.values().sum(), by_object },
            memory: Memory { stored_bytes, max_object_bytes, max_total_bytes, rss_bytes: rss_bytes() },
            slow_calls: SlowCalls {
                threshold_us: stats.slow.threshold.map(|t| t.as_micros() as u64),
                total: totals.slow_calls,
                recent: stats.slow.recent(),
            },
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a snapshot is plain data")
    }
}
