//! The log writer: one thread that owns the log file. Workers append
//! encoded records to a shared buffer while they hold the core lock (so
//! the log's order is the order the changes happened in) and go on; the
//! thread swaps the buffer out, writes it and syncs it by the policy.
//! Under `always`, a worker whose step logged something waits, after
//! letting go of the core lock and before sending that step's replies,
//! until the thread reports its bytes synced: every worker that appended
//! while one sync ran is covered by the next one (group commit), so
//! throughput does not fall to one fsync per request.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{error, info};

/// When an acknowledged change reaches the disk (Redis's `appendfsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Fsync {
    /// Synced before its reply is sent (in groups).
    Always,
    /// Written by the log thread at once (replies do not wait); synced
    /// at least once a second.
    #[default]
    Everysec,
    /// Written by the thread when it can; synced when the kernel does.
    No,
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// Bytes appended since start.
    appended: u64,
    stop: bool,
}

#[derive(Default)]
struct Durable {
    /// Bytes written (and, under `always`, synced) since start.
    upto: u64,
    /// Why the log could not be written, once it could not.
    failed: Option<String>,
}

pub struct LogWriter {
    policy: Fsync,
    pending: Mutex<Pending>,
    work: Condvar,
    durable: Mutex<Durable>,
    done: Condvar,
}

impl LogWriter {
    /// Opens (appends to) `dir`'s log and starts its thread.
    pub fn open(dir: &Path, policy: Fsync) -> Result<Arc<LogWriter>> {
        let path = super::log_path(dir);
        let file = OpenOptions::new().create(true).append(true).open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let w = Arc::new(LogWriter {
            policy,
            pending: Mutex::default(),
            work: Condvar::new(),
            durable: Mutex::default(),
            done: Condvar::new(),
        });
        let thread = w.clone();
        std::thread::Builder::new().name("fastmanager-log".into()).spawn(move || thread.run(file))?;
        Ok(w)
    }

    pub fn policy(&self) -> Fsync {
        self.policy
    }

    /// Appends what `encode` writes; returns the log position after it,
    /// for [`LogWriter::wait`].
    pub fn append(&self, encode: impl FnOnce(&mut Vec<u8>)) -> u64 {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let before = p.buf.len();
        encode(&mut p.buf);
        p.appended += (p.buf.len() - before) as u64;
        let at = p.appended;
        drop(p);
        self.work.notify_one();
        at
    }

    /// Waits until the log holds position `at` durably by the policy
    /// (synced under `always`, written otherwise); the error if it never
    /// will.
    pub fn wait(&self, at: u64) -> Result<(), String> {
        let mut d = self.durable.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(e) = &d.failed {
                return Err(e.clone());
            }
            if d.upto >= at {
                return Ok(());
            }
            d = self.done.wait(d).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Why the log could not be written, once it could not.
    pub fn failed(&self) -> Option<String> {
        self.durable.lock().unwrap_or_else(|e| e.into_inner()).failed.clone()
    }

    /// Writes what is pending, syncs it, and ends the thread.
    pub fn stop(&self) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.work.notify_one();
        let at = self.pending.lock().unwrap_or_else(|e| e.into_inner()).appended;
        let _ = self.wait(at);
    }

    fn run(&self, mut file: File) {
        let mut last_sync = Instant::now();
        let mut unsynced = false;
        let mut buf = Vec::new();
        loop {
            let (at, stop) = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                while p.buf.is_empty() && !p.stop {
                    let (g, timeout) = self.work.wait_timeout(p, Duration::from_millis(200)).unwrap_or_else(|e| e.into_inner());
                    p = g;
                    if timeout.timed_out() {
                        break;
                    }
                }
                std::mem::swap(&mut buf, &mut p.buf);
                (p.appended, p.stop)
            };
            let mut result = Ok(());
            if !buf.is_empty() {
                result = file.write_all(&buf);
                unsynced = true;
                buf.clear();
            }
            let sync_due = match self.policy {
                Fsync::Always => true,
                Fsync::Everysec => last_sync.elapsed() >= Duration::from_secs(1) || stop,
                Fsync::No => stop,
            };
            if result.is_ok() && unsynced && sync_due {
                result = file.sync_data();
                last_sync = Instant::now();
                unsynced = false;
            }
            let mut d = self.durable.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(()) => d.upto = at,
                Err(e) if d.failed.is_none() => {
                    error!("cannot write the data dir's log: {e}; changes to durable objects are refused from now on");
                    d.failed = Some(e.to_string());
                }
                Err(_) => {}
            }
            drop(d);
            self.done.notify_all();
            if stop {
                info!("data dir log synced and closed");
                return;
            }
        }
    }
}
