//! The `fastmanager` command line (also `python -m fastmanager`: both
//! call [`run`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use crate::registry::Registration;
use crate::pickle::DecodeLimits;
use crate::address::ListenAddress;
use crate::server::{Config, Limits, Server};

#[derive(Parser)]
#[command(name = "fastmanager", version, about = "A Rust server for CPython's multiprocessing.managers protocol")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve shared objects to stock multiprocessing.managers clients.
    Serve(ServeArgs),
    /// Durable store (issue 16): check a --data-dir's log; with --repair,
    /// cut it where it goes bad (as redis-check-aof --fix).
    CheckData(CheckDataArgs),
}

/// `fastmanager check-data PATH [--repair]`.
#[derive(Args)]
struct CheckDataArgs {
    /// The data dir to check.
    path: PathBuf,
    /// Truncate the log at its first bad record.
    #[arg(long)]
    repair: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// Where to listen: HOST:PORT, or unix:PATH for a Unix socket.
    #[arg(long, default_value = "127.0.0.1:50000", value_parser = parse_address)]
    address: ListenAddress,

    /// The authkey clients use (as in BaseManager(authkey=b"...")).
    #[arg(long, group = "key")]
    authkey: Option<String>,

    /// Read the authkey from this environment variable.
    #[arg(long, group = "key", value_name = "VAR")]
    authkey_env: Option<String>,

    /// Read the authkey from this file (one trailing newline is ignored).
    #[arg(long, group = "key", value_name = "PATH")]
    authkey_file: Option<PathBuf>,

    /// NAME=KIND: NAME returns a proxy to one object of KIND that lives as
    /// long as the server. KIND is a SyncManager typeid with its arguments,
    /// e.g. Queue, Queue(100), JoinableQueue, dict, list, Namespace,
    /// Value(i,0), Array(d,1,2), Lock, RLock, Event, Condition,
    /// Semaphore(3), BoundedSemaphore(3), Barrier(4). Repeat for several.
    #[arg(long = "register", value_name = "NAME=KIND", value_parser = parse_registration)]
    registrations: Vec<Registration>,

    /// Largest request frame accepted from an authenticated client.
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    max_frame_bytes: usize,

    /// Refuse the HMAC-MD5 answers of Python 3.11 and older clients.
    #[arg(long)]
    no_legacy_md5: bool,

    /// Worker threads serving connections (each an event loop; objects
    /// are shared). Default: two per core this process may use. 1 serves
    /// everything from one event loop.
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
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("expected a positive number of seconds, got {s:?}")),
    }
}

impl ServeArgs {
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

/// Every typeid SyncManager registers (Pool too, which this server does
/// not serve): a `--register` name is looked up before them, so the same
/// name would silently hand `SyncManager.Queue()` clients the named object.
const SYNC_MANAGER_TYPEIDS: &[&str] = &[
    "Queue", "JoinableQueue", "Event", "Lock", "RLock", "Semaphore", "BoundedSemaphore",
    "Condition", "Barrier", "Pool", "list", "dict", "Value", "Array", "Namespace",
];

impl ServeArgs {
    /// Refuses values that parse but cannot be meant.
    fn check(&self) -> Result<()> {
        if self.max_connections == 0 {
            bail!("--max-connections 0 would refuse every client");
        }
        if self.max_frame_bytes == 0 {
            bail!("--max-frame-bytes 0 would refuse every request");
        }
        let mut seen = std::collections::HashSet::new();
        for r in &self.registrations {
            if SYNC_MANAGER_TYPEIDS.contains(&r.name.as_str()) {
                bail!(
                    "--register {}: the name shadows SyncManager's {} typeid (SyncManager.{}() would return this object); choose another name",
                    r.name, r.name, r.name
                );
            }
            if !seen.insert(r.name.as_str()) {
                bail!("--register {}: the name is given twice", r.name);
            }
        }
        Ok(())
    }
}

fn parse_address(s: &str) -> Result<ListenAddress, String> {
    s.parse()
}

fn parse_registration(s: &str) -> Result<Registration, String> {
    s.parse().map_err(|e: crate::registry::KindError| e.to_string())
}

fn read_authkey(args: &ServeArgs) -> Result<Vec<u8>> {
    if let Some(k) = &args.authkey {
        return Ok(k.clone().into_bytes());
    }
    if let Some(var) = &args.authkey_env {
        let value = std::env::var_os(var).with_context(|| format!("environment variable {var} is not set"))?;
        return Ok(std::os::unix::ffi::OsStringExt::into_vec(value));
    }
    if let Some(path) = &args.authkey_file {
        let mut key = std::fs::read(path).with_context(|| format!("cannot read authkey file {}", path.display()))?;
        if key.ends_with(b"\n") {
            key.pop();
            if key.ends_with(b"\r") {
                key.pop();
            }
        }
        return Ok(key);
    }
    bail!("an authkey is required: give --authkey, --authkey-env or --authkey-file")
}

/// Large request and reply buffers come and go with every big item. By
/// default glibc maps each one fresh (and zero-fills its pages) and unmaps
/// it on free: a 1 MB put+get cost ~700 page faults, most of the server's
/// time. Keeping blocks up to 64 MiB in the heap, and 128 MiB of free heap
/// before trimming, lets them be reused. Only the command line sets this:
/// an embedding program (Python) keeps its own allocator settings.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    args.check()?;
    tune_allocator();
    let authkey = read_authkey(&args)?;
    let mut config = Config::new(args.address.clone(), authkey);
    config.limits = args.limits();
    config.registrations = args.registrations;
    config.max_frame = args.max_frame_bytes;
    config.allow_legacy_md5 = !args.no_legacy_md5;
    config.threads = args.threads.map_or(0, usize::from);
    config.data_dir = args.data_dir;
    config.fsync = args.fsync;
    config.compact_min_bytes = args.compact_min_bytes;
    let mut server = Server::bind(config).with_context(|| format!("cannot listen on {}", args.address))?;
    server.run().context("event loop failed")
}

/// Parses `args` (program name first) and runs the command; returns the
/// process exit status.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    // try_init: an embedding program may call this more than once.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::CheckData(args) => match crate::store::check(&args.path, args.repair) {
            // A log that was bad (even if now repaired) exits 1, as
            // redis-check-aof does, so scripts notice.
            Ok(whole) => return u8::from(!whole),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("fastmanager: error: {e:#}");
            1
        }
    }
}
