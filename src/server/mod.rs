//! The server: worker threads, each with its own mio event loop and its
//! own connections, sharing the objects behind one lock (`core`).
//!
//! No thread per connection, and no thread ever waits for a call: a
//! request is read, decoded and answered on its connection's worker; a
//! call that must wait is parked in [`blocking::Blocked`] and answered when
//! its object changes or its deadline passes, by whichever worker changed
//! it (the reply goes to the connection's own worker through its
//! [`mailbox`]). So one client's blocking `get` never delays another, and
//! `--threads 1` is one event loop, as before.
//!
//! Worker 0 also accepts connections (handing them out in turn), takes
//! signals, and runs the core's own timers; the host's answers go to the
//! worker whose connection waits for them. The
//! client process behind a TCP connection is looked up on a thread of its
//! own (`identify`), so a /proc search stalls no worker.

pub mod blocking;
pub mod connection;
mod core;
mod durable;
mod held;
pub mod dispatch;
pub mod host;
mod identify;
pub mod limits;
pub mod listener;
mod mailbox;
pub mod memory;
mod output;
pub mod peers;
#[cfg(test)]
mod race_tests;
mod requests;
mod shutdown;
pub mod stats;
mod worker;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mio::{Interest, Poll, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use tracing::{info, warn};

use crate::objects::ObjectTable;
use crate::protocol::Address;
use crate::registry::{ExtraTypeid, Registration, Registry};

use blocking::Blocked;
use core::Core;
use dispatch::State;
pub use limits::Limits;
pub use listener::ListenAddress;
use listener::Listener;
use mailbox::Mailbox;
use memory::MemoryBudget;
use worker::Worker;

/// How a server is set up; the CLI fills this in.
#[derive(Debug, Clone)]
pub struct Config {
    pub address: ListenAddress,
    pub authkey: Vec<u8>,
    pub registrations: Vec<Registration>,
    /// Typeids an embedding program adds (aliases of built-in kinds, and
    /// typeids its host serves).
    pub extra_typeids: Vec<ExtraTypeid>,
    /// Largest frame accepted after authentication.
    pub max_frame: usize,
    /// Accept bare HMAC-MD5 answers from Python 3.11 and older.
    pub allow_legacy_md5: bool,
    /// Stop on SIGINT/SIGTERM and ignore SIGHUP with a log line (off when
    /// embedded in another program).
    pub handle_signals: bool,
    /// Connections, timeouts, pickle bounds and memory caps.
    pub limits: Limits,
    /// Worker threads; 0 means two per core this process may use (one
    /// under `--fsync always`: [`Config::worker_threads`]).
    pub threads: usize,
    /// Durable store (issue 16): keep named objects in this directory.
    pub data_dir: Option<std::path::PathBuf>,
    /// When the store's log is synced.
    pub fsync: crate::store::Fsync,
    /// The log is compacted while serving once past this size (and twice
    /// its live data).
    pub compact_min_bytes: u64,
    /// Log (and keep for `stat`) calls whose server time passes this.
    pub slow_call: Option<std::time::Duration>,
    /// Serve Prometheus metrics at `http://ADDRESS/metrics`.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// How long a worker looks for new events without blocking after a
    /// loop turn that had some (`worker/busy_poll.rs`); zero (the
    /// default): never.
    pub busy_poll: std::time::Duration,
}

impl Config {
    pub fn new(address: ListenAddress, authkey: Vec<u8>) -> Config {
        Config {
            address,
            authkey,
            registrations: Vec::new(),
            extra_typeids: Vec::new(),
            max_frame: 256 << 20,
            allow_legacy_md5: true,
            handle_signals: true,
            limits: Limits::default(),
            threads: 0,
            data_dir: None,
            fsync: crate::store::Fsync::default(),
            compact_min_bytes: crate::store::DEFAULT_COMPACT_MIN,
            slow_call: None,
            metrics_address: None,
            busy_poll: std::time::Duration::ZERO,
        }
    }

    /// The worker threads this configuration asks for. By default two per
    /// core: a connection waits while its worker serves another, and with
    /// more workers than cores that wait is shorter (on 16 cores, 32
    /// workers moved 10–20% more round trips than 16 at 32 and 64 stock
    /// clients; 64 were no better: benches/results/device-16core-sweep).
    ///
    /// Under `--fsync always` with a data dir, one by default: a worker
    /// syncs the log at the end of its loop turn for every change
    /// appended so far (`store::writer`), and one loop's turn gathers
    /// every ready client's change into that sync, where several workers
    /// each sync a share (on 2 cores, 16 clients: 0.62x the in-memory
    /// server's round trips with one worker, 0.57x with four; README,
    /// "Durable data").
    pub fn worker_threads(&self) -> usize {
        match self.threads {
            0 if self.data_dir.is_some() && self.fsync == crate::store::Fsync::Always => 1,
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_mul(2),
            n => n,
        }
    }
}

/// What every worker shares.
pub(crate) struct Shared {
    core: Mutex<Core>,
    /// One per worker, by index.
    mailboxes: Vec<Mailbox>,
    stopping: AtomicBool,
    /// Open connections, against `--max-connections`.
    live_connections: AtomicUsize,
    config: Config,
    /// The server runs inside the program that uses it (see `identify`).
    embedded: AtomicBool,
    /// Counts, connections and slow calls, for `stat` and `/metrics`.
    stats: stats::Stats,
    /// Answers the host sent that no worker has applied yet (`host.rs`).
    host_answers: AtomicUsize,
    /// A host that runs calls on the workers' threads (`host.rs`).
    inline_host: std::sync::OnceLock<std::sync::Weak<dyn host::InlineHost>>,
}

impl Shared {
    fn new(core: Core, mailboxes: Vec<Mailbox>, config: Config) -> Shared {
        Shared {
            stats: stats::Stats::new(mailboxes.len(), config.slow_call, core.state.registry.named()),
            core: Mutex::new(core),
            mailboxes,
            stopping: AtomicBool::new(false),
            live_connections: AtomicUsize::new(0),
            config,
            embedded: AtomicBool::new(false),
            host_answers: AtomicUsize::new(0),
            inline_host: std::sync::OnceLock::new(),
        }
    }

    /// Whether the host has sent answers since the last call; a worker
    /// that sees so applies every answer there is.
    fn take_host_answers(&self) -> bool {
        self.host_answers.swap(0, Ordering::Acquire) > 0
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A worker that panicked mid-step left the core as it was; the
        // others serve on rather than all failing.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for m in &self.mailboxes {
            m.nudge();
        }
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

pub struct Server {
    shared: Arc<Shared>,
    workers: Vec<Worker>,
    address: Address,
    /// The Prometheus endpoint, bound with the server, served from `run`.
    metrics: Option<tiny_http::Server>,
}

impl Server {
    /// Binds the address and creates the named objects.
    pub fn bind(config: Config) -> io::Result<Server> {
        match limits::raise_fd_limit(config.limits.max_connections) {
            Ok(Some(fit)) => warn!(max_connections = config.limits.max_connections, "the open-file limit allows about {fit} connections"),
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot read the open-file limit"),
        }
        let threads = config.worker_threads();
        let mut polls = Vec::with_capacity(threads);
        let mut mailboxes = Vec::with_capacity(threads);
        for _ in 0..threads {
            let poll = Poll::new()?;
            mailboxes.push(Mailbox::new(Waker::new(poll.registry(), worker::WAKE)?));
            polls.push(poll);
        }
        let (mut listener, address) = Listener::bind(&config.address)?;
        let metrics = config.metrics_address.map(stats::metrics::bind).transpose()?;
        polls[0].registry().register(&mut listener, worker::LISTENER, Interest::READABLE)?;
        let signals = if config.handle_signals {
            let mut s = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
            polls[0].registry().register(&mut s, worker::SIGNALS, Interest::READABLE)?;
            Some(s)
        } else {
            None
        };
        let mut objects = ObjectTable::default();
        let registry = Registry::new(&config.registrations, &config.extra_typeids, &mut objects);
        let durable = match &config.data_dir {
            Some(dir) => Some(durable::open_store(dir, &config, &registry, &mut objects)?),
            None => None,
        };
        let core = Core {
            state: State { objects, registry, blocked: Blocked::new(threads), address: address.clone(), owners: Default::default() },
            memory: MemoryBudget::new(config.limits.max_object_bytes, config.limits.max_total_bytes),
            host: None,
            pickle_limits: config.limits.pickle,
            timers_sleep_until: None,
            durable,
        };
        let shared = Arc::new(Shared::new(core, mailboxes, config));
        let mut workers: Vec<Worker> = polls.into_iter().enumerate().map(|(i, poll)| Worker::new(i, poll, shared.clone())).collect();
        workers[0].listen(listener, signals);
        Ok(Server { shared, workers, address, metrics })
    }

    /// The address clients connect to (with the real port when 0 was asked).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Connects a host; the returned end receives the requests for the
    /// typeids registered as `ExtraTypeid::Hosted` and for hosted objects.
    pub fn host_end(&mut self) -> host::HostEnd {
        let (link, end) = host::HostLink::new(self.shared.clone());
        self.shared.lock().host = Some(link);
        self.shared.embedded.store(true, Ordering::SeqCst);
        end
    }

    /// A handle that stops [`Server::run`] from another thread.
    pub fn stopper(&self) -> host::Stopper {
        host::Stopper { shared: self.shared.clone() }
    }

    /// Serves until a signal, a `shutdown` request or the stopper stops
    /// it, on the calling thread and `threads() - 1` more. Only once.
    pub fn run(&mut self) -> io::Result<()> {
        let mut workers = std::mem::take(&mut self.workers);
        if workers.is_empty() {
            return Err(io::Error::other("the server already ran"));
        }
        // The bound address, not the asked one: `HOST:0` logs its real port.
        let bound = self.address.to_string();
        info!(address = %bound, threads = workers.len(), "fastmanager serving");
        let finder = identify::spawn_finder(self.shared.embedded.load(Ordering::SeqCst), self.shared.clone())?;
        for w in &mut workers {
            w.set_finder(finder.clone());
        }
        drop(finder);
        let metrics = self.metrics.take().map(|m| stats::metrics::serve(m, self.shared.clone())).transpose()?;
        let mut first = workers.remove(0);
        let mut handles = Vec::new();
        for mut w in workers {
            let name = format!("fm-worker-{}", w.index());
            handles.push(std::thread::Builder::new().name(name).spawn(move || w.run())?);
        }
        let mut result = first.run();
        // Every worker ends once the stop flag is set; a failed worker 0
        // stops the others.
        self.shared.stop();
        for h in handles {
            let r = h.join().unwrap_or_else(|_| Err(io::Error::other("a worker thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        drop(first);
        if let Some(m) = metrics {
            let _ = m.join();
        }
        // Mail left for workers that have ended (a connection accepted
        // as they stopped) is dropped: its socket closes, and its client
        // sees the server gone instead of waiting for a handshake.
        let mut left = Vec::new();
        for mailbox in &self.shared.mailboxes {
            mailbox.take(&mut left);
            left.clear();
        }
        let mut core = self.shared.lock();
        // The host's requests end here: its thread sees the channel close
        // and returns (the shared part itself lives on in the host's end
        // and the stopper, which an embedding program may keep).
        core.host = None;
        let (items, holders) = core.stored_items();
        let log = core.durable.as_ref().map(|d| d.log.clone());
        drop(core);
        if let Some(log) = &log {
            log.stop();
        }
        if items > 0 && log.is_none() {
            info!(items, objects = holders, "stopping: stored items end with the process");
        }
        info!("fastmanager stopped");
        result
    }
}
