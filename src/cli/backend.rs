//! The options of `--backend` gateways (issue 18), beside `--backend`
//! itself.

use clap::Args;

use crate::backend::redis::replicas::Replicas;

#[derive(Args)]
pub struct BackendOptions {
    /// With --backend: after each write a client is told is done (put,
    /// task_done, a dict, Namespace or Value change), wait until N
    /// replicas have it (Redis WAIT); when fewer do in time, the call
    /// raises RuntimeError (the write is on the master, and may be lost at
    /// a failover). Off by default: Redis replicates asynchronously.
    #[arg(long, value_name = "N", requires = "backend", value_parser = clap::value_parser!(u16).range(1..))]
    backend_wait_replicas: Option<u16>,

    /// With --backend-wait-replicas: how long a write waits for its
    /// replicas, in milliseconds (it holds one of the gateway's request
    /// threads meanwhile).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 1000,
        requires = "backend_wait_replicas",
        value_parser = clap::value_parser!(u64).range(1..=60_000)
    )]
    backend_wait_timeout_ms: u64,
}

impl BackendOptions {
    pub fn replicas(&self) -> Option<Replicas> {
        self.backend_wait_replicas.map(|count| Replicas { count, timeout_ms: self.backend_wait_timeout_ms })
    }
}
