//! Where named objects live. Without `--backend` they live in this
//! process (the embedded object table, unchanged). With `--backend
//! redis://HOST:PORT[,HOST:PORT...]` the server is a stateless gateway:
//! its `--register`ed objects live in a Redis Cluster (or one Redis
//! server), so every gateway started with the same registrations serves
//! the same objects (issue 18).
//!
//! The gateway plugs into the server as its host (`server::host`): a
//! named object is a hosted typeid, every call on it a `HostRequest`
//! that parks the caller's connection, and [`redis`] answers it with a
//! pickled reply message. A call's Redis round trip runs on the worker
//! that read it (`redis/inline.rs`) or on the gateway's request threads;
//! a blocked `get` holds neither a thread nor a Redis connection.
//!
//! Served: [`SERVED`]. Anything else (`Condition`, `Barrier`, `Array`) is
//! refused at start-up, naming the backend and the type, rather than
//! quietly kept in this process (which would give each gateway its own,
//! unshared object).

mod probe;
pub mod redis;

use std::fmt;

use anyhow::{bail, Result};

use crate::registry::{ExtraTypeid, Registration, SYNC_MANAGER_TYPEIDS};

/// The `--register` kinds a gateway serves (`redis::ObjectKind::of`).
pub const SERVED: &str =
    "Queue, JoinableQueue, dict, list, Namespace, Value, Lock, RLock, Semaphore, BoundedSemaphore, Event";

/// A gateway's `--busy-poll-us` unless given (`server/worker/busy_poll.rs`).
/// Each of a gateway's calls waits on a round trip to Redis; a stock
/// client's next request comes a few tens of microseconds after its
/// reply, and a worker that slept meanwhile adds a wake-up to every call.
/// 100 µs covers that gap on a loaded machine: through one gateway at one
/// client it gave 1.10x-1.16x redis-py's calls/s where 0 gave 0.96x-1.02x
/// (README, "Redis Cluster backend", *Busy-polling*), for ~18 µs more of
/// the gateway's CPU per call. The embedded server keeps 0: there it
/// bought 26-38% more round trips at one client for 1.9x the server's CPU
/// per call.
pub const GATEWAY_BUSY_POLL: std::time::Duration = std::time::Duration::from_micros(100);

/// A parsed `--backend` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendUrl {
    /// Seed nodes of a Redis Cluster, or the one node of a single server.
    Redis(Vec<String>),
}

impl fmt::Display for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendUrl::Redis(nodes) => write!(f, "redis://{}", nodes.join(",")),
        }
    }
}

impl std::str::FromStr for BackendUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<BackendUrl, String> {
        let Some(rest) = s.strip_prefix("redis://") else {
            return Err(format!("unknown backend {s:?}: expected redis://HOST:PORT[,HOST:PORT...]"));
        };
        let mut nodes = Vec::new();
        for node in rest.split(',') {
            let Some((host, port)) = node.rsplit_once(':') else {
                return Err(format!("backend node {node:?} is not HOST:PORT"));
            };
            if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("backend node {node:?} is not HOST:PORT"));
            }
            nodes.push(node.to_string());
        }
        Ok(BackendUrl::Redis(nodes))
    }
}

/// Checks the backend's nodes and the registrations, and plans the
/// gateway; [`redis::Plan::start`] then serves it.
pub fn open(url: &BackendUrl, registrations: &[Registration], replicas: Option<redis::replicas::Replicas>) -> Result<redis::Plan> {
    let BackendUrl::Redis(nodes) = url;
    let mut cluster = false;
    for node in nodes {
        cluster |= probe::check_node(node)?;
    }
    if registrations.is_empty() {
        bail!(
            "the redis backend ({url}) serves only --register'ed objects ({SERVED}); \
             create()d objects would stay in this process, unshared, so the server does not start"
        );
    }
    let unserved: Vec<&str> = registrations
        .iter()
        .map(|r| r.kind.typeid)
        .filter(|kind| redis::ObjectKind::of(kind).is_none())
        .collect();
    if !unserved.is_empty() {
        bail!(
            "the redis backend ({url}) does not serve {} (served: {SERVED}); \
             run without --backend to keep objects in this process",
            unserved.join(", ")
        );
    }
    redis::Gateway::plan(url.to_string(), nodes.clone(), cluster, registrations, replicas)
}

/// The typeids a gateway answers `create` for: its named objects, and
/// SyncManager's own: through a gateway, `create` of one of them would make
/// an object in this gateway only, so the gateway answers it with an error
/// naming the backend instead.
pub fn hosted_typeids(registrations: &[Registration]) -> Vec<ExtraTypeid> {
    let names = registrations.iter().map(|r| r.name.as_str());
    names
        .chain(SYNC_MANAGER_TYPEIDS.iter().copied())
        // Named objects expose public names only, as `--register` does.
        .map(|t| ExtraTypeid::Hosted { typeid: t.to_string(), public_only: true })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::BackendUrl;

    #[test]
    fn parses_seed_lists_and_rejects_the_rest() {
        let url: BackendUrl = "redis://127.0.0.1:7101,h:7102".parse().unwrap();
        assert_eq!(url, BackendUrl::Redis(vec!["127.0.0.1:7101".into(), "h:7102".into()]));
        assert_eq!(url.to_string(), "redis://127.0.0.1:7101,h:7102");
        for bad in ["redis://", "redis://h", "redis://:1", "redis://h:0", "redis://h:x", "rediss://h:1", "h:1"] {
            assert!(bad.parse::<BackendUrl>().is_err(), "{bad}");
        }
    }
}
