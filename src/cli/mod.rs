//! The `fastmanager` command line (also `python -m fastmanager`: both
//! call [`run`]).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

mod backend;
mod options;
mod stat;

pub use options::embedded_config;
use crate::registry::{Registration, SYNC_MANAGER_TYPEIDS};
use crate::address::ListenAddress;
use crate::server::{Config, Server};

#[derive(Parser)]
#[command(name = "fastmanager", version, about = "A Rust server for CPython's multiprocessing.managers protocol")]
struct Cli {
    /// How log lines are written (to stderr): text, or JSON lines for log
    /// shippers.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve shared objects to stock multiprocessing.managers clients.
    Serve(ServeArgs),
    /// Durable store (issue 16): check a --data-dir's log; with --repair,
    /// cut it where it goes bad (as redis-check-aof --fix).
    CheckData(CheckDataArgs),
    /// A running server's figures: connections, requests, objects and
    /// their depths, blocked calls, memory, slow calls.
    Stat(stat::StatArgs),
}

/// The authkey, one of three ways (serve and stat).
#[derive(Args)]
#[group(id = "key", multiple = false)]
struct AuthkeyArgs {
    /// The authkey clients use (as in BaseManager(authkey=b"...")).
    #[arg(long)]
    authkey: Option<String>,

    /// Read the authkey from this environment variable.
    #[arg(long, value_name = "VAR")]
    authkey_env: Option<String>,

    /// Read the authkey from this file (one trailing newline is ignored).
    #[arg(long, value_name = "PATH")]
    authkey_file: Option<PathBuf>,
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

    #[command(flatten)]
    key: AuthkeyArgs,

    /// NAME=KIND: NAME returns a proxy to one object of KIND that lives as
    /// long as the server. KIND is a SyncManager typeid with its arguments,
    /// e.g. Queue, Queue(100), JoinableQueue, dict, list, Namespace,
    /// Value(i,0), Array(d,1,2), Lock, RLock, Event, Condition,
    /// Semaphore(3), BoundedSemaphore(3), Barrier(4). Repeat for several.
    #[arg(long = "register", value_name = "NAME=KIND", value_parser = parse_registration)]
    registrations: Vec<Registration>,

    /// Keep the --register'ed objects in Redis:
    /// redis://HOST:PORT[,HOST:PORT...] (a Redis Cluster's seed nodes, or
    /// one server). Every server started with the same backend and
    /// registrations serves the same objects (README, "Redis Cluster
    /// backend"). Served: Queue, JoinableQueue (with maxsize),
    /// dict, Namespace, Value.
    #[arg(long, value_name = "URL", conflicts_with = "data_dir")]
    backend: Option<crate::backend::BackendUrl>,

    #[command(flatten)]
    backend_options: backend::BackendOptions,

    #[command(flatten)]
    options: options::ServerOptions,
}





impl ServeArgs {
    /// Refuses values that parse but cannot be meant.
    fn check(&self) -> Result<()> {
        self.options.check()?;
        let mut seen = std::collections::HashSet::new();
        for r in &self.registrations {
            // A `--register` name is looked up before SyncManager's
            // typeids, so the same name would silently hand
            // `SyncManager.Queue()` clients the named object.
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

impl AuthkeyArgs {
    fn read(&self) -> Result<Vec<u8>> {
        read_authkey(self)
    }
}

fn read_authkey(args: &AuthkeyArgs) -> Result<Vec<u8>> {
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
    let authkey = args.key.read()?;
    let mut config = Config::new(args.address.clone(), authkey);
    args.options.apply(&mut config);
    // With a backend the named objects live there: the server hosts them
    // through the gateway instead of making them itself.
    let gateway = match &args.backend {
        Some(url) => {
            let plan = crate::backend::open(url, &args.registrations, args.backend_options.replicas())?;
            config.extra_typeids.extend(crate::backend::hosted_typeids(&args.registrations));
            if args.options.busy_poll().is_none() {
                config.busy_poll = crate::backend::GATEWAY_BUSY_POLL;
            }
            Some(plan)
        }
        None => {
            config.registrations = args.registrations;
            None
        }
    };
    let limits = config.limits.pickle;
    let mut server = Server::bind(config).with_context(|| format!("cannot listen on {}", args.address))?;
    if let Some(plan) = gateway {
        plan.start(server.host_end(), limits)?;
    }
    server.run().context("event loop failed")
}

/// Log lines to stderr, at the level RUST_LOG asks (default `info`).
fn init_logging(format: LogFormat) {
    let filter = || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // try_init: an embedding program may call this more than once.
    let _ = match format {
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter()).with_writer(std::io::stderr).try_init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            // Colour codes only for a terminal, not in log files.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// Parses `args` (program name first) and runs the command; returns the
/// process exit status.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Stat(args) => stat::run(args),
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
