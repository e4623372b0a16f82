//! The log writer: one thread that owns the log file. Workers append
//! encoded records to a shared buffer while they hold the core lock (so
//! the log's order is the order the changes happened in) and go on; the
//! thread swaps the buffer out, writes it and syncs it by the policy.
//! Under `always`, a worker whose step logged something waits, after
//! letting go of the core lock and before sending that step's replies,
//! until the thread reports its bytes synced: every worker that appended
//! while one sync ran is covered by the next one (group commit), so
//! throughput does not fall to one fsync per request.
//!
//! Compaction while serving: the thread tells a compactor (another
//! thread, `server/durable.rs`) when the log passes its size threshold;
//! the compactor rebuilds the live data from the log file itself (no
//! lock on the objects), writes it as a snapshot beside the log and
//! copies the records written meanwhile after it; then this thread,
//! between two batches, copies the last few, syncs the new file and
//! renames it over the log ([`LogWriter::switch`]). Positions that
//! workers wait for count bytes appended since start, not file offsets,
//! so a switch does not disturb them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
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
    /// A compacted log to switch to: its path, and how much of the
    /// current file it already holds after its snapshot.
    switch: Option<(PathBuf, u64)>,
}

#[derive(Default)]
struct Durable {
    /// Bytes written (and, under `always`, synced) since start.
    upto: u64,
    /// Why the log could not be written, once it could not.
    failed: Option<String>,
    /// The answer to the last switch request: the new file's length, and
    /// the old file for the compactor to close.
    switched: Option<Result<(u64, File), String>>,
}

/// When the compactor should run.
#[derive(Default)]
struct Compaction {
    /// The log file's length (whole records: the thread writes whole
    /// batches).
    file_len: u64,
    /// Compact once the file is this long.
    at: u64,
    running: bool,
    stop: bool,
}

pub struct LogWriter {
    policy: Fsync,
    path: PathBuf,
    dir: PathBuf,
    pending: Mutex<Pending>,
    work: Condvar,
    durable: Mutex<Durable>,
    done: Condvar,
    compaction: Mutex<Compaction>,
    compact_wake: Condvar,
}

impl LogWriter {
    /// Opens (appends to) `dir`'s log and starts its thread; the
    /// compactor is due once the file is `compact_at` bytes long.
    pub fn open(dir: &Path, policy: Fsync, compact_at: u64) -> Result<Arc<LogWriter>> {
        let path = super::log_path(dir);
        let file = OpenOptions::new().create(true).append(true).open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let file_len = file.metadata().with_context(|| format!("cannot read {}", path.display()))?.len();
        let w = Arc::new(LogWriter {
            policy,
            path,
            dir: dir.to_path_buf(),
            pending: Mutex::default(),
            work: Condvar::new(),
            durable: Mutex::default(),
            done: Condvar::new(),
            compaction: Mutex::new(Compaction { file_len, at: compact_at, ..Compaction::default() }),
            compact_wake: Condvar::new(),
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

    /// For the compactor: waits until the log file is due for compaction
    /// and returns its length then (a record boundary); `None` once the
    /// log stops.
    pub fn wait_compaction(&self) -> Option<u64> {
        let mut c = self.compaction.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if c.stop {
                return None;
            }
            if !c.running && c.file_len >= c.at && self.failed().is_none() {
                c.running = true;
                return Some(c.file_len);
            }
            c = self.compact_wake.wait(c).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// For the compactor, after a run: compact next once the file is
    /// `at` bytes long.
    pub fn compact_next_at(&self, at: u64) {
        let mut c = self.compaction.lock().unwrap_or_else(|e| e.into_inner());
        c.running = false;
        c.at = at;
    }

    /// The log file's length now (a record boundary).
    pub fn file_len(&self) -> u64 {
        self.compaction.lock().unwrap_or_else(|e| e.into_inner()).file_len
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For the compactor: makes `new` (a synced snapshot followed by the
    /// log file's bytes up to `copied_upto`) the log. The thread copies
    /// the bytes written since, syncs it and renames it over the log,
    /// between two batches. Returns the new file's length, and the old
    /// file for the caller to close: closing it frees its blocks (a
    /// quarter of a second for 76 MB on ext4 here), which this thread
    /// does not wait for.
    pub fn switch(&self, new: &Path, copied_upto: u64) -> Result<(u64, File), String> {
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.stop {
                return Err("the log is closing".into());
            }
            self.durable.lock().unwrap_or_else(|e| e.into_inner()).switched = None;
            p.switch = Some((new.to_path_buf(), copied_upto));
        }
        self.work.notify_one();
        let mut d = self.durable.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = d.switched.take() {
                return r;
            }
            d = self.done.wait(d).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Writes what is pending, syncs it, and ends the thread.
    pub fn stop(&self) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.work.notify_one();
        self.compaction.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.compact_wake.notify_all();
        let at = self.pending.lock().unwrap_or_else(|e| e.into_inner()).appended;
        let _ = self.wait(at);
    }

    fn run(&self, mut file: File) {
        let mut last_sync = Instant::now();
        let mut unsynced = false;
        let mut buf = Vec::new();
        loop {
            let (at, stop, switch) = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                while p.buf.is_empty() && !p.stop && p.switch.is_none() {
                    let (g, timeout) = self.work.wait_timeout(p, Duration::from_millis(200)).unwrap_or_else(|e| e.into_inner());
                    p = g;
                    if timeout.timed_out() {
                        break;
                    }
                }
                std::mem::swap(&mut buf, &mut p.buf);
                (p.appended, p.stop, p.switch.take())
            };
            let mut result = Ok(());
            if !buf.is_empty() {
                result = file.write_all(&buf);
                unsynced = true;
                if result.is_ok() {
                    self.wrote(buf.len() as u64);
                }
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
            if let Some((new, copied)) = switch {
                let r = if stop || self.failed().is_some() {
                    Err("the log is closing or failed".to_string())
                } else {
                    self.switch_now(&new, copied)
                };
                let answer = match r {
                    Ok((f, len)) => {
                        // The compactor closes the old log (`switch`).
                        let old = std::mem::replace(&mut file, f);
                        unsynced = false;
                        self.compaction.lock().unwrap_or_else(|e| e.into_inner()).file_len = len;
                        Ok((len, old))
                    }
                    Err(e) => Err(e),
                };
                self.durable.lock().unwrap_or_else(|e| e.into_inner()).switched = Some(answer);
            }
            self.done.notify_all();
            if stop {
                info!("data dir log synced and closed");
                return;
            }
        }
    }

    /// `n` more bytes are in the file: the compactor may be due.
    fn wrote(&self, n: u64) {
        let mut c = self.compaction.lock().unwrap_or_else(|e| e.into_inner());
        c.file_len += n;
        if !c.running && c.file_len >= c.at {
            self.compact_wake.notify_all();
        }
    }

    /// Completes `new` with the log file's bytes from `copied` on, syncs
    /// it and renames it over the log (then syncs the dir, so the rename
    /// survives a crash). A crash before the rename leaves the old log
    /// whole; after it, the new one is.
    fn switch_now(&self, new: &Path, copied: u64) -> Result<(File, u64), String> {
        let r = (|| -> std::io::Result<(File, u64)> {
            let end = std::fs::metadata(&self.path)?.len();
            let tail = super::read_range(&self.path, copied, end)?;
            let mut f = OpenOptions::new().append(true).open(new)?;
            f.write_all(&tail)?;
            f.sync_data()?;
            std::fs::rename(new, &self.path)?;
            File::open(&self.dir)?.sync_all()?;
            let len = f.metadata()?.len();
            Ok((f, len))
        })();
        r.map_err(|e| format!("cannot switch to the compacted log: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{encode, scan, Op};

    /// A switch keeps every record: the snapshot, the records the
    /// compactor copied, those written after its copy, and later ones.
    #[test]
    fn a_switch_keeps_the_records_written_meanwhile() {
        let dir = std::env::temp_dir().join(format!("fm-writer-switch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = LogWriter::open(&dir, Fsync::Always, u64::MAX).unwrap();
        let put = |data: &str| log.wait(log.append(|b| encode(b, Op::Put, "q", data.as_bytes()))).unwrap();
        put("a");
        put("b");
        let copied = log.file_len();
        put("c");
        // The snapshot says `a` and `b` were one item `ab`; the compactor
        // copied nothing after it, so the switch copies `c`.
        let new = crate::store::compact_path(&dir);
        let mut snap = Vec::new();
        encode(&mut snap, Op::Put, "q", b"ab");
        std::fs::write(&new, &snap).unwrap();
        let (len, _old) = log.switch(&new, copied).unwrap();
        assert_eq!(len, log.file_len());
        put("d");
        log.stop();
        let s = scan(&std::fs::read(crate::store::log_path(&dir)).unwrap()).unwrap();
        let data: Vec<&[u8]> = s.records.iter().map(|r| &r.data[..]).collect();
        assert_eq!(data, [&b"ab"[..], b"c", b"d"]);
        assert!(!new.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
