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
//! Batches are written over zeros the thread preallocated
//! (`store::prealloc`); the switch to a compacted log is `store::switch`.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{error, info};

use super::prealloc::Prealloc;
use super::switch::{Compaction, Switch};

/// The longest a batch waits for expected appends, as a share of the
/// last sync's time ([`LogWriter::gather`]), and at most.
const GATHER_SHARE: f64 = 0.5;
const GATHER_MAX: Duration = Duration::from_millis(2);

/// Under `everysec` and `no` (no reply waits for the log), how long the
/// thread lets appends gather after the first one woke it: one write
/// (and one wake-up) per this, not per request (README, "Durable data").
const WRITE_DELAY: Duration = Duration::from_millis(1);

/// When an acknowledged change reaches the disk (Redis's `appendfsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Fsync {
    /// Synced before its reply is sent (in groups).
    Always,
    /// Written by the log thread within a millisecond (replies do not
    /// wait); synced at least once a second.
    #[default]
    Everysec,
    /// Written by the thread when it can; synced when the kernel does.
    No,
}

#[derive(Default)]
pub(super) struct Pending {
    buf: Vec<u8>,
    /// Bytes appended since start.
    appended: u64,
    pub(super) stop: bool,
    /// A compacted log to switch to.
    pub(super) switch: Option<Switch>,
    /// Appends in `buf` (each a step's changes: a request's, mostly).
    count: u64,
    /// Under `always`, once a sync returned: the appends the next batch
    /// may expect (those the sync covered, whose clients were answered
    /// and may send their next change, and those waiting already); 0
    /// when the next batch should not wait.
    expect: u64,
    /// How long the last sync took.
    last_sync: Duration,
    /// While the thread gathers (`always`): the count of appends it
    /// waits for, so that only the append completing it wakes it; 0
    /// otherwise.
    gathering: u64,
}

#[derive(Default)]
pub(super) struct Durable {
    /// Bytes written (and, under `always`, synced) since start.
    upto: u64,
    /// Why the log could not be written, once it could not.
    failed: Option<String>,
    /// The answer to the last switch request: the new file's length, and
    /// the old file for the compactor to close.
    pub(super) switched: Option<Result<(u64, File), String>>,
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
    /// Their time in all, in microseconds (the line's mean `sync_us`).
    sync_us: AtomicU64,
    /// The chunk the log file is preallocated by (`store::prealloc`).
    pub(super) chunk: u64,
    /// Syncs the file: `File::sync_data` (a test's stand-in records what
    /// each sync covers).
    sync_file: fn(&File) -> std::io::Result<()>,
    /// The log's thread, joined by [`LogWriter::stop`] (its closing line
    /// comes before the server's last).
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(super) path: PathBuf,
    pub(super) dir: PathBuf,
    pub(super) pending: Mutex<Pending>,
    pub(super) work: Condvar,
    pub(super) durable: Mutex<Durable>,
    pub(super) done: Condvar,
    pub(super) compaction: Mutex<Compaction>,
    pub(super) compact_wake: Condvar,
}

impl LogWriter {
    /// Opens `dir`'s log, whose records end at `end` (zeros or nothing
    /// after them: the start cut a torn tail), to write after them, and
    /// starts its thread; the compactor is due once the records are
    /// `compact_at` bytes long. The file is preallocated `chunk` bytes at
    /// a time.
    pub fn open(dir: &Path, policy: Fsync, end: u64, compact_at: u64, chunk: u64) -> Result<Arc<LogWriter>> {
        Self::open_with(dir, policy, end, compact_at, chunk, File::sync_data)
    }

    fn open_with(
        dir: &Path,
        policy: Fsync,
        end: u64,
        compact_at: u64,
        chunk: u64,
        sync_file: fn(&File) -> std::io::Result<()>,
    ) -> Result<Arc<LogWriter>> {
        let path = super::log_path(dir);
        // Not `append`: batches are written at the records' end, over the
        // preallocated zeros.
        let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path);
        let file = file.with_context(|| format!("cannot open {}", path.display()))?;
        let mut pre = Prealloc::new(&file, end, chunk).with_context(|| format!("cannot read {}", path.display()))?;
        // A fresh log starts with a chunk (synced, as a later one is).
        pre.extend_if_due(&file, true);
        let w = Arc::new(LogWriter {
            policy,
            durable_upto: AtomicU64::new(0),
            has_failed: AtomicBool::new(false),
            watches: Mutex::default(),
            syncs: AtomicU64::new(0),
            sync_us: AtomicU64::new(0),
            chunk,
            sync_file,
            thread: Mutex::default(),
            path,
            dir: dir.to_path_buf(),
            pending: Mutex::default(),
            work: Condvar::new(),
            durable: Mutex::default(),
            done: Condvar::new(),
            compaction: Mutex::new(Compaction::new(end, compact_at)),
            compact_wake: Condvar::new(),
        });
        let thread = w.clone();
        let t = std::thread::Builder::new().name("fastmanager-log".into()).spawn(move || thread.run(file, pre))?;
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
        let gathered = p.gathering != 0 && p.count >= p.gathering;
        drop(p);
        // Only the first append into an empty buffer wakes the thread (it
        // sleeps only on an empty one), and, under `always`, the one that
        // completes what its gather waits for: a notify is a futex call
        // even when no one waits, and each wake-up a switch to the thread
        // on cores the workers need (README, "Durable data").
        if before == 0 || gathered {
            self.work.notify_one();
        }
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


    /// The chunk the log file is preallocated by, for the compactor's
    /// new file.
    pub fn chunk(&self) -> u64 {
        self.chunk
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
    fn run(&self, mut file: File, mut pre: Prealloc) {
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
                } else if !p.buf.is_empty() && !p.stop && p.switch.is_none() {
                    drop(p);
                    std::thread::sleep(WRITE_DELAY);
                    p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                }
                std::mem::swap(&mut buf, &mut p.buf);
                (p.appended, p.stop, p.switch.take(), std::mem::take(&mut p.count))
            };
            let mut result = Ok(());
            if !buf.is_empty() {
                result = pre.write(&file, &buf);
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
                self.sync_us.fetch_add((last_sync - started).as_micros() as u64, Ordering::Relaxed);
                unsynced = false;
                if self.policy == Fsync::Always {
                    let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    p.expect = batch + p.count;
                    p.last_sync = last_sync - started;
                }
            }
            self.publish(at, result);
            if let Some(sw) = switch {
                let r = if stop || self.failed().is_some() {
                    Err("the log is closing or failed".to_string())
                } else {
                    self.switch_now(&sw, pre.end())
                };
                let answer = match r {
                    Ok((f, p)) => {
                        // The compactor closes the old log (`switch`).
                        let old = std::mem::replace(&mut file, f);
                        pre = p;
                        unsynced = false;
                        self.compaction.lock().unwrap_or_else(|e| e.into_inner()).file_len = pre.end();
                        Ok((pre.end(), old))
                    }
                    Err(e) => Err(e),
                };
                self.durable.lock().unwrap_or_else(|e| e.into_inner()).switched = Some(answer);
                self.done.notify_all();
            }
            if stop {
                let syncs = self.syncs.load(Ordering::Relaxed);
                let sync_us = self.sync_us.load(Ordering::Relaxed) / syncs.max(1);
                info!(syncs, sync_us, "data dir log synced and closed");
                return;
            }
            // The replies this batch held are out: the next chunk of
            // zeros now, off their path. Under `always` everything written
            // is synced, so the chunk's own sync carries nothing else.
            if !self.has_failed() {
                pre.extend_if_due(&file, self.policy == Fsync::Always);
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
        p.gathering = expect;
        while p.count < expect && !p.stop && p.switch.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            p = self.work.wait_timeout(p, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        p.gathering = 0;
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

}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{encode, scan, Op};

    /// What the stand-in sync below saw: where the file's records ended
    /// when each sync started (the zeros after them are preallocated),
    /// pushed once it returned.
    static SYNCED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

    fn recording_sync(f: &File) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        // It runs on the log's thread, between its writes: the records
        // are whole.
        let mut bytes = vec![0; f.metadata()?.len() as usize];
        f.read_exact_at(&mut bytes, 0)?;
        let len = scan(&bytes).expect("whole records").valid_len;
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
        let log = LogWriter::open_with(&dir, Fsync::Always, 0, u64::MAX, 4096, recording_sync).unwrap();
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
