//! The log writer: one thread that owns the log file. Workers append
//! encoded records to a shared buffer while they hold the core lock (so
//! the log's order is the order the changes happened in) and go on; the
//! thread swaps the buffer out, writes it and syncs it by the policy.
//! Under `always`, a worker whose step logged something holds that
//! step's replies until the thread reports its bytes synced, and serves
//! its other connections meanwhile; the thread wakes it once a sync
//! covers them ([`SyncWatch`]). A sync covers the bytes written before it
//! started: everything appended while one sync ran goes into the next
//! one, which starts as soon as the first returns (group commit), so
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{error, info};

/// The longest a batch waits for expected appends, as a share of the
/// last sync's time ([`LogWriter::gather`]), and at most.
const GATHER_SHARE: f64 = 0.5;
const GATHER_MAX: Duration = Duration::from_millis(2);

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
    /// Appends in `buf` (each a step's changes: a request's, mostly).
    count: u64,
    /// Under `always`, once a sync returned: the appends the next batch
    /// may expect (those the sync covered, whose clients were answered
    /// and may send their next change, and those waiting already); 0
    /// when the next batch should not wait.
    expect: u64,
    /// How long the last sync took.
    last_sync: Duration,
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

/// A thread that holds replies until the log is durable up to some
/// position, and how to wake it (a worker's poll waker).
pub struct SyncWatch {
    /// The position it waits for; 0: nothing.
    wanted: AtomicU64,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl SyncWatch {
    /// Asks to be woken once the log is durable up to `at` (or has
    /// failed); 0 asks for nothing. The caller must look at
    /// [`LogWriter::durable_upto`] after this, before it sleeps: a sync
    /// that ended just before the call wakes no one.
    pub fn want(&self, at: u64) {
        self.wanted.store(at, Ordering::SeqCst);
    }

    /// Wakes the watcher if it waits for a position up to `upto` (any,
    /// once the log failed), once per [`SyncWatch::want`].
    fn notify(&self, upto: u64, failed: bool) {
        let w = self.wanted.load(Ordering::SeqCst);
        if w != 0 && (w <= upto || failed) && self.wanted.compare_exchange(w, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            (self.wake)();
        }
    }
}

pub struct LogWriter {
    policy: Fsync,
    /// `Durable::upto`, readable without the lock.
    durable_upto: AtomicU64,
    /// `Durable::failed` is set.
    has_failed: AtomicBool,
    watches: Mutex<Vec<Arc<SyncWatch>>>,
    /// Syncs made, for the closing log line: `benches/durable.py` divides
    /// the requests it made by them (requests per group commit).
    syncs: AtomicU64,
    /// Syncs the file: `File::sync_data` (a test's stand-in records what
    /// each sync covers).
    sync_file: fn(&File) -> std::io::Result<()>,
    /// The log's thread, joined by [`LogWriter::stop`] (its closing line
    /// comes before the server's last).
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
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
        Self::open_with(dir, policy, compact_at, File::sync_data)
    }

    fn open_with(dir: &Path, policy: Fsync, compact_at: u64, sync_file: fn(&File) -> std::io::Result<()>) -> Result<Arc<LogWriter>> {
        let path = super::log_path(dir);
        let file = OpenOptions::new().create(true).append(true).open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let file_len = file.metadata().with_context(|| format!("cannot read {}", path.display()))?.len();
        let w = Arc::new(LogWriter {
            policy,
            durable_upto: AtomicU64::new(0),
            has_failed: AtomicBool::new(false),
            watches: Mutex::default(),
            syncs: AtomicU64::new(0),
            sync_file,
            thread: Mutex::default(),
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
        let t = std::thread::Builder::new().name("fastmanager-log".into()).spawn(move || thread.run(file))?;
        *w.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
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
        p.count += 1;
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

    /// The position the log is durable up to by the policy (what
    /// [`LogWriter::wait`] waits for), without waiting.
    pub fn durable_upto(&self) -> u64 {
        self.durable_upto.load(Ordering::SeqCst)
    }

    /// Whether the log could not be written (then [`LogWriter::failed`]
    /// says why), without the lock.
    pub fn has_failed(&self) -> bool {
        self.has_failed.load(Ordering::SeqCst)
    }

    /// Registers a thread that waits for positions without blocking:
    /// `wake` is called (on the log's thread) when a sync reaches the
    /// position it [wants](SyncWatch::want).
    pub fn watch(&self, wake: Box<dyn Fn() + Send + Sync>) -> Arc<SyncWatch> {
        let w = Arc::new(SyncWatch { wanted: AtomicU64::new(0), wake });
        self.watches.lock().unwrap_or_else(|e| e.into_inner()).push(w.clone());
        w
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
        self.work.notify_all();
        self.compaction.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.compact_wake.notify_all();
        let at = self.pending.lock().unwrap_or_else(|e| e.into_inner()).appended;
        let _ = self.wait(at);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }

    /// The log's thread: takes what is pending, writes it, syncs it by
    /// the policy and says so, until the log stops. A sync covers the
    /// bytes written before it started; under `always` what is appended
    /// while one runs goes into the next, which starts as soon as it
    /// returns (after [`LogWriter::gather`]).
    fn run(&self, mut file: File) {
        let mut last_sync = Instant::now();
        let mut unsynced = false;
        let mut buf = Vec::new();
        loop {
            let (at, stop, switch, batch) = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                while p.buf.is_empty() && !p.stop && p.switch.is_none() {
                    let (g, timeout) = self.work.wait_timeout(p, Duration::from_millis(200)).unwrap_or_else(|e| e.into_inner());
                    p = g;
                    if timeout.timed_out() {
                        break;
                    }
                }
                if self.policy == Fsync::Always {
                    p = self.gather(p);
                }
                std::mem::swap(&mut buf, &mut p.buf);
                (p.appended, p.stop, p.switch.take(), std::mem::take(&mut p.count))
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
                let started = Instant::now();
                result = (self.sync_file)(&file);
                self.syncs.fetch_add(1, Ordering::Relaxed);
                last_sync = Instant::now();
                unsynced = false;
                if self.policy == Fsync::Always {
                    let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    p.expect = batch + p.count;
                    p.last_sync = last_sync - started;
                }
            }
            self.publish(at, result);
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
                self.done.notify_all();
            }
            if stop {
                info!(syncs = self.syncs.load(Ordering::Relaxed), "data dir log synced and closed");
                return;
            }
        }
    }

    /// Under `always`, before the thread takes a batch: waits a little for
    /// the appends the last sync's answers will bring (its clients'
    /// next changes), so that one sync covers them with those that came
    /// during it, instead of every other sync. Stock clients have one
    /// request out each: without the wait, those answered by one sync
    /// come back while the next runs and wait for it and one more, and
    /// N clients split into two groups of about N/2 per sync. The wait
    /// ends once the expected appends are in, and at most after
    /// [`GATHER_SHARE`] of the last sync's time: when the clients come
    /// back later than that, a sync without them is sooner.
    fn gather<'a>(&self, mut p: MutexGuard<'a, Pending>) -> MutexGuard<'a, Pending> {
        let expect = std::mem::take(&mut p.expect);
        let until = Instant::now() + p.last_sync.mul_f64(GATHER_SHARE).min(GATHER_MAX);
        while p.count < expect && !p.stop && p.switch.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            p = self.work.wait_timeout(p, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        p
    }

    /// Says the log is durable (written, by the policy) up to `at`, or
    /// that it failed. Never lowers the position, and never raises it
    /// after a failure: a later sync that succeeds does not cover a batch
    /// whose write or sync failed.
    fn publish(&self, at: u64, result: std::io::Result<()>) {
        let mut d = self.durable.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) if d.failed.is_none() && at > d.upto => {
                d.upto = at;
                self.durable_upto.store(at, Ordering::SeqCst);
            }
            Ok(()) => {}
            Err(e) if d.failed.is_none() => {
                error!("cannot write the data dir's log: {e}; changes to durable objects are refused from now on");
                d.failed = Some(e.to_string());
                self.has_failed.store(true, Ordering::SeqCst);
            }
            Err(_) => {}
        }
        let (upto, failed) = (d.upto, d.failed.is_some());
        drop(d);
        self.done.notify_all();
        for w in self.watches.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            w.notify(upto, failed);
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

    /// What the stand-in sync below saw: the file's length when each sync
    /// started, pushed once it returned.
    static SYNCED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

    fn recording_sync(f: &File) -> std::io::Result<()> {
        let len = f.metadata()?.len();
        // Long enough for appends to land while it runs.
        std::thread::sleep(Duration::from_millis(2));
        f.sync_data()?;
        SYNCED.lock().unwrap().push(len);
        Ok(())
    }

    /// Under `always`, the log is durable up to a position (and a held
    /// reply goes out) only once a sync that started after those bytes
    /// were written returned: bytes appended while a sync runs wait for
    /// the next. A watch is woken once its position is covered.
    #[test]
    fn a_position_is_durable_only_after_a_sync_that_started_after_it() {
        let dir = std::env::temp_dir().join(format!("fm-writer-cover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = LogWriter::open_with(&dir, Fsync::Always, u64::MAX, recording_sync).unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let watch = log.watch(Box::new(move || {
            let _ = tx.try_send(());
        }));
        // Another writer appends all along, so that syncs run while
        // appends land.
        let stop = Arc::new(AtomicBool::new(false));
        let other = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    log.append(|b| encode(b, Op::Put, "q", b"other"));
                    std::thread::sleep(Duration::from_micros(300));
                }
            })
        };
        for i in 0..40u32 {
            let at = log.append(|b| encode(b, Op::Put, "q", &i.to_le_bytes()));
            watch.want(at);
            if log.durable_upto() < at {
                rx.recv_timeout(Duration::from_secs(10)).expect("woken once a sync covers the position");
            }
            // The log starts empty: positions are file offsets here.
            let upto = log.durable_upto();
            assert!(upto >= at);
            let covered = SYNCED.lock().unwrap().iter().copied().max().unwrap_or(0);
            assert!(upto <= covered, "durable up to {upto}, but no sync that started after byte {upto} was written returned (at most {covered})");
        }
        stop.store(true, Ordering::SeqCst);
        other.join().unwrap();
        log.stop();
        assert!(SYNCED.lock().unwrap().len() > 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
