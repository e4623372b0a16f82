//! `--metrics-address HOST:PORT`: the snapshot's figures as Prometheus
//! counters and gauges at `GET /metrics`, on a thread of its own (a scrape
//! never runs on a worker). The exposition format is written by
//! `prometheus-client` (OpenMetrics text); the HTTP side by `tiny_http`.
//! Each scrape takes one [`Snapshot`] and encodes it through a collector,
//! so the figures are those `fastmanager stat` shows, read at one moment.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tracing::{info, warn};

use super::counters::LATENCY_BOUNDS_US;
use super::snapshot::Snapshot;
use crate::server::Shared;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds the endpoint (with the server, so a taken port fails the start).
pub fn bind(address: SocketAddr) -> std::io::Result<tiny_http::Server> {
    tiny_http::Server::http(address).map_err(|e| std::io::Error::other(format!("cannot listen on {address} for metrics: {e}")))
}

/// Serves the endpoint until the server stops.
pub(crate) fn serve(server: tiny_http::Server, shared: Arc<Shared>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let bound = server.server_addr().to_ip().map_or_else(|| "?".to_string(), |a| a.to_string());
    info!(address = %bound, "metrics at http://{bound}/metrics");
    std::thread::Builder::new().name("fm-metrics".into()).spawn(move || {
        while !shared.is_stopping() {
            let request = match server.recv_timeout(Duration::from_millis(250)) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    warn!(error = %e, "metrics endpoint failed");
                    return;
                }
            };
            let response = match (request.method(), request.url()) {
                (tiny_http::Method::Get, "/metrics") => {
                    let body = encode(Snapshot::take(&shared));
                    let header = tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE).expect("a valid header");
                    tiny_http::Response::from_string(body).with_header(header)
                }
                _ => tiny_http::Response::from_string("fastmanager: metrics are at GET /metrics\n").with_status_code(404),
            };
            let _ = request.respond(response);
        }
    })
}

/// The snapshot in the OpenMetrics text format.
pub fn encode(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshot)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// One scrape's figures (collectors are owned by their registry).
#[derive(Debug)]
struct SnapshotCollector(Snapshot);

type Labels = Vec<(&'static str, String)>;

/// Writes one metric or one labelled family through the encoder.
struct Out<'e, 'a> {
    enc: &'e mut DescriptorEncoder<'a>,
}

impl Out<'_, '_> {
    fn one(&mut self, name: &str, help: &str, unit: Option<Unit>, kind: MetricType, v: f64) -> std::fmt::Result {
        let mut m = self.enc.encode_descriptor(name, help, unit.as_ref(), kind)?;
        match kind {
            MetricType::Counter => m.encode_counter::<NoLabelSet, _, f64>(&v, None),
            _ => m.encode_gauge(&v),
        }
    }

    fn family(&mut self, name: &str, help: &str, kind: MetricType, rows: &[(Labels, f64)]) -> std::fmt::Result {
        if rows.is_empty() {
            return Ok(());
        }
        let mut m = self.enc.encode_descriptor(name, help, None, kind)?;
        for (labels, v) in rows {
            let mut f = m.encode_family(labels)?;
            match kind {
                MetricType::Counter => f.encode_counter::<NoLabelSet, _, f64>(v, None)?,
                _ => f.encode_gauge(v)?,
            }
        }
        Ok(())
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        use MetricType::{Counter, Gauge};
        let s = &self.0;
        let c = &s.connections;
        let r = &s.requests;
        let mut o = Out { enc: &mut enc };
        o.family("fastmanager_build_info", "The server's version (always 1).", Gauge, &[(vec![("version", s.version.to_string())], 1.0)])?;
        o.one("fastmanager_uptime", "Time since the server started.", Some(Unit::Seconds), Gauge, s.uptime_s)?;
        o.one("fastmanager_threads", "Worker threads.", None, Gauge, s.threads as f64)?;
        o.one("fastmanager_connections", "Open client connections.", None, Gauge, c.open as f64)?;
        o.one("fastmanager_connections_authenticated", "Open connections past the authkey handshake.", None, Gauge, c.authenticated as f64)?;
        o.one("fastmanager_connections_waiting", "Connections whose call waits (blocked get, acquire, wait, join).", None, Gauge, c.waiting as f64)?;
        o.one("fastmanager_connections_accepted", "Connections accepted.", None, Counter, c.accepted_total as f64)?;
        o.one("fastmanager_connections_refused", "Connections closed at once over --max-connections.", None, Counter, c.refused_total as f64)?;
        o.one("fastmanager_auth_failures", "Handshakes that failed the authkey check.", None, Counter, c.auth_failed_total as f64)?;
        let hosts: Vec<(Labels, f64)> = c.by_host.iter().map(|(h, &n)| (vec![("host", h.clone())], n as f64)).collect();
        o.family("fastmanager_connections_by_host", "Open connections by peer address.", Gauge, &hosts)?;
        let methods: Vec<(Labels, f64)> = r.by_method.iter().map(|(m, n)| (vec![("method", m.clone())], n.total as f64)).collect();
        o.family("fastmanager_requests", "Requests served, by method.", Counter, &methods)?;
        o.one("fastmanager_request_errors", "Requests answered with an exception.", None, Counter, r.errors_total as f64)?;
        o.one("fastmanager_received", "Request bytes received.", Some(Unit::Bytes), Counter, r.bytes_received_total as f64)?;
        o.one("fastmanager_sent", "Reply bytes sent.", Some(Unit::Bytes), Counter, r.bytes_sent_total as f64)?;
        let buckets: Vec<(f64, u64)> = r
            .latency
            .buckets
            .iter()
            .enumerate()
            .map(|(i, &(_, n))| (LATENCY_BOUNDS_US.get(i).map_or(f64::INFINITY, |&b| b as f64 / 1e6), n))
            .collect();
        let mut h = o.enc.encode_descriptor(
            "fastmanager_request_duration",
            "Server time per request (a parked call's wait excluded).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        h.encode_histogram::<NoLabelSet>(r.latency.mean_us * r.latency.count as f64 / 1e6, r.latency.count, &buckets, None)?;
        let types: Vec<(Labels, f64)> = s.objects.by_type.iter().map(|(t, &n)| (vec![("type", t.clone())], n as f64)).collect();
        o.family("fastmanager_objects", "Shared objects, by type.", Gauge, &types)?;
        let named = |f: &dyn Fn(&super::snapshot::NamedObject) -> Option<f64>| -> Vec<(Labels, f64)> {
            s.named.iter().filter_map(|n| f(n).map(|v| (vec![("name", n.name.clone()), ("type", n.typeid.clone())], v))).collect()
        };
        let queue = |n: &super::snapshot::NamedObject| n.unfinished.is_some();
        o.family("fastmanager_queue_items", "Items in each named queue.", Gauge, &named(&|n| n.len.filter(|_| queue(n)).map(|v| v as f64)))?;
        o.family("fastmanager_queue_unfinished_tasks", "Tasks put and not yet task_done() in each named queue.", Gauge, &named(&|n| n.unfinished.map(|v| v as f64)))?;
        o.family("fastmanager_object_length", "Entries of each named dict, list and Namespace.", Gauge, &named(&|n| n.len.filter(|_| !queue(n)).map(|v| v as f64)))?;
        o.family("fastmanager_object_set", "Whether each named lock is held or event set (1) or not (0).", Gauge, &named(&|n| n.set.map(|v| f64::from(u8::from(v)))))?;
        o.family("fastmanager_object_value", "Free units of each named semaphore; parties waiting at each named barrier.", Gauge, &named(&|n| n.value.map(|v| v as f64)))?;
        let blocked: Vec<(Labels, f64)> = s.blocked.by_object.iter().map(|b| (vec![("object", b.object.clone()), ("type", b.typeid.clone())], b.waiting as f64)).collect();
        o.one("fastmanager_waiting_calls", "Calls waiting on an object now.", None, Gauge, s.blocked.total as f64)?;
        o.family("fastmanager_waiting_calls_by_object", "Calls waiting, by object.", Gauge, &blocked)?;
        o.one("fastmanager_stored", "Bytes the objects store (upper bound; what the caps count).", Some(Unit::Bytes), Gauge, s.memory.stored_bytes as f64)?;
        o.one("fastmanager_max_total", "--max-total-bytes.", Some(Unit::Bytes), Gauge, s.memory.max_total_bytes as f64)?;
        if let Some(rss) = s.memory.rss_bytes {
            o.one("fastmanager_resident_memory", "Resident memory of the server process.", Some(Unit::Bytes), Gauge, rss as f64)?;
        }
        o.one("fastmanager_slow_calls", "Calls slower than --slow-call-us.", None, Counter, s.slow_calls.total as f64)?;
        Ok(())
    }
}
