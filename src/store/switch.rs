//! The log writer's side of compaction while serving: the log thread
//! tells a compactor (another thread, `server/durable.rs`) when the log
//! passes its size threshold; the compactor rebuilds the live data from
//! the log file itself (no lock on the objects), writes it as a snapshot
//! beside the log and copies the records written meanwhile after it;
//! then the log thread, between two batches, copies the last few, syncs
//! the new file and renames it over the log ([`LogWriter::switch`]). The
//! compactor preallocates its file (`store::prealloc`), so the switch
//! writes no zeros while `always` replies wait. Positions that workers
//! wait for count bytes appended since start, not file offsets, so a
//! switch does not disturb them.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use super::prealloc::Prealloc;
use super::writer::LogWriter;

/// A compacted log to switch to: its path, how much of the current file
/// it already holds after its snapshot, and where its records end.
pub(super) struct Switch {
    new: PathBuf,
    copied_upto: u64,
    new_len: u64,
}

/// When the compactor should run.
#[derive(Default)]
pub(super) struct Compaction {
    /// Where the log file's records end (the thread writes whole
    /// batches; preallocated zeros follow).
    pub(super) file_len: u64,
    /// Compact once the records are this long.
    at: u64,
    running: bool,
    pub(super) stop: bool,
}

impl Compaction {
    pub(super) fn new(file_len: u64, at: u64) -> Compaction {
        Compaction { file_len, at, ..Compaction::default() }
    }
}

impl LogWriter {
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

    /// Where the log file's records end now (a record boundary; the
    /// preallocated zeros follow).
    pub fn file_len(&self) -> u64 {
        self.compaction.lock().unwrap_or_else(|e| e.into_inner()).file_len
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For the compactor: makes `new` (a synced snapshot followed by the
    /// log file's bytes up to `copied_upto`, `new_len` bytes of records,
    /// zeros after them or not) the log. The thread copies the bytes
    /// written since, syncs it and renames it over the log, between two
    /// batches. Returns where the new file's records end, and the old
    /// file for the caller to close: closing it frees its blocks (a
    /// quarter of a second for 76 MB on ext4 here), which this thread
    /// does not wait for.
    pub fn switch(&self, new: &Path, copied_upto: u64, new_len: u64) -> Result<(u64, File), String> {
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.stop {
                return Err("the log is closing".into());
            }
            self.durable.lock().unwrap_or_else(|e| e.into_inner()).switched = None;
            p.switch = Some(Switch { new: new.to_path_buf(), copied_upto, new_len });
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

    /// `n` more bytes are in the file: the compactor may be due.
    pub(super) fn wrote(&self, n: u64) {
        let mut c = self.compaction.lock().unwrap_or_else(|e| e.into_inner());
        c.file_len += n;
        if !c.running && c.file_len >= c.at {
            self.compact_wake.notify_all();
        }
    }

    /// Completes `sw.new` with the log file's bytes from its
    /// `copied_upto` to `end` (where the records end), syncs it and
    /// renames it over the log (then syncs the dir, so the rename
    /// survives a crash). A crash before the rename leaves the old log
    /// whole; after it, the new one is (its zeros, which the compactor
    /// wrote, are its unused end).
    pub(super) fn switch_now(&self, sw: &Switch, end: u64) -> Result<(File, Prealloc), String> {
        let r = (|| -> std::io::Result<(File, Prealloc)> {
            let tail = super::read_range(&self.path, sw.copied_upto, end)?;
            let f = OpenOptions::new().read(true).write(true).open(&sw.new)?;
            let mut pre = Prealloc::new(&f, sw.new_len, self.chunk)?;
            pre.write(&f, &tail)?;
            f.sync_data()?;
            std::fs::rename(&sw.new, &self.path)?;
            File::open(&self.dir)?.sync_all()?;
            Ok((f, pre))
        })();
        r.map_err(|e| format!("cannot switch to the compacted log: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{encode, scan, Op};
    use crate::store::Fsync;

    /// A switch keeps every record: the snapshot, the records the
    /// compactor copied, those written after its copy, and later ones.
    #[test]
    fn a_switch_keeps_the_records_written_meanwhile() {
        let dir = std::env::temp_dir().join(format!("fm-writer-switch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = LogWriter::open(&dir, Fsync::Always, 0, u64::MAX, 4096).unwrap();
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
        let snap_len = snap.len() as u64;
        // Preallocated by the compactor: the switch writes over the zeros.
        snap.resize(snap.len() + 4096, 0);
        std::fs::write(&new, &snap).unwrap();
        let (len, _old) = log.switch(&new, copied, snap_len).unwrap();
        assert_eq!(len, log.file_len());
        put("d");
        log.stop();
        let s = scan(&std::fs::read(crate::store::log_path(&dir)).unwrap()).unwrap();
        let data: Vec<&[u8]> = s.records.iter().map(|r| &r.data[..]).collect();
        assert_eq!(data, [&b"ab"[..], b"c", b"d"]);
        assert!(s.zero_tail > 0 && s.torn_at.is_none());
        assert!(!new.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
