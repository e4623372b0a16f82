//! The server's options, shared by `fastmanager serve` and the Python
//! package's managers (which pass them as flags: `embedded_config`), so
//! both take the same options, checked the same way.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Parser};

use crate::address::ListenAddress;
use crate::pickle::DecodeLimits;
use crate::server::{Config, Limits};

#[derive(Args)]
pub struct ServerOptions {
    /// Largest request frame accepted from an authenticated client.
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    max_frame_bytes: usize,

    /// Refuse the HMAC-MD5 answers of Python 3.11 and older clients.
    #[arg(long)]
    no_legacy_md5: bool,

    /// Worker threads serving connections (each an event loop; objects
    /// are shared). Default: two per core this process may use; one with
    /// --data-dir under --fsync always (its syncs then group every
    /// client's change). 1 serves everything from one event loop.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,

    /// Open client connections; more are accepted and closed at once.
    #[arg(long, default_value_t = Limits::default().max_connections, value_name = "N")]
    max_connections: usize,

    /// Seconds a new connection has to authenticate and send its first
    /// request.
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = parse_seconds)]
    handshake_timeout: Duration,

    /// Seconds a client with 8 MiB of unread replies may read nothing
    /// before it is disconnected.
    #[arg(long, default_value = "60", value_name = "SECONDS", value_parser = parse_seconds)]
    send_timeout: Duration,

    /// Deepest nesting (containers and MARKs) of a request pickle.
    #[arg(long, default_value_t = Limits::default().pickle.max_depth, value_name = "N")]
    max_pickle_depth: usize,

    /// Memo indices of a request pickle must be below this.
    #[arg(long, default_value_t = Limits::default().pickle.max_memo, value_name = "N")]
    max_pickle_memo: usize,

    /// Most values (pickle stack entries) in one request.
    #[arg(long, default_value_t = Limits::default().pickle.max_nodes, value_name = "N")]
    max_pickle_values: usize,

    /// Bytes one shared object may store [default: a quarter of the RAM].
    #[arg(long, value_name = "BYTES")]
    max_object_bytes: Option<usize>,

    /// Bytes all shared objects together may store [default: half the RAM].
    #[arg(long, value_name = "BYTES")]
    max_total_bytes: Option<usize>,

    // Durable store (issue 16).
    /// Keep the named objects (--register) in this directory, across
    /// crashes and restarts.
    #[arg(long, value_name = "PATH")]
    data_dir: Option<PathBuf>,

    /// When the data dir's log is synced: always (before replies, in
    /// groups), everysec, or no (as Redis's appendfsync).
    #[arg(long, value_enum, default_value_t = crate::store::Fsync::Everysec, requires = "data_dir")]
    fsync: crate::store::Fsync,

    /// The data dir's log is compacted while serving once it is past this
    /// size and twice its live data (as Redis's auto-aof-rewrite-min-size).
    #[arg(long, value_name = "BYTES", default_value_t = crate::store::DEFAULT_COMPACT_MIN, requires = "data_dir")]
    compact_min_bytes: u64,

    /// Log a warning for each request whose server time passes N
    /// microseconds (and keep the last 128 for `fastmanager stat`).
    #[arg(long, value_name = "N")]
    slow_call_us: Option<u64>,

    /// After a loop turn with events, a worker looks for more without
    /// blocking (yielding its CPU in between) for this many microseconds
    /// before it sleeps: a client's next request then needs no wake-up,
    /// for CPU spent while it comes. 0 turns it off; at most 1000000.
    /// Default: 100 with --backend, else 0.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    busy_poll_us: Option<u64>,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics (a bare PORT
    /// listens on 127.0.0.1). Off by default.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_metrics_address)]
    metrics_address: Option<std::net::SocketAddr>,
}

impl ServerOptions {
    fn limits(&self) -> Limits {
        let defaults = Limits::default();
        Limits {
            max_connections: self.max_connections,
            handshake_timeout: self.handshake_timeout,
            send_timeout: self.send_timeout,
            pickle: DecodeLimits {
                max_depth: self.max_pickle_depth,
                max_memo: self.max_pickle_memo,
                max_nodes: self.max_pickle_values,
            },
            max_object_bytes: self.max_object_bytes.unwrap_or(defaults.max_object_bytes),
            max_total_bytes: self.max_total_bytes.unwrap_or(defaults.max_total_bytes),
        }
    }
}

impl ServerOptions {
    /// `--busy-poll-us`, where given.
    pub fn busy_poll(&self) -> Option<Duration> {
        self.busy_poll_us.map(Duration::from_micros)
    }

    /// Refuses values that parse but cannot be meant.
    pub fn check(&self) -> Result<()> {
        if self.max_connections == 0 {
            bail!("--max-connections 0 would refuse every client");
        }
        if self.max_frame_bytes == 0 {
            bail!("--max-frame-bytes 0 would refuse every request");
        }
        Ok(())
    }

    pub fn apply(&self, config: &mut Config) {
        config.limits = self.limits();
        config.max_frame = self.max_frame_bytes;
        config.allow_legacy_md5 = !self.no_legacy_md5;
        config.threads = self.threads.map_or(0, usize::from);
        config.data_dir = self.data_dir.clone();
        config.fsync = self.fsync;
        config.compact_min_bytes = self.compact_min_bytes;
        config.slow_call = self.slow_call_us.map(Duration::from_micros);
        config.metrics_address = self.metrics_address;
        if let Some(us) = self.busy_poll_us {
            config.busy_poll = Duration::from_micros(us);
        }
    }
}

/// The options alone, as the Python package passes them.
#[derive(Parser)]
#[command(name = "fastmanager options", no_binary_name = true, disable_help_flag = true)]
struct Embedded {
    #[command(flatten)]
    options: ServerOptions,
}

/// A configuration for a server an embedding program runs (the Python
/// package), from `flags` written as on the command line
/// (`["--max-connections", "100", "--no-legacy-md5"]`).
pub fn embedded_config(address: ListenAddress, authkey: Vec<u8>, flags: &[String]) -> Result<Config> {
    let parsed = Embedded::try_parse_from(flags).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    parsed.options.check()?;
    let mut config = Config::new(address, authkey);
    parsed.options.apply(&mut config);
    Ok(config)
}

pub(super) fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("expected a positive number of seconds, got {s:?}")),
    }
}

fn parse_metrics_address(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .map_err(|e| format!("expected HOST:PORT or PORT, got {s:?} ({e})"))?
        .next()
        .ok_or_else(|| format!("{s:?} names no address"))
}
