//! The log writer. Workers append encoded records to a shared buffer
//! while they hold the core lock (so the log's order is the order the
//! changes happened in) and go on.
//!
//! Under `everysec` and `no`, the log's thread swaps the buffer out,
//! writes it, and syncs it by the policy.
//!
//! Under `always`, a worker whose loop turn logged something holds that
//! turn's replies, and at the end of the turn writes and syncs what is
//! pending itself ([`LogWriter::sync_through`]): it leads a group commit
//! that covers every change appended so far, its own and other workers'.
//! A worker that finds another's sync running serves its other
//! connections meanwhile; the sync's end wakes it ([`SyncWatch`]), and it
//! leads the next one unless that sync covered it. A sync covers the
//! bytes written before it started. No thread hands a batch to another
//! on the way, which on two cores was worth 30-40% of `always`'s round
//! trips over a log thread that synced for the workers (README, "Durable
//! data"). The log's thread still syncs, every 200 ms, what no worker
//! did (changes whose step sent no reply), switches to a compacted log,
//! and closes the log.
//!
//! Batches are written over zeros preallocated (`store::prealloc`); the
//! switch to a compacted log is `store::switch`.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{error, info};

use super::prealloc::Prealloc;
use super::switch::{Compaction, Switch};

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

    /// Wakes the watcher if it waits for a position (covered now or not:
    /// one that is not leads the next sync), once per
    /// [`SyncWatch::want`].
    fn notify(&self) {
        let w = self.wanted.load(Ordering::SeqCst);
        if w != 0 && self.wanted.compare_exchange(w, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            (self.wake)();
        }
    }
}

/// The log file, written and synced by whoever holds it: the log's
/// thread, or under `always` the worker leading a sync.
struct Io {
    file: File,
    /// Where the records end, and the zeros after them.
    pre: Prealloc,
    /// Written since the last sync.
    unsynced: bool,
    last_sync: Instant,
    /// The buffer last written, emptied: swapped for the pending one, so
    /// that appends reuse its capacity.
    spare: Vec<u8>,
}

impl Io {
    fn extend_if_due(&mut self, sync: bool) {
        self.pre.extend_if_due(&self.file, sync);
    }
}

pub struct LogWriter {
    policy: Fsync,
    io: Mutex<Io>,
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
            io: Mutex::new(Io { file, pre, unsynced: false, last_sync: Instant::now(), spare: Vec::new() }),
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
        let t = std::thread::Builder::new().name("fastmanager-log".into()).spawn(move || thread.run())?;
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
        let at = p.appended;
        drop(p);
        // Only the first append into an empty buffer wakes the thread (it
        // sleeps only on an empty one), and not under `always`, where the
        // appending worker syncs: a notify is a futex call even when no
        // one waits, and each wake-up a switch to the thread on cores the
        // workers need (README, "Durable data").
        if before == 0 && self.policy != Fsync::Always {
            self.work.notify_one();
        }
        at
    }

    /// Waits until the log holds position `at` durably by the policy
    /// (synced under `always`, written otherwise); the error if it never
    /// will.
    pub fn wait(&self, at: u64) -> Result<(), String> {
        self.sync_through(at, true);
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

    /// Under `always`: makes the log durable up to `at` (or failed),
    /// leading a sync of everything pending unless a sync already covers
    /// `at`. While another thread's sync runs: with `wait`, waits for it
    /// and leads the next one if it did not cover `at`; without, returns
    /// false at once (the end of that sync wakes the watches). True once
    /// the log is durable up to `at` or failed; false under the other
    /// policies, where the log's thread writes.
    pub fn sync_through(&self, at: u64, wait: bool) -> bool {
        if self.policy != Fsync::Always {
            return false;
        }
        let covered = || self.durable_upto() >= at || self.has_failed();
        if covered() {
            return true;
        }
        let mut io = match self.io.try_lock() {
            Ok(io) => io,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) if wait => self.io.lock().unwrap_or_else(|e| e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        if covered() {
            return true;
        }
        // Under the file's lock, so batches reach the file in log order.
        let upto = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut io.spare, &mut p.buf);
            p.appended
        };
        let result = self.write_batch(&mut io, true);
        self.publish(upto, result);
        // The next chunk of zeros, once a chunk is nearly used (rarely:
        // 4 MiB by default); under `always` everything written is synced,
        // so its own sync carries nothing else.
        if !self.has_failed() {
            io.extend_if_due(true);
        }
        true
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
    /// the policy and says so, until the log stops. Under `always` the
    /// workers sync (`sync_through`): appends do not wake this thread,
    /// which takes what is left every 200 ms, and the switch and the
    /// stop when asked.
    fn run(&self) {
        loop {
            {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                while p.buf.is_empty() && !p.stop && p.switch.is_none() {
                    let (g, timeout) = self.work.wait_timeout(p, Duration::from_millis(200)).unwrap_or_else(|e| e.into_inner());
                    p = g;
                    if timeout.timed_out() {
                        break;
                    }
                }
                // Under `everysec` and `no` no reply waits for the log:
                // appends gather a while, for one write instead of many.
                if self.policy != Fsync::Always && !p.buf.is_empty() && !p.stop && p.switch.is_none() {
                    drop(p);
                    std::thread::sleep(WRITE_DELAY);
                }
            }
            // The file before the batch, as `sync_through` takes them.
            let mut io = self.io.lock().unwrap_or_else(|e| e.into_inner());
            let (at, stop, switch) = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::swap(&mut io.spare, &mut p.buf);
                (p.appended, p.stop, p.switch.take())
            };
            let sync_due = match self.policy {
                Fsync::Always => true,
                Fsync::Everysec => io.last_sync.elapsed() >= Duration::from_secs(1) || stop,
                Fsync::No => stop,
            };
            let result = self.write_batch(&mut io, sync_due);
            self.publish(at, result);
            if let Some(sw) = switch {
                let r = if stop || self.failed().is_some() {
                    Err("the log is closing or failed".to_string())
                } else {
                    self.switch_now(&sw, io.pre.end())
                };
                let answer = match r {
                    Ok((f, p)) => {
                        // The compactor closes the old log (`switch`).
                        let old = std::mem::replace(&mut io.file, f);
                        io.pre = p;
                        io.unsynced = false;
                        self.compaction.lock().unwrap_or_else(|e| e.into_inner()).file_len = io.pre.end();
                        Ok((io.pre.end(), old))
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
            // The next chunk of zeros, off the replies' path.
            if !self.has_failed() {
                io.extend_if_due(self.policy == Fsync::Always);
            }
        }
    }

    /// Writes `io.spare` (whole records, taken from the pending buffer)
    /// after the log's records, emptying it, and, with `sync`, syncs all
    /// that was written since the last sync.
    fn write_batch(&self, io: &mut Io, sync: bool) -> std::io::Result<()> {
        if !io.spare.is_empty() {
            let written = io.pre.write(&io.file, &io.spare);
            let len = io.spare.len() as u64;
            io.spare.clear();
            written?;
            io.unsynced = true;
            self.wrote(len);
        }
        if io.unsynced && sync {
            let started = Instant::now();
            let r = (self.sync_file)(&io.file);
            io.last_sync = Instant::now();
            self.syncs.fetch_add(1, Ordering::Relaxed);
            self.sync_us.fetch_add((io.last_sync - started).as_micros() as u64, Ordering::Relaxed);
            r?;
            io.unsynced = false;
        }
        Ok(())
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
        drop(d);
        self.done.notify_all();
        for w in self.watches.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            w.notify();
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
    /// the next. Two threads lead syncs as workers do: one waits for the
    /// other's running sync, the other is woken by its end and leads the
    /// next one unless that sync covered it.
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
        // Another writer appends and syncs all along, so that syncs run
        // while appends land.
        let stop = Arc::new(AtomicBool::new(false));
        let other = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let at = log.append(|b| encode(b, Op::Put, "q", b"other"));
                    assert!(log.sync_through(at, true));
                    std::thread::sleep(Duration::from_micros(300));
                }
            })
        };
        let mut waited = 0;
        for i in 0..40u32 {
            let at = log.append(|b| encode(b, Op::Put, "q", &i.to_le_bytes()));
            watch.want(at);
            while !log.sync_through(at, false) {
                rx.recv_timeout(Duration::from_secs(10)).expect("woken when the running sync ends");
                watch.want(at);
                waited += 1;
            }
            // The log starts empty: positions are file offsets here.
            let upto = log.durable_upto();
            assert!(upto >= at);
            let covered = SYNCED.lock().unwrap().iter().copied().max().unwrap_or(0);
            assert!(upto <= covered, "durable up to {upto}, but no sync that started after byte {upto} was written returned (at most {covered})");
            // Room for the other thread to lead (a mutex is not fair).
            std::thread::sleep(Duration::from_micros(500));
        }
        stop.store(true, Ordering::SeqCst);
        other.join().unwrap();
        log.stop();
        assert!(SYNCED.lock().unwrap().len() > 1);
        assert!(waited > 0, "the other thread's syncs never ran when this one wanted to lead");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
